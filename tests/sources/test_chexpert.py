import gzip
import json

import chexpert_files as cf
import pandas as pd
import pytest

from synthfair.errors import SynthfairError
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.records import SourceError

SKIP = IngestConfig(on_error="skip")
TRAIN = "CheXpert-v1.0-small/train/"

# Path (after the release folder) -> sex, age, race, race_raw, view, view_raw, split
EXPECTED = {
    "train/patient00001/study1/view1_frontal.jpg": (
        "female",
        68,
        "white",
        "White, Hispanic",
        "AP",
        "AP",
        "train",
    ),
    "train/patient00002/study2/view1_frontal.jpg": (
        "female",
        87,
        "black",
        "Black, non-Hispanic",
        "AP",
        "AP",
        "train",
    ),
    "train/patient00002/study1/view1_frontal.jpg": (
        "female",
        83,
        "black",
        "Black, non-Hispanic",
        "AP",
        "AP",
        "train",
    ),
    "train/patient00002/study1/view2_lateral.jpg": (
        "female",
        83,
        "black",
        "Black, non-Hispanic",
        "LATERAL",
        "Lateral",
        "train",
    ),
    "train/patient00003/study1/view1_frontal.jpg": (
        "male",
        41,
        "asian",
        "Asian - Historical Conv",
        "LATERAL",
        "LL",
        "train",
    ),
    "train/patient00004/study1/view1_frontal.jpg": (
        None,
        None,
        None,
        "Patient Refused",
        "LATERAL",
        "RL",
        "train",
    ),
    "train/patient00005/study1/view1_frontal.jpg": ("male", 55, None, None, "PA", "PA", "train"),
    "train/patient00006/study1/view1_frontal.jpg": (
        "female",
        90,
        "other",
        "Other, non-Hispanic",
        None,
        "Frontal",
        "train",
    ),
    "valid/patient64541/study1/view1_frontal.jpg": ("male", 73, "white", "White", "AP", "AP", "validate"),
}


MARTIAN = [  # patient00006's race is a string the taxonomy does not know
    d if d[0] != "patient00006" else (*d[:3], "Martian, non-Hispanic", "Unknown") for d in cf.DEMOGRAPHICS
]


def na(value):
    return None if pd.isna(value) else value


def by_path(out):
    index = read_index(out)
    return {
        p.split("/", 1)[1]: row for p, row in zip(index["source_id"], index.to_dict("records"), strict=True)
    }


def report(out):
    return json.loads((out / "reports" / "chexpert.json").read_text())


@pytest.mark.parametrize("demo", ["xlsx", "csv"])
def test_index_rows_match_the_published_rows(tmp_path, demo):
    cf.write_chexpert(tmp_path / "root", demo=demo)
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index")
    rows = by_path(tmp_path / "index")
    assert rep.read == rep.indexed == len(EXPECTED) and rep.total_quarantined == 0
    for path, (sex, age, race, race_raw, view, view_raw, split) in EXPECTED.items():
        r = rows[path]
        got = (na(r["sex"]), na(r["age"]), na(r["race"]), na(r["race_raw"]), na(r["view"]), r["view_raw"])
        assert got == (sex, age, race, race_raw, view, view_raw), path
        assert r["split"] == split and r["image_path"] == f"{cf.SMALL}/{path}"
        assert r["source_id"] == f"{cf.SMALL}/{path}"  # the published Path is the id
        patient, study = path.split("/")[1:3]
        assert r["patient_key"] == f"chexpert_{patient}" and r["study_key"] == f"chexpert_{patient}_{study}"
        assert r["sample_key"] == "chexpert_" + path.removesuffix(".jpg").replace(
            "/", "-"
        )  # no release, no .jpg
    notes = report(tmp_path / "index")["notes"]
    assert notes["demographics"].lower().endswith(demo) and notes["images_without_demographics"] == 1
    assert notes["rows"] == {"train.csv": 8, "valid.csv": 1}
    assert notes["root_layout"] == "parent of the release folder" and notes["labels_file"] == "train.csv"


