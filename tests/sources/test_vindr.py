import json

import pandas as pd
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless
from vindr_files import (
    TEST_LABELS,
    TRAIN_LABELS,
    consensus_rows,
    image_id,
    reader_rows,
    write_csv,
    write_image,
    write_vindr_source,
)

from synthfair.errors import SynthfairError
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.records import SourceError, SourceRow
from synthfair.sources.vindr import read

SKIP = IngestConfig(on_error="skip")
T = [image_id("train", i) for i in range(4)]
S = [image_id("test", i) for i in range(2)]


@pytest.fixture
def source(tmp_path):
    return write_vindr_source(tmp_path / "vindr-cxr" / "1.0.0")


def rows_by_id(out):
    return read_index(out).set_index("source_id")


def test_ingest_harmonizes_every_image(source, tmp_path):
    report = ingest("vindr", source, tmp_path / "index")
    assert (report.read, report.indexed, report.total_quarantined) == (6, 6, 0)
    assert report.notes["reader_counts"] == {"3": 4}
    assert report.notes["train_labels"] == {"file": "annotations/image_labels_train.csv", "rows": 12}
    index = rows_by_id(tmp_path / "index")

    t0 = index.loc[T[0]]  # MONOCHROME1; Cardiomegaly 2 of 3 readers, Pneumothorax 1 of 3
    assert (t0["split"], t0["image_path"]) == ("train", f"train/{T[0]}.dicom")
    assert t0["patient_key"] == t0["sample_key"] == f"vindr_{T[0]}" and pd.isna(t0["study_key"])
    assert (t0["sex"], t0["sex_raw"], t0["age"], t0["age_raw"]) == ("male", "M", 45.0, "045Y")
    assert (t0["findings.cardiomegaly"], t0["findings.pneumothorax"]) == (1, 0)
    assert json.loads(t0["findings_raw"])["Pneumothorax"] == 0.0
    assert t0["source"] == "vindr" and pd.isna(t0["view"]) and pd.isna(t0["device"])

    t1 = index.loc[T[1]]  # JPEG 2000, age in months, No finding from all readers
    assert (t1["sex"], t1["age"], t1["age_raw"]) == ("female", 1.5, "018M")
    assert all(t1[f"findings.{x}"] == 0 for x in ("atelectasis", "cardiomegaly", "lung_lesion", "pneumonia"))

    t2 = index.loc[T[2]]  # empty PatientAge, PatientSex O (unknown)
    assert t2["sex_raw"] == "O" and pd.isna(t2["sex"]) and pd.isna(t2["age"]) and pd.isna(t2["age_raw"])

    t3 = index.loc[T[3]]  # Nodule/Mass 2 of 3 -> lung lesion; Lung tumor, Rib fracture 1 of 3 -> negative
    assert (t3["findings.lung_lesion"], t3["findings.fracture"], t3["uncertain.lung_lesion"]) == (1, 0, 0)

    s0 = index.loc[S[0]]  # test consensus row, the 'Other disease' spelling
    assert (s0["split"], s0["findings.pleural_effusion"], s0["age"]) == ("test", 1, 70.0)
    assert json.loads(s0["findings_raw"])["Other disease"] == 1.0
    assert index.loc[S[1], "split"] == "test"
    # VinDr has no label for these: missing, not negative
    assert index["findings.support_devices"].isna().all() and index["uncertain.support_devices"].isna().all()
    assert pydicom.dcmread(source / t1["image_path"]).file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert pydicom.dcmread(source / t0["image_path"]).PhotometricInterpretation == "MONOCHROME1"


def test_label_files_at_root_and_test_rad_id(tmp_path):
    root = write_vindr_source(tmp_path / "v", at_root=True, test_rad_id=True)
    report = ingest("vindr", root, tmp_path / "index")
    assert (report.read, report.indexed) == (6, 6)
    assert report.notes["test_labels"] == {"file": "image_labels_test.csv", "rows": 2}


def test_other_reader_counts_use_strict_majority(tmp_path):
    rows = reader_rows(4)
    del rows[2]  # image 0 keeps R1, R2 (both Cardiomegaly): 2 of 2 -> 1
    rows.append({**rows[-1], **dict.fromkeys(TRAIN_LABELS, "0"), "rad_id": "R17"})  # image 3: 4 readers,
    # Nodule/Mass 2 of 4 is not a majority
    root = write_vindr_source(tmp_path / "v", train=rows)
    notes = {}
    out = [r for r in read(root, SKIP, notes) if isinstance(r, SourceRow)]
    assert notes["reader_counts"] == {"2": 1, "3": 2, "4": 1}
    by_id = {r.source_id: r for r in out}
    assert by_id[T[0]].fields["readers"] == "2" and by_id[T[0]].findings["Cardiomegaly"] == 1.0
    assert by_id[T[0]].findings["Pneumothorax"] == 0.0
    assert by_id[T[3]].fields["readers"] == "4" and by_id[T[3]].findings["Nodule/Mass"] == 0.0


