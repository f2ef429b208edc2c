import json

import numpy as np
import padchest_files as pf
import pandas as pd
import pytest
from PIL import Image

from synthfair.errors import SynthfairError
from synthfair.images.readers import read_image
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.records import SPLITS, SourceError

SKIP = IngestConfig(on_error="skip")
LABELS = (
    "atelectasis",
    "cardiomegaly",
    "consolidation",
    "edema",
    "enlarged_cardiomediastinum",
    "fracture",
    "lung_lesion",
    "lung_opacity",
    "pleural_effusion",
    "pleural_other",
    "pneumonia",
    "pneumothorax",
    "support_devices",
)

# row of pf.ROWS -> image_path folder, age, sex, view, view_raw, device, positive findings (None: unlabelled)
EXPECTED = {
    0: ("0", 64, "male", "PA", "PA", "philips", {"pneumonia", "lung_opacity"}),
    1: ("1", 80, "female", "AP", "AP_horizontal", "imaging_dynamics", set()),  # ['normal']
    2: ("2", None, "female", "LATERAL", "L", "imaging_dynamics", None),  # blank birth, NaN Labels
    5: ("50", 57, "female", "PA", "PA", "philips", {"cardiomegaly"}),
    6: ("50", 57, "female", "PA", "PA", "philips", None),  # ['unchanged'] alone: unlabelled
}


def na(value):
    return None if pd.isna(value) else value


def stem(i, rows=pf.ROWS):
    return rows[i]["ImageID"].removesuffix(".png")


def ingest_fixture(tmp_path, rows=pf.ROWS, config=SKIP, **kwargs):
    pf.write_padchest(tmp_path / "root", rows, **kwargs)
    return ingest("padchest", tmp_path / "root", tmp_path / "index", config)


def by_id(out):
    return {r["source_id"]: r for r in read_index(out).to_dict("records")}


@pytest.mark.parametrize("gz", [False, True])
def test_index_rows_match_the_published_rows(tmp_path, gz):
    rep = ingest_fixture(tmp_path, gz=gz)
    rows = by_id(tmp_path / "index")
    assert rep.read == 7 and rep.indexed == 5 and rep.quarantined == {"excluded_by_source": 2}
    for i, (folder, age, sex, view, view_raw, device, positives) in EXPECTED.items():
        r = rows[stem(i)]  # the id is ImageID without .png
        assert r["image_path"] == f"{folder}/{pf.ROWS[i]['ImageID']}"
        assert (na(r["age"]), r["sex"], r["view"], r["view_raw"], r["device"]) == (
            age,
            sex,
            view,
            view_raw,
            device,
        )
        assert (
            r["device_raw"] == pf.ROWS[i]["Manufacturer_DICOM"]
            and r["sex_raw"] == pf.ROWS[i]["PatientSex_DICOM"]
        )
        assert r["patient_key"] == f"padchest_{pf.ROWS[i]['PatientID']}"
        assert r["study_key"] == f"padchest_{pf.ROWS[i]['StudyID']}"
        assert r["sample_key"] == f"padchest_{stem(i)}" and "." not in r["sample_key"]
        findings = {label: na(r[f"findings.{label}"]) for label in LABELS}
        if positives is None:
            assert set(findings.values()) == {None} and na(r["findings_raw"]) is None
        else:
            assert findings == {label: int(label in positives) for label in LABELS}
    assert rep.notes["labels_file"] == pf.CSV + (".gz" if gz else "")


def test_age_raw_and_labels_raw_kept(tmp_path):
    ingest_fixture(tmp_path)
    rows = by_id(tmp_path / "index")
    assert rows[stem(0)]["age_raw"] == "PatientBirth=1946.0;StudyDate_DICOM=20100307"
    assert rows[stem(2)]["age_raw"] == "PatientBirth=;StudyDate_DICOM=20110315"
    assert json.loads(rows[stem(0)]["findings_raw"]) == {"infiltrates": 1.0, "pneumonia": 1.0}  # stripped


def test_hashed_split_keeps_patients_together(tmp_path):
    ingest_fixture(tmp_path)
    index = read_index(tmp_path / "index")
    assert set(index["split"]) <= set(SPLITS)
    assert (index.groupby("patient_key")["split"].nunique() == 1).all()


def test_notes_and_defaulted_labels(tmp_path):
    rep = ingest_fixture(tmp_path)
    report = json.loads((tmp_path / "index" / "reports" / "padchest.json").read_text())
    assert report["defaulted_raw_values"] == {"findings=aortic elongation": 1}  # not in the taxonomy map
    notes = report["notes"]
    assert notes["labels_dropped"] == {"suboptimal study": 1, "unchanged": 1}
    assert notes["labels_missing"] == 1 and notes["index_column"] == "present" and notes["rows"] == 7
    assert rep.notes == notes


def test_excluded_rows_are_quarantined_with_their_reason(tmp_path):
    ingest_fixture(tmp_path)
    quarantine = read_quarantine(tmp_path / "index").set_index("source_id")
    assert quarantine.loc[stem(3), "code"] == quarantine.loc[stem(4), "code"] == "excluded_by_source"
    assert "'exclude'" in quarantine.loc[stem(3), "reason"] and "row 4" in quarantine.loc[stem(3), "where"]
    assert "Projection is EXCLUDE" in quarantine.loc[stem(4), "reason"]
    assert "ImageID=" + pf.ROWS[3]["ImageID"] in quarantine.loc[stem(3), "fields"]
    assert "BitsStored_DICOM=12" in quarantine.loc[stem(3), "fields"]  # the DICOM's depth, kept raw