def test_raw_values_kept(tmp_path):
    cf.write_chexpert(tmp_path / "root")
    ingest("chexpert", tmp_path / "root", tmp_path / "index")
    rows = by_path(tmp_path / "index")
    unknown = rows["train/patient00004/study1/view1_frontal.jpg"]
    assert (unknown["sex_raw"], unknown["age_raw"]) == ("Unknown", "0")  # both mapped to missing
    assert rows["train/patient00001/study1/view1_frontal.jpg"]["source_raw"] == "chexpert"


def test_findings_uncertain_mask_and_no_finding(tmp_path):
    cf.write_chexpert(tmp_path / "root")
    ingest("chexpert", tmp_path / "root", tmp_path / "index")
    rows = by_path(tmp_path / "index")
    first = rows["train/patient00001/study1/view1_frontal.jpg"]
    assert first["findings.support_devices"] == 1 and first["findings.pneumothorax"] == 0
    assert first["findings.cardiomegaly"] == 0  # blank: unmentioned -> 0 by default
    assert json.loads(first["findings_raw"]) == {
        "No Finding": 1.0,
        "Pneumothorax": 0.0,
        "Support Devices": 1.0,
    }
    second = rows["train/patient00002/study2/view1_frontal.jpg"]
    assert second["findings.cardiomegaly"] == 0 and second["uncertain.cardiomegaly"] == 1  # -1.0, U-zeros
    assert second["findings.lung_opacity"] == 1 and second["uncertain.lung_opacity"] == 0
    assert second["findings.fracture"] == 1 and second["uncertain.pleural_effusion"] == 1
    valid = rows["valid/patient64541/study1/view1_frontal.jpg"]
    assert valid["findings.cardiomegaly"] == 1 and valid["findings.edema"] == 0


def test_uncertain_policy_positive(tmp_path):
    from synthfair.sources.harmonize import FindingsPolicy

    cf.write_chexpert(tmp_path / "root")
    ingest(
        "chexpert", tmp_path / "root", tmp_path / "index", IngestConfig(findings=FindingsPolicy("positive"))
    )
    second = by_path(tmp_path / "index")["train/patient00002/study2/view1_frontal.jpg"]
    assert second["findings.cardiomegaly"] == 1 and second["uncertain.cardiomegaly"] == 1


def test_root_may_be_the_release_folder(tmp_path):
    folder = cf.write_chexpert(tmp_path / "root", release="CheXpert-v1.0", demo="csv")
    (tmp_path / "root" / "chexpert_demo.csv").rename(folder / "chexpert_demo.csv")
    rep = ingest("chexpert", folder, tmp_path / "index")
    rows = by_path(tmp_path / "index")
    assert rep.indexed == len(EXPECTED)
    first = rows["train/patient00001/study1/view1_frontal.jpg"]
    assert first["image_path"] == "train/patient00001/study1/view1_frontal.jpg"  # first component stripped
    assert first["source_id"] == "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg"
    assert first["race"] == "white"
    notes = report(tmp_path / "index")["notes"]
    assert notes["root_layout"] == "release folder itself" and notes["release"] == "CheXpert-v1.0"


def test_chexbert_labels_when_train_csv_is_absent(tmp_path):
    cf.write_chexpert(tmp_path / "root", train_name="train_cheXbert.csv")
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index")
    assert rep.indexed == len(EXPECTED) and rep.notes["labels_file"] == "train_cheXbert.csv"


def test_no_demographics_file_leaves_race_missing(tmp_path):
    cf.write_chexpert(tmp_path / "root", demographics=None)
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index")
    index = read_index(tmp_path / "index")
    assert rep.indexed == len(EXPECTED) and index["race"].isna().all() and index["race_raw"].isna().all()
    assert rep.notes["demographics"] is None and "race is missing" in rep.notes["demographics_note"]


def test_unknown_race_stops_with_value_row_and_taxonomy_entry(tmp_path):
    cf.write_chexpert(tmp_path / "root", demographics=MARTIAN)
    with pytest.raises(SynthfairError) as err:
        ingest("chexpert", tmp_path / "root", tmp_path / "index")
    message = str(err.value)
    assert "'Martian, non-Hispanic'" in message and "train.csv, row 8" in message
    assert "sources.chexpert.covariates.race.map" in message


