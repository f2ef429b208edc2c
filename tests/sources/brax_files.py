"""Write a small BRAX 1.x release in its published layout (helpers for the tests, not tests).

``master_spreadsheet_update.csv`` with the column order three public loaders agree on (a leading unnamed
pandas index, ``DicomPath, PngPath, PatientID, PatientSex, PatientAge, AccessionNumber, StudyDate``, the 14
CheXpert labels from ``No Finding``, then ``ViewPosition, Rows, Columns, Manufacturer``), label cells
written by pandas as ``1.0`` / ``-1.0`` / blank (one row as integers), age groups incl. ``85 or more``,
integer Manufacturer codes, and the images: 8- and 16-bit PNGs under ``images/`` and DICOMs under
``Anonymized_DICOMs/`` with and without the ``.dcm`` suffix (1.0.0 had none).
Rows cycle through `CASES`, so a benchmark can ask for thousands.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dicom_files import anatomy, write_dicom
from PIL import Image

LABELS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
HEAD = ["", "DicomPath", "PngPath", "PatientID", "PatientSex", "PatientAge", "AccessionNumber", "StudyDate"]
COLUMNS = [*HEAD, *LABELS, "ViewPosition", "Rows", "Columns", "Manufacturer"]


@dataclass(frozen=True)
class Case:
    patient: int  # cases with the same patient (and study) share ids
    study: int
    view: str
    age: str
    sex: str
    manufacturer: str
    image: str  # "png8" | "png16" | "dcm" (DicomPath .dcm, file .dcm) | "noext" (neither has a suffix)
    # | "dcm_noext" (DicomPath says .dcm, the file has none)
    labels: dict[str, str] = field(default_factory=dict)  # cells as written; the rest blank


CASES = (
    Case(0, 0, "PA", "50-54", "M", "1", "png8", {"Cardiomegaly": "1.0", "Edema": "-1.0", "Fracture": "0.0"}),
    Case(0, 0, "L", "50-54", "M", "1", "png8", {"Cardiomegaly": "1.0", "Edema": "-1.0", "Fracture": "0.0"}),
    Case(1, 1, "AP", "85 or more", "F", "3", "dcm", {"Pleural Effusion": "1", "Support Devices": "1"}),
    Case(2, 2, "AP LLD", "60 - 64", "M", "2", "noext", {"Pneumonia": "1.0", "Lung Opacity": "1.0"}),
    Case(3, 3, "PA", "45", "F", "3", "dcm_noext", {"Atelectasis": "-1.0"}),
    Case(4, 4, "PA", "", "O", "", "png16", {"No Finding": "1.0"}),
)


def _uid(*parts: object, groups: int = 5, sep: str = ".") -> str:
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    return sep.join(str(int(digest[8 * k : 8 * k + 8], 16) % 10**8).zfill(8) for k in range(groups))


def patient_id(i: int) -> str:
    """BRAX ids look like ``id_c43338e9-58b660b1-41e454a5-f67df48c-ca3596ea`` (the folder name too)."""
    cycle, case = divmod(i, len(CASES))
    digest = hashlib.sha256(f"{cycle}-{CASES[case].patient}".encode()).hexdigest()
    return "id_" + "-".join(digest[8 * k : 8 * k + 8] for k in range(5))


def row(i: int) -> dict[str, str]:
    """Spreadsheet row of image ``i``: paths as published, whichever image files exist."""
    cycle, case = divmod(i, len(CASES))
    c = CASES[case]
    pid = patient_id(i)
    folder = f"{pid}/Study_{_uid(cycle, c.study)}/Series_{_uid(cycle, c.study, 's')}/image-{_uid(i, sep='-')}"
    dicom = f"Anonymized_DICOMs/{folder}" + ("" if c.image == "noext" else ".dcm")
    out = {
        "": str(i),
        "DicomPath": dicom,
        "PngPath": f"images/{folder}.png",
        "PatientID": pid,
        "PatientSex": c.sex,
        "PatientAge": c.age,
        "AccessionNumber": str(int(_uid(cycle, c.study, "a", groups=1))),
        "StudyDate": f"20{10 + cycle % 10}-0{1 + c.study % 9}-1{c.study % 10}",
        "ViewPosition": c.view,
        "Rows": "40",
        "Columns": "32",
        "Manufacturer": c.manufacturer,
    }
    return out | {label: c.labels.get(label, "") for label in LABELS}


def write_image(root: Path, i: int, published: dict[str, str]) -> Path:
    """The image file of row ``i``: a PNG at PngPath or a DICOM at (or beside) DicomPath, as its case says."""
    kind = CASES[i % len(CASES)].image
    if kind.startswith("png"):
        path = root / published["PngPath"]
        bits = 16 if kind == "png16" else 8
        pixels = anatomy((40, 32), bits=bits).astype(np.uint16 if bits == 16 else np.uint8)
    else:
        path = root / published["DicomPath"]
        path = path.with_suffix("") if kind == "dcm_noext" else path
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind.startswith("png"):
        Image.fromarray(pixels).save(path)
        return path
    return write_dicom(path, anatomy((40, 32)), patient_age=None, patient_sex=None)


def write_spreadsheet(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_brax_source(
    root: Path, n: int = len(CASES), *, name: str = "master_spreadsheet_update.csv", rows: list | None = None
) -> Path:
    """A release folder with ``n`` images; ``rows`` replaces the spreadsheet rows (e.g. edited `row`s)."""
    published = [row(i) for i in range(n)]
    write_spreadsheet(root / name, rows if rows is not None else published)
    for i, values in enumerate(published):
        write_image(root, i, values)
    return root
