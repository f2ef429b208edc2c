"""Fit an image to a square size: centre crop, zero pad or stretch, antialiased bilinear (float32)."""

from __future__ import annotations

import numpy as np
from PIL import Image

FITS = ("crop", "pad", "stretch")


def fit_image(image: np.ndarray, size: int, fit: str) -> np.ndarray:
    """Resize a float (H, W) image to (size, size): centre crop, zero pad or stretch; antialiased bilinear."""
    h, w = image.shape
    if fit == "stretch":
        return _resize(image, size, size)
    scale = size / (min(h, w) if fit == "crop" else max(h, w))
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize(image, nh, nw)
    if fit == "crop":
        top, left = (nh - size) // 2, (nw - size) // 2
        return resized[top : top + size, left : left + size]
    canvas = np.zeros((size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = resized
    return canvas


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    if image.shape == (h, w):
        return image.astype(np.float32)
    pil = Image.fromarray(image.astype(np.float32), mode="F")
    return np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