def test_rows_the_source_excludes_are_quarantined_even_with_on_error_stop(tmp_path):
    rep = ingest_fixture(tmp_path, config=IngestConfig())  # a planned drop, not a fault: never stops a run
    assert rep.quarantined == {"excluded_by_source": 2}


def test_images_are_read_on_the_16_bit_scale(tmp_path):
    ingest_fixture(tmp_path)
    row = by_id(tmp_path / "index")[stem(0)]
    path = tmp_path / "root" / row["image_path"]
    with Image.open(path) as im:
        pixels = np.asarray(im)
    assert im.mode == "I;16" and pixels.max() == 4095  # a 12-bit image in a 16-bit PNG, as published
    decoded = read_image(path)
    assert (decoded.bits, decoded.format) == (16, "png")
    np.testing.assert_allclose(decoded.image, pixels / 65535, rtol=0, atol=1e-7)  # not / 4095


def test_missing_index_column_is_noted(tmp_path):
    rep = ingest_fixture(tmp_path, index_column=False)
    assert rep.indexed == 5 and rep.notes["index_column"] == "absent"


def test_nan_text_cells_read_as_missing(tmp_path):
    row = pf.ROWS[0] | {"ImageID": "x_00-000-001.png", "PatientBirth": "nan", "Labels": "nan"}
    rep = ingest_fixture(tmp_path, rows=[row])
    r = by_id(tmp_path / "index")["x_00-000-001"]
    assert na(r["age"]) is None and na(r["findings.pneumonia"]) is None
    assert rep.notes["nan_text_cells"] == {"PatientBirth": 1, "Labels": 1}


def test_bad_rows_are_quarantined_and_counted(tmp_path):
    def bad(i, **cells):
        return pf.ROWS[0] | {"ImageID": f"bad{i}_00-000-00{i}.png"} | cells

    rows = [
        *pf.ROWS,
        bad(1, Labels="['pneumonia', 'infiltrates'"),  # malformed list
        bad(2, PatientBirth="1710.0"),  # age 300
        pf.ROWS[0],  # duplicate ImageID
        bad(3),  # image file missing
        bad(4, ImageDir="zip"),
        bad(5, StudyDate_DICOM="2010-03-07"),
        bad(6, Labels="[1, 2]"),
    ]
    rep = ingest_fixture(tmp_path, rows=rows, skip_images=["bad3_00-000-003.png"], images=True)
    assert rep.quarantined == {
        "excluded_by_source": 2,
        "invalid_value": 5,
        "duplicate_id": 1,
        "image_missing": 1,
    }
    assert rep.read == rep.indexed + rep.total_quarantined == len(rows)
    reasons = read_quarantine(tmp_path / "index").set_index("source_id")["reason"]
    assert "Labels \"['pneumonia', 'infiltrates'\" is not a Python list" in reasons["bad1_00-000-001"]
    assert "age=300" in reasons["bad2_00-000-002"] and "PatientBirth=1710.0" in reasons["bad2_00-000-002"]
    assert "ImageDir 'zip'" in reasons["bad4_00-000-004"]
    assert "StudyDate_DICOM '2010-03-07'" in reasons["bad5_00-000-005"]


def test_unknown_manufacturer_stops_naming_value_row_and_taxonomy_entry(tmp_path):
    rows = [pf.ROWS[0] | {"Manufacturer_DICOM": "Agfa-Gevaert"}]
    with pytest.raises(SynthfairError) as err:
        ingest_fixture(tmp_path, rows=rows, config=IngestConfig())
    message = str(err.value)
    assert "'Agfa-Gevaert'" in message and f"{pf.CSV}, row 1" in message
    assert "sources.padchest.covariates.device.map" in message


def test_unknown_projection_is_quarantined_with_skip(tmp_path):
    rows = [*pf.ROWS[:3], pf.ROWS[5] | {"Projection": "OBLIQUE"}]
    rep = ingest_fixture(tmp_path, rows=rows)
    assert rep.quarantined == {"unmapped_value": 1} and rep.indexed == 3
    quarantine = read_quarantine(tmp_path / "index")
    assert quarantine["source_id"].tolist() == [stem(5)] and "'OBLIQUE'" in quarantine["reason"][0]


def test_missing_column_names_file_and_column(tmp_path):
    pf.write_padchest(tmp_path / "root", columns=[c for c in pf.COLUMNS if c != "Projection"], images=False)
    with pytest.raises(SourceError, match=r"missing column\(s\) \['Projection'\]") as err:
        ingest("padchest", tmp_path / "root", tmp_path / "index")
    assert pf.CSV in str(err.value) and "MethodProjection" in str(err.value)


def test_missing_csv(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(SourceError, match="PadChest labels CSV not found"):
        ingest("padchest", tmp_path / "root", tmp_path / "index")


def test_corrupt_csv_gz_names_the_file(tmp_path):
    path = pf.write_padchest(tmp_path / "root", images=False)
    path.with_name(pf.CSV + ".gz").write_bytes(path.read_bytes()[:200])  # not gzip data: BadGzipFile
    path.unlink()
    with pytest.raises(SourceError, match=f"cannot read .*{pf.CSV}.gz"):
        ingest("padchest", tmp_path / "root", tmp_path / "index")
