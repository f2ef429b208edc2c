"""What every image reader returns (`Decoded`) and raises (`ImageReadError`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthfair.errors import SynthfairError

REDOWNLOAD = "re-download the file (and check it against the release's SHA256SUMS)"


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays field by field is ambiguous
class Decoded:
    image: np.ndarray  # (H, W) float32 in [0, 1]; 0 is black as displayed, so bone is bright
    bits: int  # stored bit depth: 8 or 16 for PNG/JPEG; BitsStored (or the J2K precision, see dicom.py)
    format: str  # "jpeg" | "png" | "dicom"
    photometric: str  # "MONOCHROME2" for PNG/JPEG; the DICOM's own (0028,0004) value
    path: str


class ImageReadError(SynthfairError):
    """An image file is missing, corrupt, or in a format or encoding that cannot be decoded."""


def require_file(path: str | Path) -> Path:
    """``path`` as a Path, or an `ImageReadError` when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file", f"check the path, or {REDOWNLOAD}")
    return path
