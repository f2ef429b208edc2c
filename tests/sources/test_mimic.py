import json

import pandas as pd
import pytest
from mimic_files import fixture_rows, image, image_path, write_csv, write_mimic

from synthfair.errors import SynthfairError
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.harmonize import FindingsPolicy
from synthfair.sources.records import SourceError

SKIP = IngestConfig(on_error="skip")
IDS = [m["dicom_id"] for m in fixture_rows().metadata]  # the fixture's images, in metadata order
COVERED = ("atelectasis", "cardiomegaly", "edema", "fracture", "pleural_effusion", "support_devices")


def by_id(out):
    return read_index(out).set_index("source_id")


def cells(row, *names):
    return tuple(row[name] for name in names)


def check(report, read, indexed, quarantined):
    assert (report.read, report.indexed, dict(report.quarantined)) == (read, indexed, quarantined)
    assert report.read == report.indexed + report.total_quarantined


@pytest.mark.parametrize(
    ("variant", "gz"), [("hosp", True), ("hosp", False), ("core", True), ("core", False)]
)
def test_ingest_harmonizes_every_image(tmp_path, variant, gz):
    root = write_mimic(tmp_path / "src", variant=variant, gz=gz)
    report = ingest("mimic", root, tmp_path / "index", SKIP)
    check(report, 8, 7, {"race_conflict": 1})
    v2 = variant == "hosp"
    ext = ".csv.gz" if gz else ".csv"
    assert report.notes["race_column"] == ("race" if v2 else "ethnicity")
    assert report.notes["mimic_iv_folder"] == f"mimic-iv/2.2/{variant}"
    assert report.notes["rows"][f"mimic-cxr-2.0.0-chexpert{ext}"] == 6
    assert report.notes["images_without_labels"] == report.notes["images_without_patients_row"] == 1
    index = by_id(tmp_path / "index")

    pa, lateral, ap = (index.loc[i] for i in IDS[:3])  # subject 10000032: one study, two images; a later AP
    assert pa["image_path"] == image_path(fixture_rows().metadata[0])
    assert pa["image_path"].startswith("files/p10/p10000032/s50414267/")
    assert (pa["patient_key"], pa["study_key"]) == ("mimic_10000032", "mimic_50414267")
    assert pa["sample_key"] == f"mimic_p10000032_s50414267_{IDS[0]}"  # the image's folders and name
    assert lateral["study_key"] == pa["study_key"] and ap["study_key"] == "mimic_53189527"
    for row in (pa, lateral):  # the study's labels on both images; Edema -1.0 -> uncertain, negative
        assert (row["findings.pleural_effusion"], row["findings.edema"], row["uncertain.edema"]) == (1, 0, 1)
        states = cells(row, "findings.cardiomegaly", "findings.atelectasis", "uncertain.atelectasis")
        assert states == (0, 0, 0)  # 0.0 and blank (unmentioned) are both negative
        assert (row["split"], row["age"], row["sex"], row["sex_raw"]) == ("train", 52.0, "female", "F")
    assert (pa["view"], lateral["view"], ap["view"]) == ("PA", "LATERAL", "AP")
    assert ap["age"] == 54.0 and ap["age_raw"] == "anchor_age=52;anchor_year=2180;StudyDate=21820717"
    assert all(ap[f"findings.{x}"] == 0 for x in COVERED)  # No Finding 1.0
    assert json.loads(ap["findings_raw"]) == {"No Finding": 1.0}
    # WHITE twice, WHITE - OTHER EUROPEAN once, UNKNOWN ignored: white, the most frequent raw string kept
    assert (pa["race"], pa["race_raw"]) == ("white", "WHITE")

    blank = index.loc[IDS[3]]  # blank ViewPosition, official "validate"
    assert pd.isna(blank["view"]) and pd.isna(blank["view_raw"]) and blank["split"] == "validate"
    assert (blank["age"], blank["sex"], blank["race"]) == (86.0, "male", "black")
    assert blank["race_raw"] == ("BLACK/CAPE VERDEAN" if v2 else "BLACK/AFRICAN AMERICAN")
    states = cells(blank, "findings.atelectasis", "findings.lung_opacity", "uncertain.lung_opacity")
    assert states == (1, 0, 1)

    old = index.loc[IDS[4]]  # anchor_age 91 (censored > 89) + 3 years; LL is a lateral
    assert (old["age"], old["view"], old["view_raw"], old["split"]) == (94.0, "LATERAL", "LL", "test")
    assert (old["race"], old["race_raw"]) == ("asian", "ASIAN - CHINESE" if v2 else "ASIAN")
    assert (old["findings.support_devices"], old["findings.pneumothorax"]) == (1, 0)

    unlabeled = index.loc[IDS[6]]  # no chexpert row: findings missing, not negative; no admissions
    assert all(pd.isna(unlabeled[f"findings.{x}"]) and pd.isna(unlabeled[f"uncertain.{x}"]) for x in COVERED)
    assert pd.isna(unlabeled["findings_raw"]) and pd.isna(unlabeled["race"]) and unlabeled["age"] == 30.0

    orphan = index.loc[IDS[7]]  # no patients row: kept, sex and age missing; race from admissions
    assert pd.isna(orphan["sex"]) and pd.isna(orphan["age"]) and orphan["race"] == "other"
    assert orphan["split"] == "validate" and orphan["findings.edema"] == 1

    (dropped,) = read_quarantine(tmp_path / "index").itertuples()  # 11000011: WHITE and BLACK admissions
    assert (dropped.source_id, dropped.code) == (IDS[5], "race_conflict")
    assert "subject 11000011" in dropped.reason and "'BLACK/AFRICAN AMERICAN', 'WHITE'" in dropped.reason
    assert "metadata.csv" in dropped.where and "row 6" in dropped.where


