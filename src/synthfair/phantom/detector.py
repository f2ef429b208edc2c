"""From line integrals to a 16-bit radiograph: the device's detector and image processing.

Given water-equivalent path lengths ``p`` (cm), a device profile produces the displayed image in steps:

1. detector blur: Gaussian point spread of ``blur_mm``;
2. quantum noise: ``p + noise * exp(mu_w (p - 10) / 2) * z``: the log-domain std of Poisson counts grows as
   ``1 / sqrt(I)``, i.e. with ``exp(mu_w p / 2)``; ``z`` is the subject's fixed standard-normal field, so
   a counterfactual keeps its noise realization;
3. vendor processing: unsharp masking with an 8 mm kernel, amount ``edge_enhance``;
4. display curve (after the view's automatic exposure offset): window ``[lo, hi]``
   to [0, 1], an S-curve of steepness ``contrast``, then ``gamma``
   (bone bright, air dark, as MONOCHROME2);
5. collimation: shutters ``collimation_mm`` (jittered per subject) from each edge, filled with ``shutter``;
6. burned-in markers: a lead side letter in the device's corner, and "AP" on portable films when the
   profile prints it;
7. quantization to uint16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MU_WATER = 0.2  # 1/cm, effective at chest radiography energies
UNSHARP_MM = 8.0
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
GLYPHS = {  # 5 x 7 bitmaps
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
}


@dataclass(frozen=True)
class DeviceProfile:
    """One simulated device: detector physics and vendor image processing (phantom.yaml `devices`)."""

    window: tuple[float, float] = (2.0, 30.0)  # water-equivalent cm shown as black .. white
    contrast: float = 1.8  # S-curve steepness (>0)
    gamma: float = 1.0
    blur_mm: float = 0.6
    noise: float = 0.012  # quantum noise std (cm) at 10 cm
    edge_enhance: float = 0.5
    collimation_mm: float = 10.0
    shutter: float = 0.92  # display value outside the collimated field
    marker_corner: str = "top_left"  # one of CORNERS
    marker_mm: float = 16.0
    portable_label: bool = False


@dataclass(frozen=True)
class Exposure:
    """Per-image acquisition facts that are not device properties."""

    pixel_mm: float
    marker_text: str  # side letter, e.g. "R"
    portable: bool  # the view is a portable (supine) film
    collimation_jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # in [-1, 1]
    marker_jitter: tuple[float, float] = (0.0, 0.0)  # in [-1, 1]
    exposure_cm: float = 0.0  # automatic exposure control: subtracted from p before the display curve


def acquire(p: np.ndarray, device: DeviceProfile, exposure: Exposure, z: np.ndarray) -> np.ndarray:
    """Steps 1-7 of the module docstring; ``z`` is a standard-normal field of ``p``'s shape."""
    px = exposure.pixel_mm
    p = ndimage.gaussian_filter(p, device.blur_mm / px, mode="nearest")  # 1
    p = p + device.noise * np.exp(MU_WATER * (p - 10.0) / 2.0) * z  # 2
    if device.edge_enhance:
        p = p + device.edge_enhance * (p - ndimage.gaussian_filter(p, UNSHARP_MM / px, mode="nearest"))  # 3
    img = display_curve(p - exposure.exposure_cm, device)  # 4
    collimate(img, device, exposure)  # 5
    burn_markers(img, device, exposure)  # 6
    return np.round(np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16)  # 7


def display_curve(p: np.ndarray, device: DeviceProfile) -> np.ndarray:
    lo, hi = device.window
    v = np.clip((p - lo) / (hi - lo), 0.0, 1.0)
    k = device.contrast
    y = 0.5 + 0.5 * np.tanh(k * (2.0 * v - 1.0)) / np.tanh(k)
    return y**device.gamma


def collimate(img: np.ndarray, device: DeviceProfile, exposure: Exposure) -> None:
    if device.collimation_mm <= 0:
        return
    rows, cols = img.shape
    top, bottom, left, right = (
        int(round(device.collimation_mm * (1.0 + 0.5 * j) / exposure.pixel_mm))
        for j in exposure.collimation_jitter
    )
    img[:top] = device.shutter
    img[rows - bottom :] = device.shutter
    img[:, :left] = device.shutter
    img[:, cols - right :] = device.shutter


def burn_markers(img: np.ndarray, device: DeviceProfile, exposure: Exposure) -> None:
    corner = device.marker_corner
    _stamp(img, exposure.marker_text, corner, device.marker_mm, exposure)
    if exposure.portable and device.portable_label:
        opposite = corner.replace("left", "@").replace("right", "left").replace("@", "right")
        _stamp(img, "AP", opposite, device.marker_mm * 0.8, exposure)


def _stamp(img: np.ndarray, text: str, corner: str, height_mm: float, exposure: Exposure) -> None:
    """Draw ``text`` in white, ``height_mm`` tall, about 6% of the image in from ``corner``."""
    if not text:
        return
    rows, cols = img.shape
    cell = max(1, int(round(height_mm / exposure.pixel_mm / 7)))
    bitmap = np.concatenate(
        [np.pad(np.array([[c == "1" for c in r] for r in GLYPHS[ch]]), ((0, 0), (0, 1))) for ch in text],
        axis=1,
    )
    glyph = np.kron(bitmap, np.ones((cell, cell), dtype=bool))
    h, w = glyph.shape
    if h >= rows or w >= cols:
        return
    jy, jx = 0.02 * rows * exposure.marker_jitter[0], 0.02 * cols * exposure.marker_jitter[1]
    top = round(0.06 * rows + jy) if corner.startswith("top") else round(rows - 0.06 * rows - h + jy)
    left = round(0.06 * cols + jx) if corner.endswith("left") else round(cols - 0.06 * cols - w + jx)
    top, left = min(max(int(top), 0), rows - h), min(max(int(left), 0), cols - w)
    region = img[top : top + h, left : left + w]
    region[glyph] = 1.0
