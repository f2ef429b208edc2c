import json

import pandas as pd
import pytest
from brax_files import COLUMNS, row, write_brax_source, write_spreadsheet

from synthfair.errors import SynthfairError
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.brax import _age, read
from synthfair.sources.records import SPLITS, SourceError

SKIP = IngestConfig(on_error="skip")
PUBLISHED = [row(i) for i in range(6)]


@pytest.fixture
def source(tmp_path):
    return write_brax_source(tmp_path / "brax" / "1.1.0")


def indexed(out):
    return read_index(out).set_index("source_id")


def test_ingest_harmonizes_every_row(source, tmp_path):
    report = ingest("brax", source, tmp_path / "index")
    assert (report.read, report.indexed, report.total_quarantined) == (6, 6, 0)
    assert report.notes["images"] == {"png": 3, "dicom": 3}
    assert report.notes["spreadsheet"] == "master_spreadsheet_update.csv"
    assert report.notes["age_numbers"] == "group lower bounds" and report.notes["accessions_shared"] == 0
    index = indexed(tmp_path / "index")
    p = [index.loc[r["PngPath"]] for r in PUBLISHED]  # source_id: the published PngPath, whatever exists

    assert (
        p[0]["image_path"] == PUBLISHED[0]["PngPath"] and p[0]["patient_key"] == f"brax_{row(0)['PatientID']}"
    )
    assert (p[0]["age"], p[0]["age_lo"], p[0]["age_hi"], p[0]["age_raw"]) == (52.5, 50, 55, "50-54")
    assert (p[0]["sex"], p[0]["view"], p[0]["view_raw"], p[0]["source"]) == ("male", "PA", "PA", "brax")
    assert pd.isna(p[0]["device"]) and p[0]["device_raw"] == "1"
    assert (p[0]["findings.cardiomegaly"], p[0]["findings.edema"], p[0]["uncertain.edema"]) == (1, 0, 1)
    assert (p[0]["findings.fracture"], p[0]["findings.pneumonia"], p[0]["uncertain.pneumonia"]) == (0, 0, 0)
    assert json.loads(p[0]["findings_raw"]) == {"Cardiomegaly": 1.0, "Edema": -1.0, "Fracture": 0.0}
    assert p[1]["view"] == "LATERAL" and p[1]["study_key"] == p[0]["study_key"]
    assert p[1]["split"] == p[0]["split"] and set(index["split"]) <= set(SPLITS)

    assert p[2]["image_path"] == PUBLISHED[2]["DicomPath"] and p[2]["image_path"].endswith(".dcm")
    assert (p[2]["age"], p[2]["age_lo"], p[2]["age_hi"], p[2]["age_raw"]) == (90.0, 85, 95, "85 or more")
    assert (p[2]["sex"], p[2]["view"], p[2]["device_raw"]) == ("female", "AP", "3")
    assert (p[2]["findings.pleural_effusion"], p[2]["findings.support_devices"]) == (1, 1)  # written as "1"

    assert p[3]["image_path"] == PUBLISHED[3]["DicomPath"] and "." not in p[3]["image_path"].rsplit("/")[-1]
    assert (p[3]["age_lo"], p[3]["age_hi"], p[3]["view_raw"]) == (60, 65, "AP LLD") and pd.isna(p[3]["view"])
    assert p[4]["image_path"] == PUBLISHED[4]["DicomPath"].removesuffix(".dcm")  # published with .dcm
    assert (p[4]["age"], p[4]["age_lo"], p[4]["age_hi"]) == (47.5, 45, 50)  # bare 45: the 45-49 group
    assert (p[4]["findings.atelectasis"], p[4]["uncertain.atelectasis"]) == (0, 1)

    assert p[5]["image_path"] == PUBLISHED[5]["PngPath"] and p[5]["sex_raw"] == "O" and pd.isna(p[5]["sex"])
    assert pd.isna(p[5]["age"]) and pd.isna(p[5]["device_raw"])
    assert all(p[5][f"findings.{x}"] == 0 for x in ("cardiomegaly", "edema", "support_devices"))


def test_integer_manufacturer_codes_are_counted_as_defaulted(source, tmp_path):
    report = ingest("brax", source, tmp_path / "index")
    assert report.defaulted["device=1"] == 2 and report.defaulted["device=3"] == 2


