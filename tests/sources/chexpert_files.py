"""Write CheXpert v1.0, CHEXPERT DEMO and CheXpert Plus fixtures in the published layout (helpers, not tests).

`write_chexpert` lays out ``<root>/CheXpert-v1.0-small/{train.csv, valid.csv, train/, valid/}`` with the exact
published header (``Frontal/Lateral`` and ``AP/PA`` with slashes, 14 labels in the published order), label
cells as ``1.0`` / ``0.0`` / ``-1.0`` / blank, and tiny 8-bit JPEGs; the demographics go to
``<root>/chexpertdemodata-2/CHEXPERT DEMO.xlsx`` (pandas + openpyxl, first sheet) or
``<root>/chexpert_demo.csv``.
`write_plus` writes a CheXpert Plus root (``df_chexpert_plus_240401.csv``, PNGs under ``PNG/PNG/``).
`bulk_rows` makes many valid rows for benchmarks.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SMALL = "CheXpert-v1.0-small"
LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
HEADER = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABELS)
DEMO_HEADER = ("PATIENT", "GENDER", "AGE_AT_CXR", "PRIMARY_RACE", "ETHNICITY")
PLUS_HEADER = (
    "path_to_image",
    "path_to_dcm",
    "frontal_lateral",
    "ap_pa",
    "deid_patient_id",
    "patient_report_date_order",
    "report",
    "section_findings",
    "section_impression",
    "age",
    "sex",
    "race",
    "ethnicity",
    "insurance_type",
    "split",
)


def row(path: str, sex: str, age: str, frontal: str, ap_pa: str, **labels: str) -> list[str]:
    """One train.csv row; ``path`` is relative to the release folder, labels by name with '_' for ' '."""
    cells = {name.replace(" ", "_"): "" for name in LABELS} | labels
    return [path, sex, age, frontal, ap_pa, *(cells[name.replace(" ", "_")] for name in LABELS)]


# The quirks of the published files: LL and RL in AP/PA, a lateral with blank AP/PA, Sex Unknown, Age 0,
# -1.0 uncertain labels, No Finding 1.0, a frontal without AP/PA, a patient absent from the demographics.
TRAIN = [
    row(
        "train/patient00001/study1/view1_frontal.jpg",
        "Female",
        "68",
        "Frontal",
        "AP",
        No_Finding="1.0",
        Pneumothorax="0.0",
        Support_Devices="1.0",
    ),
    row(
        "train/patient00002/study2/view1_frontal.jpg",
        "Female",
        "87",
        "Frontal",
        "AP",
        Cardiomegaly="-1.0",
        Lung_Opacity="1.0",
        Pleural_Effusion="-1.0",
        Fracture="1.0",
    ),
    row(
        "train/patient00002/study1/view1_frontal.jpg",
        "Female",
        "83",
        "Frontal",
        "AP",
        Lung_Opacity="1.0",
        Edema="-1.0",
        Consolidation="-1.0",
        Pneumonia="-1.0",
    ),
    row(
        "train/patient00002/study1/view2_lateral.jpg",
        "Female",
        "83",
        "Lateral",
        "",
        Lung_Opacity="1.0",
        Edema="-1.0",
        Consolidation="-1.0",
        Pneumonia="-1.0",
    ),
    row("train/patient00003/study1/view1_frontal.jpg", "Male", "41", "Frontal", "LL", Edema="1.0"),
    row("train/patient00004/study1/view1_frontal.jpg", "Unknown", "0", "Frontal", "RL", No_Finding="1.0"),
    row("train/patient00005/study1/view1_frontal.jpg", "Male", "55", "Frontal", "PA", Pleural_Other="1.0"),
    row("train/patient00006/study1/view1_frontal.jpg", "Female", "90", "Frontal", "", Atelectasis="0.0"),
]
_NEGATIVE = {name.replace(" ", "_"): "0.0" for name in LABELS}  # valid.csv: every label 0 or 1
VALID = [
    row(
        "valid/patient64541/study1/view1_frontal.jpg",
        "Male",
        "73",
        "Frontal",
        "AP",
        **_NEGATIVE | {"Cardiomegaly": "1.0", "Support_Devices": "1.0"},
    ),
]
DEMOGRAPHICS = [
    ("patient00001", "Female", 68, "White, Hispanic", "Hispanic/Latino"),
    ("patient00002", "Female", 87, "Black, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient00003", "Male", 41, "Asian - Historical Conv", "Not Hispanic"),
    ("patient00004", "Male", 0, "Patient Refused", "Unknown"),
    ("patient00006", "Female", 90, "Other, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient64541", "Male", 73, "White", "Non-Hispanic/Non-Latino"),
    ("patient24428", "Female", 59, "Black or African American", "Non-Hispanic/Non-Latino"),  # no images
]


def write_chexpert(
    root: Path,
    *,
    release: str = SMALL,
    train: Sequence[Sequence[str]] = TRAIN,
    valid: Sequence[Sequence[str]] = VALID,
    demographics: Sequence[tuple] | None = DEMOGRAPHICS,
    demo: str = "xlsx",
    train_name: str = "train.csv",
    header: Sequence[str] = HEADER,
    images: bool = True,
    skip_images: Iterable[str] = (),
) -> Path:
    """Write a CheXpert v1.0 release under ``root`` and return the release folder."""
    folder = Path(root) / release
    folder.mkdir(parents=True, exist_ok=True)
    prefixed = {
        name: [[f"{release}/{r[0]}", *r[1:]] for r in rows]
        for name, rows in ((train_name, train), ("valid.csv", valid))
    }
    for name, rows in prefixed.items():
        write_csv(folder / name, header, rows)
    if demographics is not None:
        write_demographics(Path(root), demographics, demo)
    if images:
        skip = set(skip_images)
        for r in [*train, *valid]:
            if r[0] not in skip:
                write_jpeg(folder / r[0])
    return folder


def write_demographics(root: Path, rows: Sequence[tuple], kind: str = "xlsx") -> Path:
    """CHEXPERT DEMO as published (xlsx, in the folder the download unpacks to) or as a CSV copy."""
    table = pd.DataFrame(list(rows), columns=list(DEMO_HEADER))
    if kind == "xlsx":
        path = Path(root) / "chexpertdemodata-2" / "CHEXPERT DEMO.xlsx"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_excel(path, index=False, engine="openpyxl")
    else:
        path = Path(root) / "chexpert_demo.csv"
        table.to_csv(path, index=False)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jpeg(path: Path, size: tuple[int, int] = (24, 20), value: int = 128) -> Path:
    """A tiny 8-bit grayscale JPEG (width, height = ``size``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, size[0] * size[1]).reshape(size[1], size[0])
    Image.fromarray(((ramp + value) % 256).astype(np.uint8)).save(path, format="JPEG")
    return path


