"""Write MIMIC-CXR-JPG 2.0.0 + MIMIC-IV demographics in the published layout (helpers for tests, not tests).

`write_mimic` lays out, under ``root``:

- ``<cxr_dir>/mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz`` (or ``.csv``) with the published headers
  (metadata's 12 columns, split ``dicom_id,study_id,subject_id,split``, chexpert ``subject_id,study_id`` + 14
  labels in alphabetical order, cells ``1.0`` / ``0.0`` / ``-1.0`` / blank) and
  ``<cxr_dir>/files/p1x/p1xxxxxxx/sNNNNNNNN/<dicom_id>.jpg`` (tiny 8-bit grayscale JPEGs);
- ``<iv_dir>/hosp/{patients,admissions}.csv.gz`` (MIMIC-IV v2+, column ``race``) or
  ``<iv_dir>/core/...`` (v1.0, column ``ethnicity``) with the published headers.

`fixture_rows` is the hand-made case list the tests check row by row (see its comments for the quirks it
covers); `bulk_rows` makes many valid images (two per study) for benchmarks.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

METADATA_HEADER = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_HEADER = ("dicom_id", "study_id", "subject_id", "split")
LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
CHEXPERT_HEADER = ("subject_id", "study_id", *LABELS)
PATIENTS_HEADER = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
_ADMISSIONS_V1 = (
    "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admission_location,discharge_location,"
    "insurance,language,marital_status,ethnicity,edregtime,edouttime,hospital_expire_flag"
).split(",")
_ADMISSIONS_V2 = (
    "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,admission_location,"
    "discharge_location,insurance,language,marital_status,race,edregtime,edouttime,hospital_expire_flag"
).split(",")
ADMISSIONS_HEADER = {"hosp": tuple(_ADMISSIONS_V2), "core": tuple(_ADMISSIONS_V1)}
RACE_COLUMN = {"hosp": "race", "core": "ethnicity"}
VIEWS = {  # ViewPosition -> (PerformedProcedureStepDescription, ViewCodeSequence_CodeMeaning)
    "PA": ("CHEST (PA AND LAT)", "postero-anterior"),
    "LATERAL": ("CHEST (PA AND LAT)", "lateral"),
    "AP": ("CHEST (PORTABLE AP)", "antero-posterior"),
    "LL": ("CHEST (PA AND LAT)", "left lateral"),
    "SWIMMERS": ("CHEST (SINGLE VIEW)", "Swimmer's"),
    "": ("CHEST (PORTABLE AP)", ""),
}


@dataclass
class MimicRows:
    """The rows of every table, as dicts keyed by the published column names (race under ``race``)."""

    metadata: list[dict[str, str]] = field(default_factory=list)
    split: list[dict[str, str]] = field(default_factory=list)
    chexpert: list[dict[str, str]] = field(default_factory=list)
    patients: list[dict[str, str]] = field(default_factory=list)
    admissions: list[dict[str, str]] = field(default_factory=list)

    def copy(self) -> MimicRows:
        return replace(self, **{k: [dict(r) for r in getattr(self, k)] for k in self.__dataclass_fields__})


def dicom_id(text: str) -> str:
    """Five dash-joined groups of 8 hex digits, like MIMIC's dicom_id."""
    h = hashlib.md5(text.encode()).hexdigest() + hashlib.sha1(text.encode()).hexdigest()
    return "-".join(h[i : i + 8] for i in range(0, 40, 8))


def image(subject: str, study: str, n: int, view: str, date: str, split: str) -> tuple[dict, dict]:
    """One image's metadata row and split row."""
    did = dicom_id(f"{subject}/{study}/{n}")
    procedure, meaning = VIEWS.get(view, ("CHEST (PA AND LAT)", view.lower()))
    meta = {
        "dicom_id": did,
        "subject_id": subject,
        "study_id": study,
        "PerformedProcedureStepDescription": procedure,
        "ViewPosition": view,
        "Rows": "3056",
        "Columns": "2544",
        "StudyDate": date,
        "StudyTime": "213014.531",
        "ProcedureCodeSequence_CodeMeaning": procedure,
        "ViewCodeSequence_CodeMeaning": meaning,
        "PatientOrientationCodeSequence_CodeMeaning": "Erect",
    }
    return meta, {"dicom_id": did, "study_id": study, "subject_id": subject, "split": split}


