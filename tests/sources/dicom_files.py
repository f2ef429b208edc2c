"""Write synthetic DICOM files the way real chest X-ray releases look (helpers for the tests, not tests).

`write_dicom` builds a DX image with pydicom 3's ``set_pixel_data`` and ``compress`` and saves it with the
128-byte preamble and file meta, like a modality would. pydicom has no encoder for JPEG baseline or JPEG
lossless, so those two are encoded here: baseline through Pillow, lossless by `jpeg_lossless`, a minimal
process-14 (selection value 1) encoder. `write_j2k_bitsstored_quirk` reproduces VinDr-CXR's JPEG 2000 files
whose BitsStored is smaller than the codestream's precision.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    DigitalXRayImageStorageForPresentation,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

SYNTAXES = ("jpeg2000", "jpeg2000_lossy", "jpeg_lossless", "jpeg_baseline", "rle")


def anatomy(shape: tuple[int, int] = (32, 40), bits: int = 12) -> np.ndarray:
    """A smooth, non-square, chest-like uint16 image (bright body, dark lungs) holding 0 and 2**bits - 1."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] / np.array([shape[0] - 1, shape[1] - 1])[:, None, None]
    body = 0.6 + 0.4 * np.cos(np.pi * (x - 0.5)) * np.cos(np.pi * (y - 0.5) / 2)
    lungs = 0.5 * np.exp(-(((x - 0.3) / 0.12) ** 2 + ((y - 0.5) / 0.3) ** 2))
    lungs += 0.5 * np.exp(-(((x - 0.7) / 0.12) ** 2 + ((y - 0.5) / 0.3) ** 2))
    image = np.clip(body - lungs, 0, 1)
    image = (image - image.min()) / (image.max() - image.min())
    return np.rint(image * (2**bits - 1)).astype(np.uint16)


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    transfer_syntax: str | None = None,
    window: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    rescale: tuple[float, float] | None = None,
    patient_age: str | None = "061Y",
    patient_sex: str | None = "M",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``pixels`` ((H, W), (F, H, W) or (H, W, 3); uint16, or uint8 for 8 bits) as a DICOM file.

    ``transfer_syntax`` is None (explicit VR little endian) or one of `SYNTAXES`; ``voi_lut`` is a uint8
    table (8 bits per entry, LUT Data as US) or a uint16 one (16 bits, LUT Data as OW bytes), first value
    mapped 0; ``patient_age=""`` writes an empty
    PatientAge, None leaves it out. ``extra`` sets keywords last, after compression (None deletes one), so
    it can also break a file on purpose."""
    ds = _image(pixels, photometric, bits_stored)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        ds.VOILUTSequence = [_voi_item(voi_lut)]
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    for keyword, value in (("PatientAge", patient_age), ("PatientSex", patient_sex)):
        if value is not None:
            setattr(ds, keyword, value)
    _compress(ds, pixels, transfer_syntax)
    for keyword, value in (extra or {}).items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return _save(ds, path)


def write_j2k_bitsstored_quirk(
    path: str | Path, pixels: np.ndarray, declared_bits: int = 12, **kwargs
) -> Path:
    """A JPEG 2000 lossless file whose codestream has 16-bit precision (and values using those bits) while
    the header says BitsStored = ``declared_bits``, as in some VinDr-CXR files."""
    return write_dicom(
        path,
        pixels,
        bits_stored=16,
        transfer_syntax="jpeg2000",
        extra={"BitsStored": declared_bits, "HighBit": declared_bits - 1},
        **kwargs,
    )


def write_unsupported_syntax(path: str | Path, shape: tuple[int, int] = (32, 40)) -> Path:
    """A file that claims MPEG-2 video pixel data, which no pydicom decoder handles."""
    ds = _image(np.zeros(shape, np.uint16), "MONOCHROME2", 12)
    _encapsulated(ds, MPEG2MPML, b"\x00\x00\x01\xb3" + bytes(60))
    return _save(ds, path)


def jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """One greyscale frame as an ISO 10918-1 lossless codestream (process 14, predictor 1, point transform
    0), with one Huffman table that gives every difference category a 5-bit code."""
    rows, cols = pixels.shape
    x = pixels.astype(np.int64)
    pred = np.empty_like(x)  # H.1.2.1: 2**(P-1) first, then left on row 0, above on column 0, left elsewhere
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:], pred[1:, 0], pred[1:, 1:] = x[0, :-1], x[:-1, 0], x[1:, :-1]
    diff = (x - pred) % 65536
    diff = np.where(diff > 32768, diff - 65536, diff)  # modulo 2**16, in -32767 .. 32768
    bits = []
    for d in diff.ravel().tolist():
        ssss = abs(d).bit_length()
        bits.append(f"{ssss:05b}")  # canonical code of category ssss
        if 0 < ssss < 16:
            bits.append(f"{(d if d > 0 else d + (1 << ssss) - 1):0{ssss}b}")
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")
    sof = bytes([0xFF, 0xC3, 0, 11, precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
    sof += bytes([1, 1, 0x11, 0])
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 codes of length 5
    dht = bytes([0xFF, 0xC4, 0, 36, 0x00]) + counts + bytes(range(17))
    sos = bytes([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 1, 0, 0])  # Ss = predictor 1
    return b"\xff\xd8" + sof + dht + sos + data + b"\xff\xd9"


# -- internals ---------------------------------------------------------------------------------------------
def _image(pixels: np.ndarray, photometric: str, bits_stored: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.PatientID = "synthetic-0001"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=bits_stored)
    return ds


def _voi_item(lut: np.ndarray) -> Dataset:
    item = Dataset()
    depth = 8 if lut.dtype == np.uint8 else 16
    item.add_new(0x00283002, "US", [len(lut) % 65536, 0, depth])  # LUT Descriptor: entries, first, bits
    if depth == 8:
        item.add_new(0x00283006, "US", [int(v) for v in lut])  # LUT Data, one value per entry
    else:
        item.add_new(0x00283006, "OW", lut.astype("<u2").tobytes())  # as bytes, as many modalities write it
    return item


def _compress(ds: Dataset, pixels: np.ndarray, syntax: str | None) -> None:
    if syntax is None:
        return
    if syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    elif syntax == "jpeg2000_lossy":
        ds.compress(JPEG2000, encoding_plugin="pylibjpeg", j2k_cr=[4])  # lossy, yet close on a smooth image
    elif syntax == "rle":
        ds.compress(RLELossless)
    elif syntax == "jpeg_lossless":
        _encapsulated(ds, JPEGLosslessSV1, jpeg_lossless(pixels, int(ds.BitsStored)))
    elif syntax == "jpeg_baseline":
        buf = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=95)
        _encapsulated(ds, JPEGBaseline8Bit, buf.getvalue())
    else:
        raise ValueError(f"unknown transfer syntax {syntax!r}, expected None or one of {SYNTAXES}")


def _encapsulated(ds: Dataset, syntax: str, frame: bytes) -> None:
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax


def _save(ds: Dataset, path: str | Path) -> Path:
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def read_raw(path: str | Path) -> np.ndarray:
    """The stored values, as pydicom decodes them (for comparisons)."""
    return pydicom.dcmread(path).pixel_array
