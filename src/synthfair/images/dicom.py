"""DICOM pixels to a displayed radiograph, and the header fields ingest reads, with pydicom 3.

`decode` follows the display pipeline of DICOM PS3.4 N.2, in pydicom's order:

1. decode the stored values of frame 0 (multi-frame files: only the first frame is decoded and returned);
2. modality LUT: RescaleSlope/RescaleIntercept, or a Modality LUT Sequence;
3. VOI: the first VOI LUT Sequence item if there is one, else the first WindowCenter/WindowWidth, else
   nothing (pydicom's ``apply_voi_lut(..., index=0, prefer_lut=True)``; the LUT itself is applied here);
4. map to [0, 1] by the *theoretical* output range of the last step, never by the image's own min and max:

   - VOI LUT Sequence:  0 .. 2**n - 1, n = the bit length of the table's largest entry, at most the LUT
                        Descriptor's bits per entry (see `_apply_lut`);
   - window:            y_min .. y_max exactly as pydicom's ``apply_windowing`` computes them (the stored
                        range from BitsStored and PixelRepresentation, or the Modality LUT's range, then
                        rescaled), so "below the window" is 0 even when RescaleSlope is negative;
   - no VOI:            the stored range (0 .. 2**BitsStored - 1, or signed) through the rescale, or
                        0 .. 2**n - 1 for a Modality LUT Sequence;

5. MONOCHROME1, or a Presentation LUT Shape of INVERSE, is inverted (1 - x) once: windowing does not do it.

Colour images (RGB, YBR_*) become luminance divided by 2**BitsStored - 1; VOI does not apply to them.

JPEG 2000 BitsStored quirk (VinDr-CXR): some files declare BitsStored 10 or 12 while the J2K codestream holds
16-bit samples that use the high bits; VinDr's own loader forces BitsStored = 16 before decoding. pydicom
3.0 returns those high bits unmasked (values above 2**BitsStored - 1), later releases mask them away, which
garbles the image. `decode` reads the precision from the codestream's SIZ marker and, when it exceeds
BitsStored, decodes with ``bits_stored=precision`` and scales by 2**precision - 1 (`Decoded.bits` says so).
The rule depends on the header and codestream only, not on pixel values, so one source keeps one scale.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_windowing, get_decoder, pixel_array
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import JPEG2000TransferSyntaxes

from synthfair.images.decoded import REDOWNLOAD, Decoded, ImageReadError, require_file

LOGGER = logging.getLogger(__name__)
DAMAGED = (NotImplementedError, ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)
DAMAGED += (struct.error, EOFError, OSError)
MAX_PIXELS = 64 << 20  # per frame (samples included): 8192 x 8192, twice the largest radiograph detector
AGE_UNITS = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}  # units per year
_AGE_AS = re.compile(r"^(\d{3})([DWMY])$")
_AGE_BARE = re.compile(r"^\d{1,3}$")


def decode(source: str | Path | Dataset) -> Decoded:
    """A DICOM file (or dataset) as a displayed image: frame 0 only for multi-frame files, luminance for
    colour ones; the module docstring gives each step and output range."""
    ds, path = _dataset(source)
    try:
        return _decode(ds, path)
    except ImageReadError:
        raise
    except DAMAGED as err:  # pydicom parses elements lazily, on first use: a damaged one fails where read
        detail = f"{type(err).__name__}: {str(err)[:200]}"
        raise ImageReadError(f"{path}: damaged DICOM header ({detail})", REDOWNLOAD) from None


def _decode(ds: Dataset, path: str) -> Decoded:
    bits = _stored_bits(ds, path)
    raw = _frame0(ds, path, bits)  # (H, W) or (H, W, 3)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if raw.ndim == 2 and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(
            f"{path}: unsupported Photometric Interpretation {photometric!r}",
            "only MONOCHROME1, MONOCHROME2 and RGB/YBR images can be read; convert the file first",
        )
    try:
        if raw.ndim == 3:
            image = _luminance(raw) / (2**bits - 1)
        else:
            image = _grey(raw, ds, bits, path)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, NotImplementedError) as err:
        raise ImageReadError(
            f"{path}: cannot apply the DICOM modality/VOI transforms: {err}", REDOWNLOAD
        ) from err
    if _inverted(ds, photometric):
        image = 1.0 - image
    return Decoded(np.clip(image, 0.0, 1.0).astype(np.float32), bits, "dicom", photometric, path)


def _inverted(ds: Dataset, photometric: str) -> bool:
    """Whether display inverts the values: MONOCHROME1 (windowing does not invert it), or a Presentation LUT
    Shape of INVERSE. The DX standard pairs MONOCHROME1 with INVERSE: that is one inversion, not two."""
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def read_header(path: str | Path) -> Dataset:
    """The dataset without its pixel data (fast: stops reading before (7FE0,0010)), e.g. for PatientAge."""
    return _read(path, stop_before_pixels=True)


def parse_age(value: object) -> float | None:
    """A DICOM Age String (VR AS, ``^\\d{3}[DWMY]$``, e.g. "061Y", "018M") in years; None when empty or
    malformed. A bare integer such as "61", seen in the wild, is taken as years. Range checks are the
    caller's: "999Y" gives 999.0."""
    text = "" if value is None else str(value).strip().upper()
    if match := _AGE_AS.match(text):
        return int(match[1]) / AGE_UNITS[match[2]]
    if _AGE_BARE.match(text):
        return float(text)
    return None


