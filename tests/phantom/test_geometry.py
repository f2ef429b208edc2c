import math

import numpy as np
import pytest
import torch

from synthfair.phantom.anatomy import Anatomy
from synthfair.phantom.geometry import AnatomyFrame, SubjectGeometry, inverse_linear
from synthfair.phantom.projector import ViewGeometry, project

SP = 4.0  # mm, isotropic
PARALLEL_PA = ViewGeometry(depth_axis=1, source_side=-1, sid_mm=math.inf)
PARALLEL_LAT = ViewGeometry(depth_axis=0, source_side=-1, sid_mm=math.inf)
IDENTITY = SubjectGeometry()


def _anatomy(shape, body=None, lungs=None) -> Anatomy:
    """A box of water (``body``: slices, default the whole volume) in air; ``lungs`` optional slices."""
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[body or (slice(None),) * 3] = 0.0
    labels = np.zeros(shape, dtype=np.uint8)
    if lungs is not None:
        labels[lungs] = 10
    return Anatomy(hu, labels, (SP, SP, SP), {"lung_upper_lobe_left": 10}, "box")


def _cube(shape, x, y, z, value=2.0) -> np.ndarray:
    """Zero attenuation but for a cube over the voxel index ranges x, y, z (each (start, stop))."""
    mu = np.zeros(shape, dtype=np.float32)
    mu[slice(*x), slice(*y), slice(*z)] = value
    return mu


def _centroid(img) -> tuple[float, float]:
    """(row, column) centre of mass of ``img``."""
    rows, cols = np.indices(img.shape)
    return float((rows * img).sum() / img.sum()), float((cols * img).sum() / img.sum())


def _width(img) -> int:
    """Number of columns whose profile exceeds half its maximum."""
    profile = img.max(axis=0)
    return int((profile > 0.5 * profile.max()).sum())


def test_frame_of_a_box():
    shape = (20, 16, 24)
    body = (slice(2, 18), slice(4, 12), slice(0, 24))
    lungs = (slice(4, 16), slice(5, 11), slice(8, 20))
    frame = AnatomyFrame.of(_anatomy(shape, body, lungs))
    assert np.allclose(frame.center, [(2 + 17) / 2 * SP, (4 + 11) / 2 * SP, 23 / 2 * SP])
    assert np.allclose(frame.body_hi, -frame.body_lo)
    assert np.allclose(frame.body_hi, [7.5 * SP, 3.5 * SP, 11.5 * SP])
    assert np.allclose(
        frame.lung_center, [(4 + 15) / 2 * SP, (5 + 10) / 2 * SP, (8 + 19) / 2 * SP] - frame.center
    )
    assert frame.apex_z == pytest.approx(19 * SP - frame.center[2])
    assert np.allclose(frame.extent, (np.array(shape) - 1) * SP / 2)


def test_inverse_linear():
    assert np.allclose(inverse_linear(IDENTITY), np.eye(3))
    assert np.allclose(
        inverse_linear(SubjectGeometry(scale=(1.1, 0.9, 1.0))), np.diag([1 / 1.1, 1 / 0.9, 1.0])
    )
    rotation = inverse_linear(SubjectGeometry(yaw_deg=7.0, roll_deg=-3.0))
    assert np.allclose(rotation @ rotation.T, np.eye(3))
    assert np.linalg.det(rotation) == pytest.approx(1.0)