def labels(subject: str, study: str, **states: str) -> dict[str, str]:
    """A chexpert row: ``Pleural_Effusion="1.0"`` sets "Pleural Effusion"; the rest blank."""
    row = {"subject_id": subject, "study_id": study, **{label: "" for label in LABELS}}
    row.update({k.replace("_", " "): v for k, v in states.items()})
    return row


def patient(subject: str, gender: str, anchor_age: str, anchor_year: str) -> dict[str, str]:
    group = "2014 - 2016"
    return {
        "subject_id": subject,
        "gender": gender,
        "anchor_age": anchor_age,
        "anchor_year": anchor_year,
        "anchor_year_group": group,
        "dod": "",
    }


def admission(subject: str, n: int, race: str) -> dict[str, str]:
    return {
        "subject_id": subject,
        "hadm_id": str(20000000 + int(subject) % 1000000 * 10 + n),
        "race": race,
        "admittime": "2180-05-06 22:23:00",
        "admission_type": "URGENT",
        "insurance": "Other",
    }


def fixture_rows(variant: str = "hosp") -> MimicRows:
    """Eight images of six subjects; race strings as MIMIC-IV v2+ (``hosp``) or v1.0 (``core``) write them."""
    v2 = variant == "hosp"
    rows = MimicRows()
    images = [
        # 10000032: one study with two images (PA + LATERAL), train; a later study (AP) two years after
        # the anchor year, so age = 52 + 2182 - 2180 = 54
        ("10000032", "50414267", "PA", "21800506", "train"),
        ("10000032", "50414267", "LATERAL", "21800506", "train"),
        ("10000032", "53189527", "AP", "21820717", "train"),
        ("10000764", "57375967", "", "21321015", "validate"),  # blank ViewPosition
        ("10000898", "50771383", "LL", "21530301", "test"),  # anchor_age 91: 91 + 3 = 94
        ("11000011", "56699142", "SWIMMERS", "21600101", "train"),  # two races across admissions
        ("12000012", "55555555", "PA", "21700101", "test"),  # no chexpert row, no admissions
        ("13000013", "58888888", "AP", "21900101", "validate"),  # no patients row
    ]
    seen: dict[str, int] = {}
    for subject, study, view, date, split in images:
        seen[study] = seen.get(study, 0) + 1
        meta, split_row = image(subject, study, seen[study], view, date, split)
        rows.metadata.append(meta)
        rows.split.append(split_row)
    rows.chexpert = [
        labels("10000032", "50414267", Cardiomegaly="0.0", Edema="-1.0", Pleural_Effusion="1.0"),
        labels("10000032", "53189527", No_Finding="1.0"),
        labels("10000764", "57375967", Atelectasis="1.0", Lung_Opacity="-1.0"),
        labels("10000898", "50771383", Support_Devices="1.0", Pneumothorax="0.0"),
        labels("11000011", "56699142", Fracture="1.0"),
        labels("13000013", "58888888", Edema="1.0"),
    ]
    rows.patients = [
        patient("10000032", "F", "52", "2180"),
        patient("10000764", "M", "86", "2132"),
        patient("10000898", "F", "91", "2150"),
        patient("11000011", "M", "40", "2160"),
        patient("12000012", "F", "30", "2170"),
    ]
    races = [
        ("10000032", "WHITE"),
        ("10000032", "UNKNOWN"),
        ("10000032", "WHITE - OTHER EUROPEAN" if v2 else "WHITE"),
        ("10000032", "WHITE"),
        ("10000764", "BLACK/CAPE VERDEAN" if v2 else "BLACK/AFRICAN AMERICAN"),
        ("10000898", "ASIAN - CHINESE" if v2 else "ASIAN"),
        ("10000898", "ASIAN" if v2 else "UNABLE TO OBTAIN"),
        ("10000898", "ASIAN - CHINESE" if v2 else "ASIAN"),
        ("11000011", "WHITE"),
        ("11000011", "BLACK/AFRICAN AMERICAN"),
        ("13000013", "HISPANIC/LATINO - PUERTO RICAN" if v2 else "HISPANIC/LATINO"),
    ]
    rows.admissions = [admission(s, n, race) for n, (s, race) in enumerate(races)]
    return rows