def test_older_spreadsheet_with_exact_ages(tmp_path):
    rows = [dict(r) for r in PUBLISHED]
    rows[0]["PatientAge"] = "61"  # not a multiple of 5: every bare number is an exact age
    root = write_brax_source(tmp_path / "brax", name="master_spreadsheet.csv", rows=rows)
    report = ingest("brax", root, tmp_path / "index")
    assert (
        report.notes["spreadsheet"] == "master_spreadsheet.csv"
        and report.notes["age_numbers"] == "exact years"
    )
    index = indexed(tmp_path / "index")
    assert index.loc[rows[0]["PngPath"], "age"] == 61.0 and pd.isna(index.loc[rows[0]["PngPath"], "age_lo"])
    assert index.loc[rows[4]["PngPath"], "age"] == 45.0


def test_update_spreadsheet_is_preferred(source, tmp_path):
    write_spreadsheet(source / "master_spreadsheet.csv", PUBLISHED[:1])
    assert ingest("brax", source, tmp_path / "index").read == 6


@pytest.mark.parametrize(
    ("raw", "grouped", "expected"),
    [
        ("50-54", True, (50, 55)),
        ("50 - 54", True, (50, 55)),
        ("50 to 54", False, (50, 55)),
        ("85 or more", True, (85, 95)),
        ("85+", True, (85, 95)),
        (">=85", True, (85, 95)),
        ("60", True, (60, 65)),
        ("61", False, 61.0),
        ("61.0", False, 61.0),
    ],
)
def test_age_formats(raw, grouped, expected):
    assert _age(raw, grouped) == expected


@pytest.mark.parametrize("raw", ["adult", "54-50", "50-", "-3"])
def test_unreadable_ages_give_a_message(raw):
    message = _age(raw, True)
    assert isinstance(message, str) and repr(raw) in message and "PatientAge" in message


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        ([c for c in COLUMNS if c != "PatientAge"], ["'PatientAge'", "master_spreadsheet_update.csv"]),
        ([c for c in COLUMNS if c != "Pleural Other"], ["'Pleural Other'"]),
        ([c for c in COLUMNS if c not in ("PngPath", "DicomPath")], ["'PngPath'", "'DicomPath'"]),
    ],
)
def test_missing_column_is_a_source_error(source, columns, words):
    write_spreadsheet(source / "master_spreadsheet_update.csv", PUBLISHED, columns)
    with pytest.raises(SourceError) as err:
        list(read(source, SKIP, {}))
    assert all(w in str(err.value) for w in words)


def test_missing_spreadsheet_is_a_source_error(source):
    (source / "master_spreadsheet_update.csv").unlink()
    with pytest.raises(SourceError, match="master_spreadsheet"):
        list(read(source, SKIP, {}))


def _edited(root, index, **cells):
    rows = [dict(r) for r in PUBLISHED]
    rows[index].update(cells)
    write_spreadsheet(root / "master_spreadsheet_update.csv", rows)


@pytest.mark.parametrize(
    ("damage", "code", "words"),
    [
        (
            lambda r: _edited(r, 2, PatientSex="X"),
            "unmapped_value",
            ["'X'", "sources.brax.covariates.sex", "row 3"],
        ),
        (lambda r: _edited(r, 1, ViewPosition="XTABLE"), "unmapped_value", ["'XTABLE'", "covariates.view"]),
        (lambda r: _edited(r, 3, PatientAge="300"), "invalid_value", ["age=300.0", "'300'", "row 4"]),
        (lambda r: _edited(r, 3, PatientAge="adult"), "invalid_value", ["PatientAge = 'adult'", "row 4"]),
        (lambda r: _edited(r, 0, Edema="2.0"), "invalid_value", ["'Edema' = '2.0'", "row 1"]),
        (lambda r: _edited(r, 5, PatientID=""), "invalid_value", ["PatientID blank", "row 6"]),
        (lambda r: _edited(r, 4, PngPath=PUBLISHED[0]["PngPath"]), "duplicate_id", ["duplicate id", "row 1"]),
        (lambda r: (r / PUBLISHED[5]["PngPath"]).unlink(), "image_missing", [PUBLISHED[5]["PngPath"]]),
    ],
)
def test_bad_rows_stop_or_are_quarantined(source, tmp_path, damage, code, words):
    damage(source)
    with pytest.raises(SynthfairError) as err:
        ingest("brax", source, tmp_path / "stop")
    assert all(w in str(err.value) for w in words), str(err.value)
    report = ingest("brax", source, tmp_path / "skip", SKIP)
    assert report.read == report.indexed + report.total_quarantined == 6
    assert dict(report.quarantined) == {code: 1}
    quarantine = read_quarantine(tmp_path / "skip")
    assert list(quarantine["code"]) == [code]
    assert all(w in quarantine["reason"][0] + quarantine["hint"][0] for w in words)