@pytest.mark.parametrize("view", [PARALLEL_PA, PARALLEL_LAT], ids=["frontal", "lateral"])
def test_parallel_identity_is_the_plain_sum(view):
    n = 32
    shape = (n, n, n)
    frame = AnatomyFrame.of(_anatomy(shape))
    mu = _cube(shape, (20, 26), (22, 28), (22, 28))  # patient's left, anterior, superior
    mu += 0.1 * np.random.default_rng(0).random(shape, dtype=np.float32)  # some texture everywhere
    view = ViewGeometry(view.depth_axis, view.source_side, view.sid_mm, fov_mm=n * SP)
    img = project(mu, frame, view, IDENTITY, n)  # pixel centres fall on voxel centres
    line_sums = mu.sum(axis=view.depth_axis) * SP / 10.0  # cm; (y, z) or (x, z)
    if view.depth_axis == 1:
        expected = line_sums.T[::-1, :]  # row 0 superior, patient's right on the viewer's left
    else:
        expected = line_sums.T[::-1, ::-1]  # row 0 superior, anterior on the viewer's left
    assert img.shape == (n, n)
    assert np.allclose(img[1:-1, 1:-1], expected[1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_frontal_orientation():
    n = 32
    shape = (n, 24, n)
    mu = _cube(shape, (22, 28), (8, 14), (22, 28))  # high x (patient's left), high z (superior)
    img = project(mu, AnatomyFrame.of(_anatomy(shape)), PARALLEL_PA, IDENTITY, 64)
    row, col = _centroid(img)
    assert row < 32 and col > 32  # top right: radiographic display
    assert img.max() == pytest.approx(6 * SP * 2.0 / 10.0, rel=1e-3)  # 6 voxels of mu 2, in cm


def test_lateral_puts_anterior_on_the_left():
    n = 32
    shape = (n, n, n)
    mu = _cube(shape, (12, 18), (24, 30), (6, 12))  # anterior (high y), inferior (low z)
    img = project(mu, AnatomyFrame.of(_anatomy(shape)), PARALLEL_LAT, IDENTITY, 64)
    row, col = _centroid(img)
    assert col < 32 and row > 32


def test_parallel_beam_does_not_depend_on_the_source_side():
    shape = (32, 24, 32)
    frame = AnatomyFrame.of(_anatomy(shape))
    mu = _cube(shape, (12, 18), (2, 6), (12, 18))
    back = project(mu, frame, PARALLEL_PA, IDENTITY, 48)
    front = project(mu, frame, ViewGeometry(1, 1, math.inf), IDENTITY, 48)
    assert np.allclose(back, front)


def test_cone_beam_magnifies_objects_near_the_source():
    shape = (48, 40, 48)
    frame = AnatomyFrame.of(_anatomy(shape))
    mu = _cube(shape, (21, 27), (2, 6), (21, 27))  # a posterior cube, 24 mm wide, centred in x and z
    sid, fov, size = 400.0, 192.0, 128
    images = {
        side: project(mu, frame, ViewGeometry(1, side, sid_mm=sid, fov_mm=fov), IDENTITY, size)
        for side in (-1, 1)
    }
    parallel = project(mu, frame, ViewGeometry(1, -1, math.inf, fov_mm=fov), IDENTITY, size)
    near_source, near_detector = _width(images[-1]), _width(images[1])  # source posterior / anterior
    # magnification sid / (sid - distance to the detector); the cube's centre is 64 mm behind the body centre
    depth = 3.5 * SP - frame.center[1]  # voxel centres 2..5
    m_back = sid / (sid - (frame.body_hi[1] + 15.0 - depth))
    m_front = sid / (sid - (depth - frame.body_lo[1] + 15.0))
    assert near_source / near_detector == pytest.approx(m_back / m_front, rel=0.15)
    assert near_source > 1.35 * near_detector
    assert near_detector >= _width(parallel)
    centre = size / 2 - 0.5
    assert _centroid(images[-1]) == pytest.approx((centre, centre), abs=0.1)  # magnified about the centre


def test_body_scale_widens_the_projected_body():
    shape = (48, 24, 32)
    body = (slice(8, 40), slice(4, 20), slice(0, 32))
    anatomy = _anatomy(shape, body)
    mu = (anatomy.hu > -500).astype(np.float32)
    frame = AnatomyFrame.of(anatomy)
    view = ViewGeometry(1, -1, math.inf, fov_mm=240.0)
    base = project(mu, frame, view, IDENTITY, 80)
    wide = project(mu, frame, view, SubjectGeometry(scale=(1.1, 1.0, 1.0)), 80)
    assert 1.05 < _width(wide) / _width(base) < 1.15
    assert wide.max() == pytest.approx(base.max(), rel=1e-3)  # depth unchanged


def test_deeper_body_is_a_longer_path():
    shape = (32, 24, 32)
    anatomy = _anatomy(shape, (slice(4, 28), slice(6, 18), slice(0, 32)))
    mu = (anatomy.hu > -500).astype(np.float32)
    frame = AnatomyFrame.of(anatomy)
    base = project(mu, frame, PARALLEL_PA, IDENTITY, 48)
    deep = project(mu, frame, PARALLEL_PA, SubjectGeometry(scale=(1.0, 1.2, 1.0)), 48)
    assert deep.max() == pytest.approx(1.2 * base.max(), rel=1e-3)


def test_zero_deformation_is_no_deformation():
    shape = (32, 24, 32)
    frame = AnatomyFrame.of(_anatomy(shape))
    mu = _cube(shape, (10, 20), (6, 18), (12, 24))
    still = project(mu, frame, PARALLEL_PA, IDENTITY, 48)
    zero = project(mu, frame, PARALLEL_PA, SubjectGeometry(deform=(0.0,) * (3 * 4**3)), 48)
    assert np.allclose(still, zero, atol=1e-5)
    bent = project(mu, frame, PARALLEL_PA, SubjectGeometry(deform=(8.0,) * (3 * 4**3)), 48)
    assert not np.allclose(still, bent, atol=1e-3)


def test_deeper_breath_lowers_structures_below_the_apex():
    shape = (32, 24, 40)
    lungs = (slice(4, 28), slice(4, 20), slice(8, 36))
    anatomy = _anatomy(shape, lungs=lungs)
    frame = AnatomyFrame.of(anatomy)
    mu = _cube(shape, (12, 20), (8, 16), (10, 16))  # low in the lungs
    rest = project(mu, frame, PARALLEL_PA, IDENTITY, 64)
    breath = project(mu, frame, PARALLEL_PA, SubjectGeometry(inspiration=1.15), 64)
    assert _centroid(breath)[0] > _centroid(rest)[0] + 1.0  # lower on the image
    above = _cube(shape, (12, 20), (8, 16), (36, 40))  # above the apex: unmoved
    assert np.allclose(
        project(above, frame, PARALLEL_PA, IDENTITY, 64),
        project(above, frame, PARALLEL_PA, SubjectGeometry(inspiration=1.15), 64),
    )


def test_projection_is_deterministic_across_thread_counts():
    shape = (40, 32, 40)
    anatomy = _anatomy(shape, (slice(4, 36), slice(4, 28), slice(0, 40)))
    frame = AnatomyFrame.of(anatomy)
    mu = np.random.default_rng(0).random(shape, dtype=np.float32) * (anatomy.hu > -500)
    deform = tuple(np.random.default_rng(1).normal(0, 5, 3 * 4**3).tolist())
    subject = SubjectGeometry(
        scale=(1.05, 0.97, 1.02), yaw_deg=3.0, roll_deg=-1.5, inspiration=1.04, deform=deform
    )
    view = ViewGeometry(1, 1, sid_mm=1000.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = project(mu, frame, view, subject, 96)
        torch.set_num_threads(2)
        two = project(mu, frame, view, subject, 96)
        again = project(mu, frame, view, subject, 96)
    finally:
        torch.set_num_threads(threads)
    assert one.dtype == np.float64 and one.shape == (96, 96)
    assert one.tobytes() == two.tobytes() == again.tobytes()