def test_race_conflict_missing_keeps_the_images(tmp_path):
    root = write_mimic(tmp_path / "src")
    report = ingest("mimic", root, tmp_path / "index", IngestConfig(race_conflict="missing"))
    check(report, 8, 8, {})
    assert report.notes["subjects_race_conflict"] == report.notes["images_race_conflict_kept_missing"] == 1
    kept = by_id(tmp_path / "index").loc[IDS[5]]
    assert pd.isna(kept["race"]) and pd.isna(kept["race_raw"]) and kept["sex"] == "male"
    assert pd.isna(kept["view"]) and kept["view_raw"] == "SWIMMERS"  # rare view -> missing, raw kept


def test_uncertain_labels_follow_the_findings_policy(tmp_path):
    root = write_mimic(tmp_path / "src")
    policy = IngestConfig(findings=FindingsPolicy(uncertain="positive"), race_conflict="missing")
    ingest("mimic", root, tmp_path / "index", policy)
    index = by_id(tmp_path / "index")
    assert (index.loc[IDS[0], "findings.edema"], index.loc[IDS[0], "uncertain.edema"]) == (1, 1)
    assert index.loc[IDS[3], "findings.lung_opacity"] == 1
    assert index.loc[IDS[0], "findings.atelectasis"] == 0  # blank: unmentioned, still negative


def test_releases_below_the_root(tmp_path):
    cxr = "physionet.org/files/mimic-cxr-jpg/2.0.0"
    root = write_mimic(
        tmp_path / "src", variant="core", cxr_dir=cxr, iv_dir="physionet.org/files/mimiciv/1.0"
    )
    report = ingest("mimic", root, tmp_path / "index", IngestConfig(race_conflict="missing"))
    assert report.indexed == 8 and report.notes["cxr_folder"] == cxr
    assert report.notes["mimic_iv_folder"] == "physionet.org/files/mimiciv/1.0/core"
    index = by_id(tmp_path / "index")
    assert index.loc[IDS[0], "image_path"] == f"{cxr}/{image_path(fixture_rows().metadata[0])}"


