import warnings

import dicom_files
import numpy as np
import pydicom
import pytest

from synthfair.images import dicom
from synthfair.images.readers import ImageReadError

ANATOMY = dicom_files.anatomy()  # (32, 40) uint16, 12-bit, holds 0 and 4095


def decode(tmp_path, name="x.dcm", pixels=ANATOMY, **kwargs):
    return dicom.decode(dicom_files.write_dicom(tmp_path / name, pixels, **kwargs))


# -- intensity pipeline ------------------------------------------------------------------------------------
def test_monochrome2_scales_by_bits_stored(tmp_path):
    out = decode(tmp_path)
    assert out.image.dtype == np.float32 and out.image.shape == (32, 40)
    assert (out.bits, out.format, out.photometric) == (12, "dicom", "MONOCHROME2")
    np.testing.assert_allclose(out.image, ANATOMY / 4095, atol=1e-6)
    assert out.image[ANATOMY == 4095].min() == 1.0 and out.image[ANATOMY == 0].max() == 0.0


def test_scale_is_the_stored_range_not_the_image_range(tmp_path):
    dark = (ANATOMY // 4).astype(np.uint16)  # uses a quarter of the 12-bit range
    out = decode(tmp_path, pixels=dark)
    assert out.image.max() == pytest.approx(1023 / 4095)


def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path):
    mono2 = decode(tmp_path, "2.dcm")
    mono1 = decode(tmp_path, "1.dcm", photometric="MONOCHROME1")
    assert mono1.photometric == "MONOCHROME1"
    np.testing.assert_allclose(mono1.image, 1.0 - mono2.image, atol=1e-6)
    assert mono1.image[ANATOMY == 0].min() == 1.0  # raw 0 is white in MONOCHROME1
    assert mono1.image[ANATOMY == 4095].max() == 0.0


@pytest.mark.parametrize(
    ("photometric", "shape", "inverted"),
    [("MONOCHROME2", "INVERSE", True), ("MONOCHROME2", "IDENTITY", False), ("MONOCHROME1", "INVERSE", True)],
)
def test_presentation_lut_shape_inverse_inverts_once(tmp_path, photometric, shape, inverted):
    out = decode(tmp_path, photometric=photometric, extra={"PresentationLUTShape": shape})
    expected = 1.0 - ANATOMY / 4095 if inverted else ANATOMY / 4095
    np.testing.assert_allclose(out.image, expected, atol=1e-6)


@pytest.mark.parametrize(
    "rescale, expected",
    [
        ((2.0, -100.0), ANATOMY / 4095),  # the range follows the rescale: -100 .. 8090
        ((-1.0, 4095.0), 1 - ANATOMY / 4095),  # a negative slope inverts the values
        ((0.5, 1000.0), ANATOMY / 4095),
    ],
)
def test_rescale_slope_and_intercept(tmp_path, rescale, expected):
    np.testing.assert_allclose(decode(tmp_path, rescale=rescale).image, expected, atol=1e-6)


def window(raw, center, width):
    """PS3.3 C.11.2.1.2.1 LINEAR window to [0, 1], written out independently of pydicom."""
    c, w = center - 0.5, width - 1
    return np.clip((raw - c) / w + 0.5, 0, 1)


def test_window_center_width_applied(tmp_path):
    out = decode(tmp_path, window=(2048, 1024))
    np.testing.assert_allclose(out.image, window(ANATOMY.astype(float), 2048, 1024), atol=1e-6)
    assert (out.image == 0).any() and (out.image == 1).any()  # clipped outside the window


def test_window_with_monochrome1_and_rescale(tmp_path):
    out = decode(tmp_path, photometric="MONOCHROME1", window=(500, 1000), rescale=(0.5, -200.0))
    rescaled = ANATOMY * 0.5 - 200.0
    np.testing.assert_allclose(out.image, 1 - window(rescaled, 500, 1000), atol=1e-6)


def test_window_and_negative_slope_keep_below_window_black(tmp_path):
    out = decode(tmp_path, window=(2048, 1024), rescale=(-1.0, 4095.0))
    np.testing.assert_allclose(out.image, window(4095.0 - ANATOMY, 2048, 1024), atol=1e-6)