def bulk_rows(n: int) -> MimicRows:
    """``n`` valid images, two per study, one study per subject; races and splits cycle (v2+ strings)."""
    rows = MimicRows()
    races = ("WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN - CHINESE", "HISPANIC/LATINO - DOMINICAN", "UNKNOWN")
    for i in range(n):
        subject, study = str(10000000 + i // 2 * 37), str(50000000 + i // 2 * 53)
        meta, split_row = image(subject, study, i % 2, ("PA", "LATERAL")[i % 2], "21800506", "train")
        split_row["split"] = ("train", "train", "train", "validate", "test")[(i // 2) % 5]
        rows.metadata.append(meta)
        rows.split.append(split_row)
        if i % 2 == 0:
            rows.chexpert.append(labels(subject, study, Edema=("1.0", "0.0", "-1.0", "")[i // 2 % 4]))
            rows.patients.append(patient(subject, "MF"[i // 2 % 2], str(20 + i // 2 % 70), "2180"))
            rows.admissions.append(admission(subject, 0, races[i // 2 % len(races)]))
    return rows


def write_csv(path: Path, header: tuple[str, ...], rows: list[dict[str, str]]) -> Path:
    """``rows`` under ``header`` (missing cells blank), gzip-compressed when ``path`` ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(header), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def image_path(meta: dict[str, str]) -> str:
    s = meta["subject_id"]
    return f"files/p{s[:2]}/p{s}/s{meta['study_id']}/{meta['dicom_id']}.jpg"


def write_mimic(
    root: Path,
    rows: MimicRows | None = None,
    *,
    variant: str = "hosp",
    gz: bool = True,
    cxr_dir: str = "",
    iv_dir: str = "mimic-iv/2.2",
    images: bool = True,
) -> Path:
    """A root holding a MIMIC-CXR-JPG release (in ``cxr_dir``) and a MIMIC-IV ``variant`` (in ``iv_dir``)."""
    rows = rows or fixture_rows(variant)
    ext = ".csv.gz" if gz else ".csv"
    cxr = root / cxr_dir
    write_csv(cxr / f"mimic-cxr-2.0.0-metadata{ext}", METADATA_HEADER, rows.metadata)
    write_csv(cxr / f"mimic-cxr-2.0.0-split{ext}", SPLIT_HEADER, rows.split)
    write_csv(cxr / f"mimic-cxr-2.0.0-chexpert{ext}", CHEXPERT_HEADER, rows.chexpert)
    iv = root / iv_dir / variant
    write_csv(iv / f"patients{ext}", PATIENTS_HEADER, rows.patients)
    column = RACE_COLUMN[variant]
    admissions = [{**{k: v for k, v in r.items() if k != "race"}, column: r["race"]} for r in rows.admissions]
    write_csv(iv / f"admissions{ext}", ADMISSIONS_HEADER[variant], admissions)
    if images:
        for i, meta in enumerate(rows.metadata):
            write_jpeg(cxr / image_path(meta), i)
    return root


def write_jpeg(path: Path, seed: int, shape: tuple[int, int] = (20, 24)) -> Path:
    """A tiny 8-bit grayscale JPEG (``shape`` is rows, columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    Image.fromarray(((x * 9 + y * 5 + seed * 31) % 256).astype(np.uint8)).save(path, quality=90)
    return path