def test_unknown_race_is_quarantined_with_skip(tmp_path):
    cf.write_chexpert(tmp_path / "root", demographics=MARTIAN)
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index", SKIP)
    assert rep.quarantined == {"unmapped_value": 1} and rep.indexed == len(EXPECTED) - 1
    quarantine = read_quarantine(tmp_path / "index")
    assert quarantine["source_id"].tolist() == [f"{TRAIN}patient00006/study1/view1_frontal.jpg"]
    assert "PRIMARY_RACE=Martian, non-Hispanic" in quarantine["fields"][0]


def test_bad_rows_are_quarantined_and_counted(tmp_path):
    bad = [
        cf.row("train/patient00007/study1/view1_frontal.jpg", "Male", "300", "Frontal", "PA"),  # age 300
        cf.TRAIN[0],  # duplicate Path
        cf.row("train/patient00008/study1/view1_frontal.jpg", "Male", "50", "Frontal", "PA"),  # no image
        cf.row("train/patient00009/study1/view1_frontal.jpg", "Male", "50", "Frontal", "PA", Edema="2.0"),
    ]
    cf.write_chexpert(
        tmp_path / "root",
        train=[*cf.TRAIN, *bad],
        skip_images=["train/patient00008/study1/view1_frontal.jpg"],
    )
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index", SKIP)
    assert rep.quarantined == {"invalid_value": 2, "duplicate_id": 1, "image_missing": 1}
    assert rep.read == rep.indexed + rep.total_quarantined == len(EXPECTED) + len(bad)
    quarantine = read_quarantine(tmp_path / "index")
    reasons = dict(zip(quarantine["where"], quarantine["reason"], strict=True))
    assert "300" in reasons["train.csv, row 9"]
    assert "first seen at train.csv, row 1" in reasons["train.csv, row 10"]
    assert "'Edema' = '2.0'" in reasons["train.csv, row 12"]
    assert len(read_index(tmp_path / "index")) == rep.indexed


def test_bad_label_stops_by_default(tmp_path):
    bad = cf.row("train/patient00009/study1/view1_frontal.jpg", "Male", "50", "Frontal", "PA", Edema="yes")
    cf.write_chexpert(tmp_path / "root", train=[*cf.TRAIN, bad])
    with pytest.raises(SynthfairError, match="'Edema' = 'yes'"):
        ingest("chexpert", tmp_path / "root", tmp_path / "index")


@pytest.mark.parametrize("policy, code, indexed", [("drop", {"race_conflict": 1}, 8), ("missing", {}, 9)])
def test_patient_listed_twice_with_two_races(tmp_path, policy, code, indexed):
    demo = [*cf.DEMOGRAPHICS, ("patient00003", "Male", 41, "White", "Not Hispanic")]
    cf.write_chexpert(tmp_path / "root", demographics=demo, demo="csv")
    rep = ingest(
        "chexpert", tmp_path / "root", tmp_path / "index", IngestConfig("skip", race_conflict=policy)
    )
    assert rep.quarantined == code and rep.indexed == indexed
    assert rep.notes["demographics_race_conflicts"] == 1
    if policy == "missing":
        assert na(by_path(tmp_path / "index")["train/patient00003/study1/view1_frontal.jpg"]["race"]) is None
    else:
        reason = read_quarantine(tmp_path / "index")["reason"][0]
        assert "patient00003 has PRIMARY_RACE values ['Asian - Historical Conv', 'White']" in reason
        assert "(harmonized: ['asian', 'white'])" in reason


@pytest.mark.parametrize(
    ("extra", "path", "race", "race_raw"),
    [  # the same race written two ways; a known race and an unknown one; a blank cell
        (("patient00003", "Male", 41, "Asian", "Not Hispanic"), "train/patient00003", "asian", "Asian"),
        (("patient64541", "Male", 73, "Unknown", "Unknown"), "valid/patient64541", "white", "White"),
        (("patient00001", "Female", 68, None, None), "train/patient00001", "white", "White, Hispanic"),
    ],
)
def test_patient_listed_twice_with_one_harmonized_race(tmp_path, extra, path, race, race_raw):
    cf.write_chexpert(tmp_path / "root", demographics=[*cf.DEMOGRAPHICS, extra], demo="csv")
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index")
    assert rep.indexed == len(EXPECTED) and rep.notes["demographics_race_conflicts"] == 0
    row = by_path(tmp_path / "index")[f"{path}/study1/view1_frontal.jpg"]
    assert (row["race"], row["race_raw"]) == (race, race_raw)