# -- reading -----------------------------------------------------------------------------------------------
def _read(path: str | Path, **kwargs) -> Dataset:
    path = require_file(path)
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as err:
        raise ImageReadError(
            f"{path}: not a DICOM file (no 'DICM' marker at byte 128)",
            "check it is DICOM (files without the 128-byte preamble are not supported), or " + REDOWNLOAD,
        ) from err
    except Exception as err:  # pydicom raises EOFError, struct.error, ValueError, ... on damaged files
        raise ImageReadError(
            f"{path}: cannot read DICOM: {err}", f"the file looks truncated; {REDOWNLOAD}"
        ) from err


def _dataset(source: str | Path | Dataset) -> tuple[Dataset, str]:
    if isinstance(source, Dataset):
        ds, path = source, str(getattr(source, "filename", None) or "<dataset>")
    else:
        ds, path = _read(source), str(source)
    if "PixelData" not in ds:  # pydicom drops a Pixel Data element that the end of the file cuts short
        raise ImageReadError(
            f"{path}: DICOM file has no (7FE0,0010) Pixel Data (not an image, or cut short)",
            f"if it should be an image, it is truncated: {REDOWNLOAD}",
        )
    return ds, path


# -- pixels ------------------------------------------------------------------------------------------------
def _stored_bits(ds: Dataset, path: str) -> int:
    """BitsStored, or the JPEG 2000 codestream's precision when that is larger (the VinDr quirk)."""
    bits = int(ds.get("BitsStored") or 0)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax not in JPEG2000TransferSyntaxes:
        return bits
    precision = _j2k_precision(ds)
    if precision is not None and precision > bits:
        LOGGER.info(
            "%s: JPEG 2000 precision %d > BitsStored %d; decoding %d bits", path, precision, bits, precision
        )
        return precision
    return bits


def _j2k_precision(ds: Dataset) -> int | None:
    """The sample precision in frame 0's J2K SIZ marker, or None when it cannot be parsed."""
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=int(ds.get("NumberOfFrames") or 1))
    except Exception:  # a damaged encapsulation: decoding will fail next and report it
        return None
    return get_j2k_parameters(frame).get("precision")


def _frame0(ds: Dataset, path: str, bits: int) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None:
        raise ImageReadError(f"{path}: DICOM file has no (0002,0010) Transfer Syntax UID", REDOWNLOAD)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise ImageReadError(
            f"{path}: unsupported transfer syntax {syntax.name} ({syntax})",
            "no pydicom decoder exists for it; convert the file first (e.g. gdcmconv --raw, dcmdjpeg)",
        ) from err
    if not decoder.is_available:
        raise ImageReadError(
            f"{path}: no decoder installed for {syntax.name} ({syntax})",
            f"install one of: {'; '.join(decoder.missing_dependencies)}",
        )
    _check_pixel_count(ds, path)
    options = {"bits_stored": bits} if bits != ds.get("BitsStored") else {}
    try:
        return pixel_array(ds, index=0, **options)
    except Exception as err:  # decoders raise RuntimeError, ValueError, ...; all mean "cannot decode this"
        raise ImageReadError(
            f"{path}: cannot decode {syntax.name} pixel data: {err}",
            f"the file may be truncated; {REDOWNLOAD}",
        ) from err


