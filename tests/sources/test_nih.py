import json

import pandas as pd
import pytest
from nih_files import HEADER, fixture_rows, write_data_entry, write_nih

from synthfair.errors import SynthfairError
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.records import SPLITS, SourceError

SKIP = IngestConfig(on_error="skip")
COVERED = ("atelectasis", "cardiomegaly", "consolidation", "edema", "lung_lesion", "lung_opacity")


def by_id(out):
    return read_index(out).set_index("source_id")


def check(report, read, indexed, quarantined):
    assert (report.read, report.indexed, dict(report.quarantined)) == (read, indexed, quarantined)
    assert report.read == report.indexed + report.total_quarantined


@pytest.mark.parametrize(
    ("variant", "layout"), [("v2020", "kaggle"), ("original", "kaggle"), ("v2020", "box")]
)
def test_ingest_harmonizes_every_image(tmp_path, variant, layout):
    root = write_nih(tmp_path / "src", variant=variant, layout=layout)
    report = ingest("nih", root, tmp_path / "index")
    check(report, 7, 7, {})
    notes = report.notes
    assert notes["data_entry"] == (
        "Data_Entry_2017_v2020.csv" if variant == "v2020" else "Data_Entry_2017.csv"
    )
    assert notes["trailing_comma"] is (variant == "original")
    folders = ["images"] if layout == "box" else ["images_001/images", "images_002/images"]
    assert notes["image_folders"] == folders and notes["images_found"] == 7
    index = by_id(tmp_path / "index")

    first = index.loc["00000001_000.png"]
    image_dir = "images" if layout == "box" else "images_001/images"
    assert (first["image_path"], first["patient_key"]) == (f"{image_dir}/00000001_000.png", "nih_1")
    assert pd.isna(first["study_key"]) and first["sample_key"] == "nih_00000001_000"
    assert (first["age"], first["age_raw"], first["sex"], first["sex_raw"]) == (57.0, "57", "male", "M")
    assert (first["view"], first["view_raw"]) == ("PA", "PA")
    assert first["findings.cardiomegaly"] == 1 and all(first[f"findings.{x}"] == 0 for x in COVERED[2:])
    assert json.loads(first["findings_raw"]) == {"Cardiomegaly": 1.0}

    effusion = index.loc["00000001_002.png"]  # pipe-joined labels
    assert (effusion["findings.cardiomegaly"], effusion["findings.pleural_effusion"]) == (1, 1)
    normal = index.loc["00000002_000.png"]  # No Finding: every covered finding negative
    assert all(normal[f"findings.{x}"] == 0 for x in COVERED) and normal["findings.pleural_other"] == 0
    assert json.loads(normal["findings_raw"]) == {"No Finding": 1.0}
    masses = index.loc["00000004_000.png"]  # Mass|Nodule -> lung_lesion; Infiltration -> lung_opacity; AP
    assert (masses["findings.lung_lesion"], masses["findings.lung_opacity"], masses["view"]) == (1, 1, "AP")
    thick = index.loc["00000005_000.png"]  # Pleural_Thickening (underscore); Hernia maps to nothing
    assert (thick["findings.pleural_other"], thick["sex"], thick["age"]) == (1, "female", 69.0)
    for label in ("enlarged_cardiomediastinum", "fracture", "support_devices"):  # NIH does not label these
        assert pd.isna(first[f"findings.{label}"]) and pd.isna(first[f"uncertain.{label}"])
    assert index.loc["00000006_000.png", "age"] == 105.0  # above 100 but inside the taxonomy range

    # test_list.txt -> "test"; train_val_list.txt -> train or validate, hashed per patient
    assert set(index.loc[["00000004_000.png", "00000005_000.png"], "split"]) == {"test"}
    others = index.drop(["00000004_000.png", "00000005_000.png"])
    assert set(others["split"]) <= {"train", "validate"}
    assert others.groupby("patient_key")["split"].nunique().max() == 1


def test_v2020_is_preferred_over_the_original(tmp_path):
    root = write_nih(tmp_path / "src")
    rows = fixture_rows()
    rows[0][4] = "412"  # the original file's impossible ages
    write_data_entry(root, rows, "original")
    report = ingest("nih", root, tmp_path / "index")
    check(report, 7, 7, {})
    assert report.notes["data_entry"] == "Data_Entry_2017_v2020.csv"


