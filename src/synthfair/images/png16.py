"""The pixel format of caches and releases: 16-bit grayscale PNG, float32 (H, W) in [0, 1] in memory.

    data = encode_png16(image)                  # image in [0, 1] -> PNG bytes (values clipped, rounded)
    image = decode_png16(data, "shard 3: x.png")  # checked: size read from the header first, then decoded

A PNG may come from a downloaded release, so decoding is bounded: the header's size is checked before any
pixel is decoded, and anything but a grayscale PNG is an `ImageReadError` naming ``where``.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from synthfair.images.decoded import REDOWNLOAD, ImageReadError

MAX_IMAGE_PIXELS = 4096 * 4096  # larger than any release size synthfair writes (up to 1024²)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png16(image: np.ndarray) -> bytes:
    """An image in [0, 1] as a 16-bit grayscale PNG."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_png16(data: bytes, where: str = "PNG image", fix: str = REDOWNLOAD) -> np.ndarray:
    """A 16-bit (or 8-bit) grayscale PNG as float32 (H, W) in [0, 1]; its size is checked from the header
    before any pixel is decoded. Errors name ``where`` and suggest ``fix``."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ImageReadError(f"{where}: not a PNG image (no PNG header)", fix)
    w, h = struct.unpack(">II", data[16:24])
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageReadError(f"{where}: a {w}x{h} image, more than {MAX_IMAGE_PIXELS} pixels", fix)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.size != (w, h):
                raise ImageReadError(f"{where}: a PNG whose header disagrees with itself", fix)
            if image.format != "PNG" or image.mode not in ("I;16", "I;16B", "I", "L"):
                raise ImageReadError(
                    f"{where}: a {image.format} image of mode {image.mode}, not a grayscale PNG", fix
                )
            pixels = np.asarray(image)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{where}: not a PNG image ({type(err).__name__})", fix) from None
    except (OSError, SyntaxError, ValueError, TypeError) as err:
        raise ImageReadError(f"{where}: a broken PNG ({type(err).__name__}: {str(err)[:200]})", fix) from None
    scale = 255.0 if image.mode == "L" else 65535.0
    return pixels.astype(np.float32) / scale