def test_image_without_split_row_is_hashed_by_patient(tmp_path):
    rows = fixture_rows()
    rows.split = [r for r in rows.split if r["subject_id"] != "12000012"]
    report = ingest("mimic", write_mimic(tmp_path / "src", rows), tmp_path / "index", SKIP)
    assert report.notes["images_without_split"] == 1 and report.indexed == 7
    assert by_id(tmp_path / "index").loc[IDS[6], "split"] in ("train", "validate", "test")


def test_image_without_split_row_joins_its_patients_official_split(tmp_path):
    rows = fixture_rows()
    meta, _ = image("10000898", "59999999", 1, "PA", "21540101", "test")  # a second study, not in split.csv
    rows.metadata.append(meta)
    report = ingest("mimic", write_mimic(tmp_path / "src", rows), tmp_path / "index", SKIP)
    assert report.notes["images_without_split"] == 1 and report.indexed == 8
    index = by_id(tmp_path / "index")
    assert index.loc[IDS[4], "split"] == index.loc[meta["dicom_id"], "split"] == "test"


@pytest.mark.parametrize(("table", "i", "note"), [("chexpert", 2, "labels"), ("split", 0, "split")])
def test_identical_duplicate_rows_are_dropped_before_joining(tmp_path, table, i, note):
    root = write_mimic(tmp_path / "src")
    expected = read_index_of(ingest("mimic", root, tmp_path / "once", SKIP))
    rows = fixture_rows()
    getattr(rows, table).append(dict(getattr(rows, table)[i]))
    report = ingest("mimic", write_mimic(tmp_path / "src", rows), tmp_path / "twice", SKIP)
    check(report, 8, 7, {"race_conflict": 1})  # the study's images are not read twice
    assert report.notes[f"{note}_duplicate_rows"] == 1
    pd.testing.assert_frame_equal(read_index_of(report), expected)


def read_index_of(report):
    return read_index(report.out).drop(columns=["image_root"]).reset_index(drop=True)


CHEXPERT_KEY = "(subject_id, study_id) = ('10000764', '57375967')"


@pytest.mark.parametrize(
    ("table", "i", "edit", "words"),
    [
        (
            "chexpert",
            2,
            {"Edema": "0.0"},
            ["chexpert.csv.gz: rows 1, 4", CHEXPERT_KEY, "Edema ['0.0', None]"],
        ),
        ("split", 3, {"split": "test"}, ["split.csv.gz: rows 1, 5", "(dicom_id, study_id, subject_id) = ("]),
    ],
)
def test_conflicting_duplicate_rows_name_file_key_and_rows(tmp_path, table, i, edit, words):
    rows = fixture_rows()
    getattr(rows, table).insert(0, getattr(rows, table)[i] | edit)  # data row 1, the original is row i + 2
    root = write_mimic(tmp_path / "src", rows, images=False)
    with pytest.raises(SourceError) as err:
        ingest("mimic", root, tmp_path / "index", SKIP)
    for word in [*words, "as published"]:
        assert word in str(err.value)


def test_unmapped_race_names_value_admissions_row_and_taxonomy_entry(tmp_path):
    rows = fixture_rows()
    rows.admissions[4]["race"] = "MARTIAN"  # subject 10000764's only admission, data row 5
    root = write_mimic(tmp_path / "src", rows)
    with pytest.raises(SynthfairError) as err:
        ingest("mimic", root, tmp_path / "stop", IngestConfig(race_conflict="missing"))
    text = str(err.value)
    for word in (
        "'MARTIAN'",
        "admissions.csv.gz, row 5",
        "subject 10000764",
        "sources.mimic.covariates.race.map",
    ):
        assert word in text
    report = ingest("mimic", root, tmp_path / "skip", SKIP)
    check(report, 8, 6, {"race_conflict": 1, "unmapped_value": 1})
    assert report.notes["subjects_race_unmapped"] == 1
    quarantine = read_quarantine(tmp_path / "skip").set_index("source_id")
    assert quarantine.loc[IDS[3], "code"] == "unmapped_value"


