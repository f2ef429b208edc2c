import dicom_files
import numpy as np
import pytest
from PIL import Image

from synthfair.images.readers import (
    READERS,
    DicomReader,
    ImageReadError,
    PILReader,
    read_image,
    reader_for,
    sniff,
)

H, W = 24, 32  # non-square, to catch transposes


def ramp(dtype, top):
    return np.linspace(0, top, H * W).reshape(H, W).round().astype(dtype)


def save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


# -- PNG and JPEG ------------------------------------------------------------------------------------------
def test_png_8_bit(tmp_path):
    raw = ramp(np.uint8, 255)
    out = read_image(save(tmp_path / "a.png", raw))
    assert (out.bits, out.format, out.photometric, out.path) == (
        8,
        "png",
        "MONOCHROME2",
        str(tmp_path / "a.png"),
    )
    assert out.image.dtype == np.float32 and out.image.shape == (H, W)
    np.testing.assert_allclose(out.image, raw / 255, atol=1e-7)


def test_png_16_bit_keeps_all_levels(tmp_path):
    raw = ramp(np.uint16, 65535)
    path = save(tmp_path / "a.png", raw)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really stored as 16-bit greyscale
    out = read_image(path)
    assert out.bits == 16 and len(np.unique(out.image)) == H * W > 256
    np.testing.assert_allclose(out.image, raw / 65535, atol=1e-7)


def test_png_16_bit_is_scaled_by_nominal_max_not_image_max(tmp_path):
    raw = ramp(np.uint16, 4095)  # 12-bit data in a 16-bit PNG stays dark
    out = read_image(save(tmp_path / "a.png", raw))
    assert out.image.max() == pytest.approx(4095 / 65535)


def test_rgba_png_becomes_luminance(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 200, 255
    out = read_image(save(tmp_path / "a.png", rgba))
    assert out.bits == 8 and out.image.shape == (H, W)
    np.testing.assert_allclose(out.image, round(0.587 * 200) / 255, atol=1 / 255)


def test_grey_jpeg(tmp_path):
    raw = ramp(np.uint8, 255)
    out = read_image(save(tmp_path / "a.jpg", raw, quality=95))
    assert (out.bits, out.format, out.image.shape) == (8, "jpeg", (H, W))
    assert np.abs(out.image - raw / 255).max() < 0.05


def test_rgb_jpeg_becomes_luminance(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    out = read_image(save(tmp_path / "a.jpeg", rgb, quality=95))
    assert out.image.shape == (H, W) and out.photometric == "MONOCHROME2"
    assert out.image.mean() == pytest.approx(0.299, abs=0.02)


def test_image_rows_are_rows(tmp_path):
    raw = np.zeros((H, W), np.uint8)
    raw[0, -1] = 255  # top right corner
    out = read_image(save(tmp_path / "a.png", raw))
    assert out.image[0, W - 1] == 1.0 and out.image.sum() == 1.0


# -- picking a reader --------------------------------------------------------------------------------------
@pytest.fixture
def dicom_path(tmp_path):
    return dicom_files.write_dicom(tmp_path / "scan.dcm", dicom_files.anatomy())


@pytest.mark.parametrize(
    "name, reader",
    [("x.png", "png"), ("x.PNG", "png"), ("x.jpg", "jpeg"), ("x.jpeg", "jpeg"), ("x.dcm", "dicom")]
    + [("x.dicom", "dicom"), ("x.DICOM", "dicom")],
)
def test_reader_by_suffix(tmp_path, name, reader):
    assert reader_for(tmp_path / name).name == reader  # by name alone: the file need not exist


def test_vindr_dicom_suffix_is_read(tmp_path):
    path = dicom_files.write_dicom(
        tmp_path / "0a1b2c.dicom", dicom_files.anatomy(), photometric="MONOCHROME1"
    )
    out = read_image(path)
    assert out.format == "dicom" and out.photometric == "MONOCHROME1" and out.image.shape == (32, 40)


def test_suffixless_dicom_found_by_magic_bytes(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "image-1.2.840.113619", dicom_files.anatomy())
    assert sniff(path) == "dicom"
    assert isinstance(reader_for(path), DicomReader)
    np.testing.assert_allclose(read_image(path).image, dicom_files.anatomy() / 4095, atol=1e-6)


def test_png_without_suffix_found_by_magic_bytes(tmp_path):
    path = save(tmp_path / "a.png", ramp(np.uint8, 255)).rename(tmp_path / "noext")
    assert reader_for(path).name == "png"
    assert read_image(path).format == "png"


def test_can_read(tmp_path, dicom_path):
    png = save(tmp_path / "a.png", ramp(np.uint8, 255))
    assert [r.can_read(png) for r in READERS] == [True, False, False]
    assert [r.can_read(dicom_path) for r in READERS] == [False, False, True]


def test_reader_by_name(dicom_path):
    assert reader_for(dicom_path, "dicom").name == "dicom"
    assert read_image(dicom_path, reader="dicom").bits == 12
    assert read_image(dicom_path, reader=DicomReader()).bits == 12


def test_unknown_reader_name(dicom_path):
    with pytest.raises(ImageReadError, match=r"unknown image reader 'dicm' \(did you mean 'dicom'\?\)"):
        read_image(dicom_path, reader="dicm")


def test_misnamed_jpeg_is_still_read(tmp_path):
    path = save(tmp_path / "a.jpg", ramp(np.uint8, 255)).rename(tmp_path / "a.png")
    assert read_image(path).format == "jpeg"


# -- failures ----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such image file") as info:
        read_image(tmp_path / "nope.png")
    assert "re-download" in info.value.hint


def test_truncated_png(tmp_path):
    path = save(tmp_path / "cut.png", ramp(np.uint16, 65535))
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(ImageReadError, match=r"cut\.png: cannot decode as PNG") as info:
        read_image(path)
    assert "truncated" in info.value.hint


def test_text_file_named_png(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("404 Not Found\n")
    with pytest.raises(ImageReadError, match=r"x\.png: cannot decode as PNG"):
        read_image(path)


def test_dicom_named_png_says_what_it_is(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "x.png", dicom_files.anatomy())
    with pytest.raises(ImageReadError, match=r"x\.png") as info:
        read_image(path)
    assert "reader='dicom'" in info.value.hint


def test_gif_named_png_is_refused(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(ramp(np.uint8, 255)).save(path, format="GIF")
    with pytest.raises(ImageReadError, match=r"x\.png: is a GIF image, not PNG or JPEG"):
        read_image(path)


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.txt: unknown image format"):
        read_image(path)


def test_unsupported_dicom_syntax_through_read_image(tmp_path):
    path = dicom_files.write_unsupported_syntax(tmp_path / "video.dicom")
    with pytest.raises(ImageReadError, match=r"video\.dicom: unsupported transfer syntax"):
        read_image(path)


def test_pil_reader_formats():
    assert PILReader("png").suffixes == (".png",) and PILReader("jpeg").suffixes == (".jpg", ".jpeg")
    with pytest.raises(ImageReadError, match=r"not 'jpg' \(did you mean 'jpeg'\?\)"):
        PILReader("jpg")
