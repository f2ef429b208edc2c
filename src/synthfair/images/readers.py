"""Read a radiograph from JPEG, PNG or DICOM into one form: a float32 (H, W) image in [0, 1], displayed.

Readers are plugins behind one small interface, as in MONAI's ``ImageReader``: ``can_read(path)`` says whether
a reader recognises a file (by suffix or by its first bytes), ``read(path)`` returns a `Decoded`.
`read_image` picks the reader by suffix first and by magic bytes second, because real releases are not tidy:
VinDr-CXR names its DICOMs ``*.dicom`` and BRAX v1.0.0 gives them no extension at all.

Intensities are divided by the nominal maximum of the stored bit depth (255, 65535, or the DICOM's own output
range, see `synthfair.images.dicom`), never stretched to the image's own min and max: an image that is dark
on disk stays dark, and one source keeps one intensity scale.

Every failure raises `ImageReadError`, naming the file and the problem, with a hint on what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from synthfair.errors import did_you_mean
from synthfair.images.decoded import REDOWNLOAD, Decoded, ImageReadError, require_file


class ImageReader(Protocol):
    name: str  # "jpeg" | "png" | "dicom"
    suffixes: tuple[str, ...]  # lower case, with the dot

    def can_read(self, path: str | Path) -> bool: ...

    def read(self, path: str | Path) -> Decoded: ...


def sniff(path: str | Path) -> str | None:
    """The format a file's first bytes announce: "png", "jpeg", "dicom" (b"DICM" at offset 128) or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[128:132] == b"DICM":
        return "dicom"
    return None


class PILReader:
    """8-bit JPEG and 8- or 16-bit PNG through Pillow.

    Greyscale stays as stored: 'L' is 8 bits; 'I;16', 'I;16B' and 'I' (how Pillow opens 16-bit greyscale
    PNGs) are 16 bits, read with ``np.asarray`` because Pillow's own conversions would drop to 8 bits.
    Colour and palette images ('RGB', 'RGBA', 'P', 'LA', ...) become 8-bit luminance (ITU-R 601-2).
    """

    _SUFFIXES = {"png": (".png",), "jpeg": (".jpg", ".jpeg")}
    _SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N", "I")

    def __init__(self, format: str):
        if format not in self._SUFFIXES:
            raise ImageReadError(
                f"PILReader reads 'png' or 'jpeg', not {format!r}{did_you_mean(format, self._SUFFIXES)}"
            )
        self.name = format
        self.suffixes = self._SUFFIXES[format]

    def can_read(self, path: str | Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes or sniff(path) == self.name

    def read(self, path: str | Path) -> Decoded:
        path = require_file(path)
        try:
            with Image.open(path) as im:
                im.load()
                found = (im.format or "").lower()
                array, bits = self._pixels(im)
        except ImageReadError:
            raise
        except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error, ...
            raise _unreadable(path, self.name, err) from err
        if found not in self._SUFFIXES:
            raise ImageReadError(
                f"{path}: is a {found.upper() or 'unknown'} image, not PNG or JPEG",
                "convert it to PNG, or fix the file name",
            )
        if array.ndim != 2:
            raise ImageReadError(f"{path}: expected one image plane, got shape {array.shape}", REDOWNLOAD)
        image = np.clip(array.astype(np.float32) / (2**bits - 1), 0.0, 1.0)
        return Decoded(image, bits, found, "MONOCHROME2", str(path))

    def _pixels(self, im: Image.Image) -> tuple[np.ndarray, int]:
        if im.mode == "L":
            return np.asarray(im), 8
        if im.mode in self._SIXTEEN:
            return np.asarray(im), 16
        if im.mode in ("1", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
            return np.asarray(im.convert("L")), 8
        raise ImageReadError(
            f"{im.filename}: unsupported {im.format} pixel mode {im.mode!r}",
            "convert it to 8- or 16-bit greyscale PNG",
        )


class DicomReader:
    """DICOM files (``.dcm``, ``.dicom`` or no suffix), decoded by `synthfair.images.dicom.decode`."""

    name = "dicom"
    suffixes = (".dcm", ".dicom")

    def can_read(self, path: str | Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes or sniff(path) == self.name

    def read(self, path: str | Path) -> Decoded:
        from synthfair.images import dicom  # lazy: pydicom is only needed for DICOM sources

        return dicom.decode(path)


READERS: tuple[ImageReader, ...] = (PILReader("png"), PILReader("jpeg"), DicomReader())


def reader_for(path: str | Path, name: str | None = None) -> ImageReader:
    """The reader called ``name`` ("jpeg", "png", "dicom"), or else the first whose suffix matches ``path``,
    or else the one whose magic bytes ``path`` starts with."""
    names = [r.name for r in READERS]
    if name is not None:
        for reader in READERS:
            if reader.name == name:
                return reader
        raise ImageReadError(
            f"unknown image reader {name!r}{did_you_mean(name, names)}", f"use one of {', '.join(names)}"
        )
    path = Path(path)
    for reader in READERS:
        if path.suffix.lower() in reader.suffixes:
            return reader
    sniffed = sniff(path)
    for reader in READERS:
        if reader.name == sniffed:
            return reader
    raise ImageReadError(
        f"{path}: unknown image format (suffix {path.suffix or 'none'!r}, and no PNG, JPEG or DICOM "
        "signature in its first bytes)",
        f"pass the reader ({', '.join(names)}) if you know the format, or {REDOWNLOAD}",
    )


def read_image(path: str | Path, reader: str | ImageReader | None = None) -> Decoded:
    """Read one image with ``reader`` (a reader or its name), or the reader `reader_for` picks."""
    path = require_file(path)
    if not isinstance(reader, str) and reader is not None:
        return reader.read(path)
    return reader_for(path, reader).read(path)


def _unreadable(path: Path, expected: str, err: Exception) -> ImageReadError:
    sniffed = sniff(path)
    if sniffed is not None and sniffed != expected:
        hint = f"its first bytes say it is {sniffed.upper()}: read it with reader={sniffed!r}"
    else:
        hint = f"the file looks truncated or corrupt; {REDOWNLOAD}"
    return ImageReadError(f"{path}: cannot decode as {expected.upper()}: {err}", hint)