def test_patient_listed_twice_with_an_unmapped_race_is_rejected_naming_it(tmp_path):
    demo = [*cf.DEMOGRAPHICS, ("patient00003", "Male", 41, "Martian", "Not Hispanic")]
    cf.write_chexpert(tmp_path / "root", demographics=demo, demo="csv")
    rep = ingest("chexpert", tmp_path / "root", tmp_path / "index", SKIP)
    assert rep.quarantined == {"unmapped_value": 1} and rep.notes["demographics_race_conflicts"] == 0
    quarantine = read_quarantine(tmp_path / "index")
    assert "'Martian'" in quarantine["reason"][0] and "PRIMARY_RACE=Martian" in quarantine["fields"][0]


def test_missing_column_names_file_and_column(tmp_path):
    header = [c if c != "AP/PA" else "AP-PA" for c in cf.HEADER]
    cf.write_chexpert(tmp_path / "root", header=header, images=False)
    with pytest.raises(SourceError, match=r"train\.csv: missing column\(s\) \['AP/PA'\]") as err:
        ingest("chexpert", tmp_path / "root", tmp_path / "index")
    assert "AP-PA" in str(err.value)


def test_missing_train_csv(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(SourceError, match="CheXpert train.csv not found.*nor CheXpert Plus"):
        ingest("chexpert", tmp_path / "root", tmp_path / "index")


# -- CheXpert Plus ---------------------------------------------------------------------------------------
def test_plus_renames_columns_and_uses_png_siblings(tmp_path):
    cf.write_plus(tmp_path / "plus")
    rep = ingest("chexpert", tmp_path / "plus", tmp_path / "index")
    assert rep.indexed == 3 and rep.notes["png_instead_of_jpg"] == 3 and rep.notes["image_dir"] == "PNG/PNG/"
    rows = {r["source_id"]: r for r in read_index(tmp_path / "index").to_dict("records")}
    first = rows["train/patient00001/study1/view1_frontal.jpg"]
    assert first["image_path"] == "PNG/PNG/train/patient00001/study1/view1_frontal.png"
    assert (first["sex"], first["age"], first["race"], first["view"]) == ("female", 68, "white", "AP")
    assert first["patient_key"] == "chexpert_patient00001" and first["split"] == "train"
    assert first["sample_key"] == "chexpert_train-patient00001-study1-view1_frontal"  # as in v1.0
    assert na(first["findings.edema"]) is None and na(first["findings_raw"]) is None  # no labels: missing
    lateral = rows["train/patient00002/study1/view2_lateral.jpg"]
    assert (lateral["view"], lateral["race"]) == ("LATERAL", "black")
    assert rows["valid/patient64541/study1/view1_frontal.jpg"]["split"] == "validate"


def test_plus_missing_column_lists_the_columns_present(tmp_path):
    cf.write_plus(tmp_path / "plus", header=[c for c in cf.PLUS_HEADER if c != "ap_pa"])
    with pytest.raises(SourceError, match=r"missing column\(s\) \['ap_pa'\]") as err:
        ingest("chexpert", tmp_path / "plus", tmp_path / "index")
    assert "frontal_lateral" in str(err.value)


def test_plus_unknown_split_is_rejected(tmp_path):
    odd = cf.plus_row(
        "test/patient70001/study1/view1_frontal.jpg", "Frontal", "PA", "50", "Male", "White", "test"
    )
    cf.write_plus(tmp_path / "plus", rows=[*cf.PLUS, odd])
    rep = ingest("chexpert", tmp_path / "plus", tmp_path / "index", SKIP)
    assert rep.indexed == 3 and rep.quarantined == {"invalid_value": 1}
    assert "split 'test'" in read_quarantine(tmp_path / "index")["reason"][0]


def test_plus_unreadable_csv_names_the_file(tmp_path):
    csv = cf.write_plus(tmp_path / "plus") / "df_chexpert_plus_240401.csv"
    csv.write_bytes(gzip.compress(csv.read_bytes()))  # a compressed copy under the plain name
    with pytest.raises(SourceError, match="cannot read .*df_chexpert_plus_240401.csv"):
        ingest("chexpert", tmp_path / "plus", tmp_path / "index")
