from dataclasses import replace

import numpy as np
import pytest

from synthfair.phantom.detector import CORNERS, DeviceProfile, Exposure, acquire

N = 128
WHITE = 65535
# A plain detector: no noise, no vendor processing, no shutters.
PLAIN = DeviceProfile(noise=0.0, edge_enhance=0.0, collimation_mm=0.0)
EXPOSURE = Exposure(pixel_mm=1.0, marker_text="R", portable=False)


def _z(seed=0):
    return np.random.default_rng(seed).standard_normal((N, N))


def _flat(value):
    return np.full((N, N), float(value))


def _corner(img, corner, frac=0.3):
    """The ``frac`` x ``frac`` block of ``img`` at ``corner``."""
    k = int(N * frac)
    rows = slice(0, k) if corner.startswith("top") else slice(N - k, N)
    cols = slice(0, k) if corner.endswith("left") else slice(N - k, N)
    return img[rows, cols]


def _mirror(corner):
    return corner.replace("left", "@").replace("right", "left").replace("@", "right")


def _diagonal(corner):
    vertical = corner.replace("top", "@").replace("bottom", "top").replace("@", "bottom")
    return _mirror(vertical)


def test_dtype_and_shape():
    p = np.random.default_rng(1).uniform(0, 35, (N, N))
    img = acquire(p, DeviceProfile(), EXPOSURE, _z())
    assert img.dtype == np.uint16
    assert img.shape == (N, N)


def test_inputs_are_not_modified():
    p, z = _flat(12.0), _z()
    p0, z0 = p.copy(), z.copy()
    acquire(p, DeviceProfile(collimation_mm=10.0), EXPOSURE, z)
    assert np.array_equal(p, p0) and np.array_equal(z, z0)


def test_longer_path_is_brighter():
    lo, hi = PLAIN.window
    levels = np.linspace(lo, hi, 8)
    images = [acquire(_flat(v), PLAIN, EXPOSURE, _z()).astype(np.int64) for v in levels]
    marker = images[0] == WHITE
    for darker, brighter in zip(images, images[1:], strict=False):
        assert (brighter >= darker).all()
        assert (brighter[~marker] > darker[~marker]).all()
    assert images[0][~marker].max() == 0 and images[-1].min() == WHITE  # window ends: black .. white


def test_ramp_is_monotone_along_a_row():
    lo, hi = PLAIN.window
    p = np.tile(np.linspace(lo - 2, hi + 2, N), (N, 1))
    row = acquire(p, PLAIN, EXPOSURE, _z())[N // 2].astype(np.int64)
    assert (np.diff(row) >= 0).all()
    assert row[-1] > row[0]


def test_exposure_offset_shifts_path_length():
    shifted = acquire(_flat(20.0), PLAIN, replace(EXPOSURE, exposure_cm=6.0), _z())
    assert np.abs(shifted.astype(np.int64) - acquire(_flat(14.0), PLAIN, EXPOSURE, _z())).max() <= 1


@pytest.mark.parametrize("jitter", [(0.0, 0.0, 0.0, 0.0), (1.0, -1.0, 0.5, -0.2)])
def test_collimation_fills_borders_with_the_shutter(jitter):
    px, mm, shutter = 3.125, 20.0, 0.5
    exposure = Exposure(pixel_mm=px, marker_text="L", portable=False, collimation_jitter=jitter)
    device = replace(PLAIN, collimation_mm=mm, shutter=shutter)
    p = np.random.default_rng(2).uniform(5, 25, (N, N))
    img = acquire(p, device, exposure, _z()).astype(np.int64)
    open_field = acquire(p, replace(device, collimation_mm=0.0), exposure, _z()).astype(np.int64)
    top, bottom, left, right = (int(round(mm * (1 + 0.5 * j) / px)) for j in jitter)
    border = np.zeros((N, N), dtype=bool)
    border[:top] = border[N - bottom :] = True
    border[:, :left] = border[:, N - right :] = True
    marker = open_field == WHITE  # burned in after collimation, so it may overlap a shutter
    assert np.abs(img[border & ~marker] - round(shutter * WHITE)).max() <= 1
    assert np.array_equal(img[~border], open_field[~border])
    assert (
        np.abs(open_field[border & ~marker] - round(shutter * WHITE)).min() > 1
    )  # the shutter did change them


@pytest.mark.parametrize("corner", CORNERS)
def test_marker_in_the_configured_corner_only(corner):
    device = replace(PLAIN, marker_corner=corner, marker_mm=16.0)
    img = acquire(_flat(0.0), device, EXPOSURE, _z())  # black everywhere but the marker
    assert (_corner(img, corner) == WHITE).sum() >= 10
    assert (_corner(img, _diagonal(corner)) == 0).all()
    assert (_corner(img, _mirror(corner)) == 0).all()  # not portable: no AP label
    assert set(np.unique(img)) == {0, WHITE}


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("prints_label", [False, True])
def test_portable_label_only_when_portable_and_printed(portable, prints_label):
    corner = "top_left"
    device = replace(PLAIN, marker_corner=corner, portable_label=prints_label)
    exposure = replace(EXPOSURE, portable=portable)
    img = acquire(_flat(0.0), device, exposure, _z())
    labelled = (_corner(img, _mirror(corner)) == WHITE).any()
    assert labelled == (portable and prints_label)
    assert (_corner(img, corner) == WHITE).any()


def test_same_inputs_same_bytes():
    p = np.random.default_rng(3).uniform(0, 35, (N, N))
    device = DeviceProfile(collimation_mm=12.0)
    exposure = replace(
        EXPOSURE, portable=True, collimation_jitter=(0.3, -0.2, 0.1, 0.9), marker_jitter=(0.5, -0.5)
    )
    a = acquire(p, device, exposure, _z(4))
    b = acquire(p.copy(), device, exposure, _z(4))
    assert a.tobytes() == b.tobytes()


def test_different_noise_field_different_image():
    p = _flat(15.0)
    a = acquire(p, DeviceProfile(), EXPOSURE, _z(5))
    b = acquire(p, DeviceProfile(), EXPOSURE, _z(6))
    assert a.tobytes() != b.tobytes()
    assert (a != b).mean() > 0.5


def test_collimation_of_a_non_square_image():
    p = np.full((64, 128), 15.0)
    device = replace(PLAIN, collimation_mm=10.0, shutter=0.5)
    img = acquire(p, device, EXPOSURE, np.zeros_like(p))
    row = img[32].astype(np.int64)
    shutter = round(0.5 * WHITE)
    assert (row[:10] == shutter).all() and (row[-10:] == shutter).all()
    assert (row[10:-10] != shutter).all()