def test_trailing_comma_on_data_lines_only(tmp_path):
    root = write_nih(tmp_path / "src", images=False)
    lines = (root / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    (root / "Data_Entry_2017.csv").write_text(
        "\n".join([lines[0], *(f"{line}," for line in lines[1:])]) + "\n"
    )
    (root / "Data_Entry_2017_v2020.csv").unlink()
    report = ingest("nih", root, tmp_path / "index", IngestConfig(check_images=False))
    assert report.indexed == 7 and report.notes["trailing_comma"] is False  # no empty column to drop
    first = by_id(tmp_path / "index").loc["00000001_000.png"]  # columns not shifted by a row index
    assert (first["patient_key"], first["age"], first["sex"]) == ("nih_1", 57.0, "male")


def test_without_split_lists_every_patient_is_hashed(tmp_path):
    root = write_nih(tmp_path / "src", split_lists=False)
    report = ingest("nih", root, tmp_path / "index")
    assert report.notes["split_lists"] == [] and report.indexed == 7
    assert set(by_id(tmp_path / "index")["split"]) <= set(SPLITS)


def test_one_split_list_alone_is_an_error(tmp_path):
    root = write_nih(tmp_path / "src", images=False)
    (root / "train_val_list.txt").unlink()
    with pytest.raises(SourceError, match="has test_list.txt but not train_val_list.txt"):
        ingest("nih", root, tmp_path / "index")


def test_image_in_both_split_lists_is_quarantined(tmp_path):
    root = write_nih(tmp_path / "src")
    with open(root / "train_val_list.txt", "a") as f:
        f.write("00000004_000.png\n")
    report = ingest("nih", root, tmp_path / "index", SKIP)
    check(report, 7, 6, {"split_conflict": 1})
    assert "both test_list.txt and train_val_list.txt" in read_quarantine(tmp_path / "index")["reason"][0]


@pytest.mark.parametrize(("raw", "age"), [("057Y", 57.0), ("006M", 0.5), ("026W", 26 / 52.1775)])
def test_ages_with_a_unit_are_read_as_years(tmp_path, raw, age):
    rows = fixture_rows()
    rows[0][4] = raw  # some copies of the original file write DICOM age strings
    report = ingest("nih", write_nih(tmp_path / "src", rows), tmp_path / "index")
    assert report.notes["ages_with_unit"] == 1
    first = by_id(tmp_path / "index").loc["00000001_000.png"]
    assert (first["age"], first["age_raw"]) == (pytest.approx(age), raw)


def test_malformed_age_string_is_quarantined(tmp_path):
    rows = fixture_rows()
    rows[0][4] = "57Y"  # not a DICOM age string (three digits) nor a number
    report = ingest("nih", write_nih(tmp_path / "src", rows), tmp_path / "index", SKIP)
    check(report, 7, 6, {"invalid_value": 1})
    assert "'57Y' is not a number" in read_quarantine(tmp_path / "index")["reason"][0]


def _rows_with(i, column, value):
    rows = fixture_rows()
    rows[i][column] = value
    return rows


@pytest.mark.parametrize(
    ("rows", "code", "words"),
    [
        (_rows_with(2, 4, "300"), "invalid_value", ["age=300.0", "[0, 120]", "row 3"]),
        (
            _rows_with(2, 1, "Cardiomegaly|Foo"),
            "unmapped_value",
            ["'Foo'", "Data_Entry_2017_v2020.csv, row 3", "sources.nih.covariates.findings.map"],
        ),
        (_rows_with(2, 5, "X"), "unmapped_value", ["'X'", "sources.nih.covariates.sex.map"]),
        (_rows_with(2, 0, "00000001_000.png"), "duplicate_id", ["duplicate id", "row 1"]),
    ],
)
def test_bad_rows_stop_or_are_quarantined(tmp_path, rows, code, words):
    root = write_nih(tmp_path / "src", rows)
    with pytest.raises(SynthfairError) as err:
        ingest("nih", root, tmp_path / "stop")
    for word in words:
        assert word in str(err.value)
    report = ingest("nih", root, tmp_path / "skip", SKIP)
    check(report, 7, 6, {code: 1})
    assert "row 3" in read_quarantine(tmp_path / "skip")["where"][0]


def test_missing_image_is_quarantined(tmp_path):
    root = write_nih(tmp_path / "src")
    (root / "images_002/images/00000005_000.png").unlink()
    report = ingest("nih", root, tmp_path / "index", SKIP)
    check(report, 7, 6, {"image_missing": 1})
    assert "images/00000005_000.png" in read_quarantine(tmp_path / "index")["reason"][0]


def test_an_image_path_leaving_the_root_is_quarantined(tmp_path):
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "x.png").write_bytes(b"not for a release")
    root = write_nih(tmp_path / "src" / "nih", _rows_with(2, 0, "../../private/x.png"))
    report = ingest("nih", root, tmp_path / "index", SKIP)
    check(report, 7, 6, {"image_outside_root": 1})
    assert "'..'" in read_quarantine(tmp_path / "index")["reason"][0]


def test_no_image_folder_is_an_error(tmp_path):
    root = write_nih(tmp_path / "src", images=False)
    with pytest.raises(SourceError, match="no image folder"):
        ingest("nih", root, tmp_path / "index")
    report = ingest("nih", root, tmp_path / "index", IngestConfig(check_images=False))
    assert report.indexed == 7 and read_index(tmp_path / "index")["image_path"][0].startswith("images/")


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (
            HEADER.replace("OriginalImage[Width,Height]", '"OriginalImage[Width,Height]"'),
            "OriginalImage[Width",
        ),
        (HEADER.replace("Patient Gender", "Gender"), "Patient Gender"),
    ],
)
def test_other_headers_are_errors(tmp_path, header, missing):
    root = write_nih(tmp_path / "src", images=False)
    lines = (root / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    with pytest.raises(SourceError) as err:
        ingest("nih", root, tmp_path / "index")
    assert "missing column(s)" in str(err.value) and f"'{missing}'" in str(err.value)
    assert "Expected the published header: Image Index,Finding Labels" in str(err.value)


def test_lines_longer_than_the_header_are_an_error(tmp_path):
    root = write_nih(tmp_path / "src", images=False)
    lines = (root / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    extra = [lines[0], *(f"{line},extra" for line in lines[1:])]
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(extra) + "\n")
    with pytest.raises(SourceError, match="more non-empty fields than the header"):
        ingest("nih", root, tmp_path / "index")


def test_missing_file_names_both_variants(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(SourceError, match="Data_Entry_2017_v2020.csv or Data_Entry_2017.csv"):
        ingest("nih", tmp_path / "src", tmp_path / "index")