def test_voi_lut_sequence_applied_and_preferred_over_window(tmp_path):
    lut = np.minimum(np.arange(4096) // 8, 255).astype(np.uint8)  # 8 bits per entry
    out = decode(tmp_path, voi_lut=lut, window=(100, 10))
    np.testing.assert_allclose(out.image, lut[ANATOMY] / 255, atol=1e-6)


def test_voi_lut_16_bit_output_range(tmp_path):
    lut = (np.sqrt(np.arange(4096) / 4095) * 40000).astype(np.uint16)  # largest entry needs 16 bits
    out = decode(tmp_path, voi_lut=lut, rescale=(1.0, 0.0))
    np.testing.assert_allclose(out.image, lut[ANATOMY] / 65535, atol=1e-6)


def test_voi_lut_declared_16_bit_with_12_bit_entries(tmp_path):
    lut = (4095 - np.arange(4096)).astype(np.uint16)  # Agfa CR style: descriptor says 16, entries use 12
    out = decode(tmp_path, voi_lut=lut)
    np.testing.assert_allclose(out.image, lut[ANATOMY] / 4095, atol=1e-6)


def test_voi_lut_clamps_inputs_outside_the_table(tmp_path):
    lut = np.arange(256, dtype=np.uint8)  # covers inputs 0 .. 255 only
    out = decode(tmp_path, voi_lut=lut)
    np.testing.assert_allclose(out.image, np.minimum(ANATOMY, 255) / 255, atol=1e-6)


def test_rgb_becomes_luminance(tmp_path):
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 255, 100
    out = decode(tmp_path, pixels=rgb, photometric="RGB", bits_stored=8)
    assert out.image.shape == (32, 40) and out.photometric == "RGB"
    np.testing.assert_allclose(out.image, (0.299 * 255 + 0.587 * 100) / 255, atol=1e-6)


def test_multiframe_returns_frame_zero(tmp_path):
    frames = np.stack([ANATOMY, 4095 - ANATOMY]).astype(np.uint16)
    out = decode(tmp_path, pixels=frames)
    np.testing.assert_allclose(out.image, ANATOMY / 4095, atol=1e-6)


def test_decode_accepts_a_dataset(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "x.dcm", ANATOMY)
    out = dicom.decode(pydicom.dcmread(path))
    assert out.path == str(path)
    np.testing.assert_allclose(out.image, ANATOMY / 4095, atol=1e-6)


# -- transfer syntaxes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("syntax", ["jpeg2000", "rle", "jpeg_lossless"])
def test_lossless_syntaxes_equal_uncompressed(tmp_path, syntax):
    plain = decode(tmp_path, "plain.dcm", photometric="MONOCHROME1")
    packed = decode(tmp_path, f"{syntax}.dcm", photometric="MONOCHROME1", transfer_syntax=syntax)
    assert packed.bits == 12
    np.testing.assert_array_equal(packed.image, plain.image)


def test_jpeg2000_lossy_is_close(tmp_path):
    plain = decode(tmp_path, "plain.dcm")
    lossy = decode(tmp_path, "lossy.dcm", transfer_syntax="jpeg2000_lossy")
    assert pydicom.dcmread(tmp_path / "lossy.dcm").file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000
    assert not np.array_equal(lossy.image, plain.image)
    assert np.abs(lossy.image - plain.image).max() < 0.02


def test_jpeg_baseline_is_close(tmp_path):
    pixels = (ANATOMY // 16).astype(np.uint8)
    out = decode(tmp_path, pixels=pixels, bits_stored=8, transfer_syntax="jpeg_baseline")
    assert out.bits == 8
    assert np.abs(out.image - pixels / 255).max() < 0.05


def test_j2k_bitsstored_quirk_uses_codestream_precision(tmp_path):
    pixels = (ANATOMY.astype(np.uint32) * 16).astype(np.uint16)  # 16-bit values, up to 65520
    path = dicom_files.write_j2k_bitsstored_quirk(tmp_path / "vindr.dicom", pixels, declared_bits=12)
    assert pydicom.dcmread(path).BitsStored == 12
    out = dicom.decode(path)
    assert out.bits == 16  # scaled by 2**16 - 1, not clipped at 4095 nor masked to 12 bits
    np.testing.assert_allclose(out.image, pixels / 65535, atol=1e-6)


def test_j2k_precision_equal_to_bits_stored_is_left_alone(tmp_path):
    assert decode(tmp_path, transfer_syntax="jpeg2000").bits == 12


# -- header ------------------------------------------------------------------------------------------------
def test_read_header_skips_pixels(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "x", ANATOMY, patient_age="045Y", patient_sex="F")
    ds = dicom.read_header(path)
    assert "PixelData" not in ds
    assert (ds.PatientAge, ds.PatientSex, ds.Rows, ds.Columns) == ("045Y", "F", 32, 40)


def test_read_header_with_empty_age(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "x.dicom", ANATOMY, patient_age="", patient_sex="O")
    assert dicom.parse_age(dicom.read_header(path).PatientAge) is None


@pytest.mark.parametrize(
    "value, years",
    [
        ("061Y", 61.0),
        ("018M", 1.5),
        ("003W", 3 / 52.1775),
        ("010D", 10 / 365.25),
        ("000D", 0.0),
        ("999Y", 999.0),
        ("61", 61.0),  # bare integer, seen in the wild
        (" 061Y ", 61.0),
        ("", None),
        (None, None),
        ("abc", None),
        ("61Y", None),
        ("061X", None),
        ("061.5Y", None),
        ("-61", None),
    ],
)
def test_parse_age(value, years):
    assert dicom.parse_age(value) == (None if years is None else pytest.approx(years))


# -- failures ----------------------------------------------------------------------------------------------
def test_no_pixel_data(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "report.dcm", ANATOMY, extra={"PixelData": None})
    with pytest.raises(ImageReadError, match=r"report\.dcm.*Pixel Data"):
        dicom.decode(path)


def test_unsupported_transfer_syntax(tmp_path):
    path = dicom_files.write_unsupported_syntax(tmp_path / "video.dcm")
    with pytest.raises(ImageReadError, match=r"video\.dcm: unsupported transfer syntax MPEG2") as info:
        dicom.decode(path)
    assert "convert" in info.value.hint


@pytest.mark.parametrize("syntax", [None, "jpeg2000"])
def test_truncated_file(tmp_path, syntax):
    path = dicom_files.write_dicom(tmp_path / "cut.dcm", ANATOMY, transfer_syntax=syntax)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ImageReadError, match=r"cut\.dcm") as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the missing end of the encapsulated data
        dicom.decode(path)
    assert "re-download" in info.value.hint


def test_bad_window_width(tmp_path):
    path = dicom_files.write_dicom(tmp_path / "w.dcm", ANATOMY, window=(100, 0))
    with pytest.raises(ImageReadError, match=r"w\.dcm.*Window Width"):
        dicom.decode(path)


def test_palette_colour_is_refused(tmp_path):
    path = dicom_files.write_dicom(
        tmp_path / "p.dcm", ANATOMY, extra={"PhotometricInterpretation": "PALETTE COLOR"}
    )
    with pytest.raises(ImageReadError, match="PALETTE COLOR"):
        dicom.decode(path)


@pytest.mark.parametrize("content", [b"", b"not a dicom file\n", bytes(200)])
def test_read_header_refuses_non_dicom(tmp_path, content):
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"x\.dcm: not a DICOM file"):
        dicom.read_header(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.dcm: no such image file"):
        dicom.decode(tmp_path / "nope.dcm")
    with pytest.raises(ImageReadError, match=r"nope\.dcm"):
        dicom.read_header(tmp_path / "nope.dcm")


def test_a_header_claiming_a_huge_frame_is_refused_before_decoding(tmp_path):
    path = dicom_files.write_dicom(
        tmp_path / "bomb.dcm", ANATOMY, transfer_syntax="rle", extra={"Rows": 20000, "Columns": 20000}
    )
    with pytest.raises(ImageReadError, match=r"bomb\.dcm: a DICOM frame of 20000 x 20000"):
        dicom.decode(path)


@pytest.mark.parametrize(("slope", "intercept"), [("inf", "NaN"), ("1", "NaN"), ("0", "0"), ("NaN", "0")])
def test_a_rescale_that_is_not_finite_is_refused_not_cached_black(tmp_path, slope, intercept):
    path = dicom_files.write_dicom(tmp_path / "nan.dcm", ANATOMY, rescale=(1.0, 0.0))
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"nan\.dcm: Rescale(Slope|Intercept)"):
        dicom.decode(path)


@pytest.mark.parametrize("syntax", [None, "rle", "jpeg2000"])
def test_fuzzed_dicom_files_give_clean_errors(tmp_path, syntax):
    """Seeded mutants of a valid file (bytes flipped, cut, header values swapped): each decodes to a finite
    image in [0, 1] or raises the reader's error, never another exception."""
    import random

    valid = dicom_files.write_dicom(tmp_path / "valid.dcm", ANATOMY, transfer_syntax=syntax).read_bytes()
    rng = random.Random(f"dicom-{syntax}")
    refused = 0
    for i in range(120):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            if rng.random() < 0.1:
                del data[at:]
            elif data:
                data[at] = rng.randrange(256)
        path = tmp_path / f"m{i}.dcm"
        path.write_bytes(bytes(data))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = dicom.decode(path).image
            assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
        except ImageReadError:
            refused += 1
    assert refused > 0