def plus_row(
    path: str, frontal: str, ap_pa: str, age: str, sex: str, race: str, split: str
) -> dict[str, str]:
    patient = path.split("/")[1]
    return {
        "path_to_image": path,
        "path_to_dcm": path.replace(".jpg", ".dcm"),
        "frontal_lateral": frontal,
        "ap_pa": ap_pa,
        "deid_patient_id": patient,
        "patient_report_date_order": "1",
        "report": "NARRATIVE:\nCHEST, ONE VIEW.\n\nIMPRESSION:\n1. No acute findings.",
        "section_findings": "",
        "section_impression": "1. No acute findings.",
        "age": age,
        "sex": sex,
        "race": race,
        "ethnicity": "Non-Hispanic/Non-Latino",
        "insurance_type": "Medicare",
        "split": split,
    }


PLUS = [
    plus_row(
        "train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", "68", "Female", "White", "train"
    ),
    plus_row(
        "train/patient00002/study1/view2_lateral.jpg",
        "Lateral",
        "",
        "83",
        "Female",
        "Black, non-Hispanic",
        "train",
    ),
    plus_row("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "PA", "73", "Male", "Asian", "valid"),
]


def write_plus(
    root: Path, rows: Sequence[dict] = PLUS, header: Sequence[str] = PLUS_HEADER, image_dir: str = "PNG/PNG"
) -> Path:
    """A CheXpert Plus root: the CSV (paths end in .jpg) and the images as PNGs under ``image_dir``."""
    root = Path(root)
    write_csv(root / "df_chexpert_plus_240401.csv", header, ([r.get(c, "") for c in header] for r in rows))
    for r in rows:
        png = root / image_dir / Path(r["path_to_image"]).with_suffix(".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 24), 100, np.uint8)).save(png)
    return root


def bulk_rows(n: int, seed: int = 0) -> list[list[str]]:
    """``n`` valid train.csv rows (paths relative to the release folder), for benchmarks."""
    rng = np.random.default_rng(seed)
    states = rng.choice(np.array(["", "1.0", "0.0", "-1.0"]), (n, len(LABELS)))
    out = []
    for i in range(n):
        patient, study, lateral = 1 + i // 4, 1 + (i // 2) % 2, i % 2 == 1
        view = "view2_lateral" if lateral else "view1_frontal"
        labels = {name.replace(" ", "_"): str(s) for name, s in zip(LABELS, states[i], strict=True)}
        labels["No_Finding"] = ""
        sex, age = str(rng.choice(["Male", "Female"])), str(int(rng.integers(18, 91)))
        ap_pa = "" if lateral else str(rng.choice(["AP", "PA"]))
        path = f"train/patient{patient:05d}/study{study}/{view}.jpg"
        out.append(row(path, sex, age, "Lateral" if lateral else "Frontal", ap_pa, **labels))
    return out