def test_labels_written_as_floats_are_read(tmp_path):
    rows = [{k: (v + ".0" if v in ("0", "1") else v) for k, v in row.items()} for row in reader_rows(4)]
    report = ingest("vindr", write_vindr_source(tmp_path / "v", train=rows), tmp_path / "index")
    assert report.indexed == 6 and rows_by_id(tmp_path / "index").loc[T[0], "findings.cardiomegaly"] == 1


@pytest.mark.parametrize(
    ("split", "drop", "words"),
    [
        ("train", "Edema", ["'Edema'", "image_labels_train.csv"]),
        ("train", "rad_id", ["'rad_id'"]),
        ("test", "Other disease", ["'Other diseases'", "'Other disease'", "image_labels_test.csv"]),
    ],
)
def test_missing_column_is_a_source_error(source, split, drop, words):
    path = source / "annotations" / f"image_labels_{split}.csv"
    rows = reader_rows(4) if split == "train" else consensus_rows(2)
    columns = ["image_id", "rad_id", *TRAIN_LABELS] if split == "train" else ["image_id", *TEST_LABELS]
    write_csv(path, rows, [c for c in columns if c != drop])
    with pytest.raises(SourceError) as err:
        list(read(source, SKIP, {}))
    assert all(w in str(err.value) for w in words)


def test_missing_label_file_is_a_source_error(source):
    (source / "annotations" / "image_labels_test.csv").unlink()
    with pytest.raises(SourceError, match="image_labels_test.csv"):
        list(read(source, SKIP, {}))


def _unknown_sex(root):
    write_image(root, "train", 1, patient_sex="X")


def _age_300(root):
    write_image(root, "test", 0, patient_age="300Y")


def _duplicate(root):
    rows = consensus_rows(2)
    write_csv(root / "annotations" / "image_labels_test.csv", [*rows, rows[0]])


def _image_gone(root):
    (root / "train" / f"{T[2]}.dicom").unlink()


def _bad_label(root):
    rows = reader_rows(4)
    rows[4]["Edema"] = "2"
    write_csv(root / "annotations" / "image_labels_train.csv", rows)


def _blank_id(root):
    rows = consensus_rows(2)
    rows[0]["image_id"] = ""
    write_csv(root / "annotations" / "image_labels_test.csv", rows)


def _not_dicom(root):
    (root / "test" / f"{S[1]}.dicom").write_bytes(b"<html>404 Not Found</html>")


@pytest.mark.parametrize(
    ("damage", "code", "words"),
    [
        (_unknown_sex, "unmapped_value", ["'X'", "sources.vindr.covariates.sex.map", "row 4"]),
        (_age_300, "invalid_value", ["age=300.0", "'300Y'", "image_labels_test.csv, row 1"]),
        (_duplicate, "duplicate_id", ["duplicate id", S[0], "row 3"]),
        (_image_gone, "image_missing", [f"train/{T[2]}.dicom"]),
        (_bad_label, "invalid_value", ["'Edema' = '2'", "image_labels_train.csv, row 5"]),
        (_blank_id, "invalid_value", ["image_id is blank", "image_labels_test.csv, row 1"]),
        (
            _not_dicom,
            "unreadable_image",
            [f"{S[1]}.dicom", "not a DICOM file", "image_labels_test.csv, row 2"],
        ),
    ],
)
def test_bad_rows_stop_or_are_quarantined(source, tmp_path, damage, code, words):
    damage(source)
    with pytest.raises(SynthfairError) as err:
        ingest("vindr", source, tmp_path / "stop")
    assert all(w in str(err.value) for w in words), str(err.value)
    report = ingest("vindr", source, tmp_path / "skip", SKIP)
    assert report.read == report.indexed + report.total_quarantined == 6 + (damage is _duplicate)
    assert dict(report.quarantined) == {code: 1}
    quarantine = read_quarantine(tmp_path / "skip")
    assert list(quarantine["code"]) == [code]
    assert all(w in quarantine["reason"][0] + quarantine["hint"][0] for w in words)


def test_malformed_age_is_missing_and_kept_raw(source, tmp_path):
    with pytest.warns(UserWarning, match="AS"):  # pydicom warns when writing an invalid AS value
        write_image(source, "train", 3, patient_age="61 years")
    report = ingest("vindr", source, tmp_path / "index")
    assert report.indexed == 6 and report.notes["age_malformed"] == 1
    row = rows_by_id(tmp_path / "index").loc[T[3]]
    assert pd.isna(row["age"]) and row["age_raw"] == "61 years"
