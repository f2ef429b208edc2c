"""Write a small VinDr-CXR 1.0.0 release in its published layout (helpers for the tests, not tests).

``annotations/image_labels_train.csv`` (``image_id, rad_id`` + 28 labels, three reader rows per image, the
readers disagreeing), ``annotations/image_labels_test.csv`` (one consensus row per image, ``Other disease``
spelling, ``rad_id`` optional) and ``train|test/<image_id>.dicom`` with the release's DICOM quirks:
MONOCHROME1, JPEG 2000, 12 and 16 bits stored, an empty PatientAge, PatientSex ``O``, an age in months.
Images cycle through `TRAIN_CASES` / `TEST_CASES`, so a benchmark can ask for thousands.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicom_files import anatomy, write_dicom

_FINDINGS = (
    "Aortic enlargement,Atelectasis,Calcification,Cardiomegaly,Clavicle fracture,Consolidation,Edema,"
    "Emphysema,Enlarged PA,ILD,Infiltration,Lung Opacity,Lung cavity,Lung cyst,Mediastinal shift,Nodule/Mass,"
    "Pleural effusion,Pleural thickening,Pneumothorax,Pulmonary fibrosis,Rib fracture,Other lesion,COPD,"
    "Lung tumor,Pneumonia,Tuberculosis"
).split(",")
TRAIN_LABELS = [*_FINDINGS, "Other diseases", "No finding"]  # published order and spelling
TEST_LABELS = [*_FINDINGS, "Other disease", "No finding"]


@dataclass(frozen=True)
class Case:
    """One image: the positive labels of each label row (train: one row per reader), and its DICOM."""

    readers: tuple[tuple[str, ...], ...]
    sex: str | None
    age: str | None  # DICOM AS string; "" writes an empty PatientAge
    dicom: dict[str, Any] = field(default_factory=dict)  # more write_dicom keyword arguments


TRAIN_CASES = (
    # Cardiomegaly 2 of 3 -> 1, Pneumothorax 1 of 3 -> 0
    Case(
        (("Cardiomegaly",), ("Cardiomegaly",), ("Pneumothorax",)), "M", "045Y", {"photometric": "MONOCHROME1"}
    ),
    Case((("No finding",),) * 3, "F", "018M", {"transfer_syntax": "jpeg2000", "bits_stored": 16}),
    Case(((), ("Aortic enlargement",), ()), "O", "", {"bits_stored": 12}),
    # Nodule/Mass 2 of 3 -> lung_lesion 1; Lung tumor and Rib fracture 1 of 3 -> 0
    Case(
        (("Nodule/Mass",), ("Lung tumor",), ("Nodule/Mass", "Rib fracture")), "F", "061Y", {"bits_stored": 14}
    ),
)
TEST_CASES = (
    Case((("Pleural effusion", "Other disease"),), "M", "070Y", {"bits_stored": 16}),
    Case((("No finding",),), "F", "030Y", {"photometric": "MONOCHROME1", "transfer_syntax": "jpeg2000"}),
)


def image_id(split: str, i: int) -> str:
    """A 32-hex-character id like VinDr's."""
    return hashlib.md5(f"{split}-{i}".encode()).hexdigest()


def case(split: str, i: int) -> Case:
    cases = TRAIN_CASES if split == "train" else TEST_CASES
    return cases[i % len(cases)]


def reader_rows(n: int) -> list[dict[str, str]]:
    """Three reader rows per training image (rad_id R1 ... R17)."""
    rows = []
    for i in range(n):
        for k, positives in enumerate(case("train", i).readers):
            row = {"image_id": image_id("train", i), "rad_id": f"R{(3 * i + k) % 17 + 1}"}
            rows.append(row | {label: str(int(label in positives)) for label in TRAIN_LABELS})
    return rows


def consensus_rows(n: int, rad_id: bool = False) -> list[dict[str, str]]:
    """One consensus row per test image; with ``rad_id`` the column is there (its content is unverified)."""
    rows = []
    for i in range(n):
        (positives,) = case("test", i).readers
        row = {"image_id": image_id("test", i)} | ({"rad_id": "R8"} if rad_id else {})
        rows.append(row | {label: str(int(label in positives)) for label in TEST_LABELS})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_image(root: Path, split: str, i: int, shape: tuple[int, int] = (32, 40), **overrides) -> Path:
    """``<split>/<image_id>.dicom`` for image ``i`` as its case says; ``overrides`` go to write_dicom."""
    c = case(split, i)
    kwargs = {"patient_sex": c.sex, "patient_age": c.age, **c.dicom, **overrides}
    path = root / split / f"{image_id(split, i)}.dicom"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_dicom(path, anatomy(shape, bits=kwargs.get("bits_stored", 12)), **kwargs)


def write_vindr_source(
    root: Path,
    n_train: int = 4,
    n_test: int = 2,
    *,
    at_root: bool = False,
    test_rad_id: bool = False,
    train: list[dict[str, str]] | None = None,
    test: list[dict[str, str]] | None = None,
    shape: tuple[int, int] = (32, 40),
) -> Path:
    """A release folder with ``n_train`` + ``n_test`` images; ``train`` / ``test`` replace the label rows
    (e.g. edited copies of `reader_rows`), ``at_root`` puts the label files beside train/ and test/."""
    labels = root if at_root else root / "annotations"
    write_csv(
        labels / "image_labels_train.csv",
        train or reader_rows(n_train),
        ["image_id", "rad_id", *TRAIN_LABELS],
    )
    test_columns = ["image_id", *(["rad_id"] if test_rad_id else []), *TEST_LABELS]
    write_csv(labels / "image_labels_test.csv", test or consensus_rows(n_test, test_rad_id), test_columns)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            write_image(root, split, i, shape)
    return root