def _set(table, i, **values):
    def edit(rows):
        getattr(rows, table)[i].update(values)

    return edit


def _duplicate(rows):
    rows.metadata.append(dict(rows.metadata[0]))


@pytest.mark.parametrize(
    ("edit", "code", "words"),
    [
        (_set("patients", 1, anchor_age="300"), "invalid_value", ["age=300.0", "[0, 120]", "row 4"]),
        (_set("patients", 1, anchor_age="old"), "invalid_value", ["anchor_age='old'", "not numbers"]),
        (_set("chexpert", 2, Edema="2"), "invalid_value", ["'Edema' = '2'", "chexpert.csv.gz, row 3"]),
        (_set("split", 3, split="val"), "invalid_value", ["'val'", "split.csv.gz"]),
        (_duplicate, "duplicate_id", ["duplicate id", "row 1"]),
    ],
)
def test_bad_rows_stop_or_are_quarantined(tmp_path, edit, code, words):
    rows = fixture_rows()
    edit(rows)
    root = write_mimic(tmp_path / "src", rows)
    with pytest.raises(SynthfairError) as err:
        ingest("mimic", root, tmp_path / "stop", IngestConfig(race_conflict="missing"))
    for word in words:
        assert word in str(err.value)
    report = ingest("mimic", root, tmp_path / "skip", IngestConfig(on_error="skip", race_conflict="missing"))
    check(report, len(rows.metadata), len(rows.metadata) - 1, {code: 1})


def test_missing_image_is_quarantined(tmp_path):
    root = write_mimic(tmp_path / "src")
    (root / image_path(fixture_rows().metadata[2])).unlink()
    report = ingest("mimic", root, tmp_path / "index", SKIP)
    check(report, 8, 6, {"race_conflict": 1, "image_missing": 1})


def test_missing_column_names_file_and_column(tmp_path):
    rows = fixture_rows()
    root = write_mimic(tmp_path / "src", rows, images=False)
    header = [c for c in rows.metadata[0] if c != "ViewPosition"]
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", tuple(header), rows.metadata)
    with pytest.raises(SourceError, match=r"metadata.csv.gz: missing column\(s\) \['ViewPosition'\]"):
        ingest("mimic", root, tmp_path / "index")


@pytest.mark.parametrize(
    ("columns", "found"), [(("race", "ethnicity"), "['race', 'ethnicity']"), ((), "neither")]
)
def test_admissions_need_exactly_one_race_column(tmp_path, columns, found):
    root = write_mimic(tmp_path / "src", images=False)
    rows = [{"subject_id": "10000032", "hadm_id": "1", **{c: "WHITE" for c in columns}}]
    write_csv(root / "mimic-iv/2.2/hosp/admissions.csv.gz", ("subject_id", "hadm_id", *columns), rows)
    with pytest.raises(SourceError, match="admissions.csv.gz: expected exactly one of") as err:
        ingest("mimic", root, tmp_path / "index")
    assert f"found {found}" in str(err.value)


def test_mimic_iv_must_be_there_once(tmp_path):
    root = write_mimic(tmp_path / "src", images=False)
    write_mimic(tmp_path / "other", variant="core", images=False)
    (tmp_path / "other/mimic-iv/2.2").rename(root / "mimic-iv/1.0")
    with pytest.raises(SourceError, match=r"found: \['mimic-iv/1.0/core', 'mimic-iv/2.2/hosp'\]"):
        ingest("mimic", root, tmp_path / "index")
    for folder in ("mimic-iv/1.0/core", "mimic-iv/2.2/hosp"):
        for file in (root / folder).iterdir():
            file.unlink()
    with pytest.raises(SourceError, match="hosp/ for v2\\+ or core/ for v1.0.*found: none"):
        ingest("mimic", root, tmp_path / "index")