def _check_pixel_count(ds: Dataset, path: str) -> None:
    """Refuse a frame larger than any radiograph before decoding it: the header's size is untrusted (a
    12 MB RLE file can claim 20000 x 20000 pixels)."""
    try:
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError) as err:
        raise ImageReadError(f"{path}: unreadable Rows/Columns ({err})", REDOWNLOAD) from None
    if rows < 1 or columns < 1 or rows * columns * samples > MAX_PIXELS:
        raise ImageReadError(
            f"{path}: a DICOM frame of {rows} x {columns} x {samples} samples, outside 1 .. {MAX_PIXELS}",
            "radiographs are at most ~4,300 x 4,300 pixels; the header is damaged or not a radiograph",
        )


def _check_rescale(ds: Dataset, path: str) -> None:
    for name in ("RescaleSlope", "RescaleIntercept"):
        value = ds.get(name)
        try:
            ok = value is None or math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok or (name == "RescaleSlope" and value is not None and float(value) == 0):
            raise ImageReadError(
                f"{path}: {name} {value!r} is not a finite{' non-zero' if name == 'RescaleSlope' else ''} "
                "number",
                "the modality LUT would make every pixel NaN or equal; the header is damaged",
            )


def _grey(raw: np.ndarray, ds: Dataset, bits: int, path: str) -> np.ndarray:
    _check_rescale(ds, path)
    arr = apply_modality_lut(raw, ds)
    if (item := _voi_lut(ds)) is not None:
        arr, lo, hi = _apply_lut(arr, item, ds)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        arr = apply_windowing(arr, ds, index=0)
        lo, hi = _rescaled(ds, _value_range(ds, int(ds.BitsStored)))  # the range apply_windowing maps to
    elif ds.get("ModalityLUTSequence"):
        lo, hi = _value_range(ds, bits)
    else:
        lo, hi = sorted(_rescaled(ds, _value_range(ds, bits)))  # a negative slope still puts the lowest at 0
    if hi == lo or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImageReadError(f"{path}: DICOM output range is empty ({lo} .. {hi})", "check RescaleSlope")
    image = (arr.astype(np.float64) - lo) / (hi - lo)
    if not np.isfinite(image).all():
        raise ImageReadError(
            f"{path}: DICOM pixels are not finite after the modality/VOI transforms",
            "the header's rescale or LUT is damaged; the image would be cached as black",
        )
    return image


def _voi_lut(ds: Dataset) -> Dataset | None:
    """The first VOI LUT Sequence item, when it has a descriptor and data (pydicom's own test)."""
    items = ds.get("VOILUTSequence")
    if items and items[0].get("LUTDescriptor") is not None and items[0].get("LUTData") is not None:
        return items[0]
    return None


def _apply_lut(arr: np.ndarray, item: Dataset, ds: Dataset) -> tuple[np.ndarray, float, float]:
    """A VOI LUT (PS3.3 C.11.2.1.1) and its output range 0 .. 2**n - 1.

    Done here because pydicom 3.0's ``apply_voi`` indexes 8-bit LUTs with a uint8 array, which wraps inputs
    above 255. n is the bit length of the largest entry, at most the descriptor's bits per entry: some CR
    vendors (Agfa) declare 16 bits for 12-bit tables, which Cornerstone and Horos also work around."""
    entries, first, depth = (int(v) for v in item.LUTDescriptor)
    lut = _lut_data(item, ds)[: entries or 65536]
    index = np.clip(np.rint(arr).astype(np.int64) - first, 0, len(lut) - 1)
    n = min(depth, int(lut.max()).bit_length())
    return lut[index], 0.0, 2.0**n - 1


def _lut_data(item: Dataset, ds: Dataset) -> np.ndarray:
    data = item["LUTData"]
    if isinstance(data.value, bytes):  # VR OW: 16-bit words in the dataset's byte order
        little = ds.original_encoding[1] is not False
        return np.frombuffer(data.value, dtype="<u2" if little else ">u2").astype(np.int64)
    return np.atleast_1d(np.asarray(data.value, dtype=np.int64))


def _value_range(ds: Dataset, bits: int) -> tuple[float, float]:
    """A Modality LUT's output range, else the stored range of ``bits`` bits: pydicom's window range before
    the rescale."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, 2.0 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    if ds.get("PixelRepresentation", 0) == 0:
        return 0.0, 2.0**bits - 1
    return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1


def _rescaled(ds: Dataset, bounds: tuple[float, float]) -> tuple[float, float]:
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None or intercept is None:
        return bounds
    return bounds[0] * float(slope) + float(intercept), bounds[1] * float(slope) + float(intercept)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB to (H, W) luminance, ITU-R 601-2 weights as Pillow's 'L' conversion."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
