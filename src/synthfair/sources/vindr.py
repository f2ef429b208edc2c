"""VinDr-CXR 1.0.0 (PhysioNet ``vindr-cxr``): image-level labels from the CSVs, sex and age from the DICOMs.

Files read under ``--root`` (the release folder), as published:

- ``annotations/image_labels_train.csv`` (also accepted at the root): ``image_id, rad_id`` and 28 binary label
  columns, one row per reader and image: three readers per training image (``rad_id`` R1 ... R17);
- ``annotations/image_labels_test.csv`` (also accepted at the root): one consensus row per image, with or
  without ``rad_id`` (ignored). The train column ``Other diseases`` is spelled ``Other disease`` here; either
  spelling is accepted in either file;
- the header only (never the pixels) of ``train/<image_id>.dicom`` and ``test/<image_id>.dicom``.

Policies:

- findings: a training image's label is its readers' vote, 1 when strictly more than half of its rows mark
  it (2 of 3 readers). An image with another number of reader rows uses the same rule; the row counts are
  counted in ``notes["reader_counts"]`` and each image's in ``fields["readers"]``. Test labels are the
  consensus row as published. Cells must be 0 or 1 (``0.0`` / ``1.0`` accepted): VinDr has no uncertain
  state, so anything else (blank, -1, text) rejects the image with code ``invalid_value``.
- sex: DICOM PatientSex as written (M, F; O is VinDr's "unknown" and maps to missing in taxonomy.yaml).
- age: DICOM PatientAge (VR AS, e.g. ``045Y``, ``018M``; a bare integer is taken as years) converted to years
  by `dicom.parse_age`; empty or absent -> missing; malformed -> missing with the raw string kept (counted in
  ``notes["age_malformed"]``).
- ids: ``source_id = patient_id = image_id``. VinDr publishes no patient id, so each image counts as its own
  patient; splits are the official ones (train -> train, test -> test) and do not depend on it.
- images: ``image_path = <split>/<image_id>.dicom``. A DICOM that does not exist is still yielded so that
  ingest quarantines it (``image_missing``); one whose header cannot be read is rejected as
  ``unreadable_image``. Headers are read with ``stop_before_pixels`` (about 0.2 ms a file on a local disk;
  pydicom's ``specific_tags`` saved only ~10% on VinDr-sized headers, so `dicom.read_header` is used as is).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthfair.images.dicom import parse_age, read_header
from synthfair.images.readers import ImageReadError
from synthfair.sources.records import (
    Rejected,
    SourceError,
    SourceRow,
    at_row,
    blank_to_none,
    find_file,
    read_table,
)
from synthfair.taxonomy import Taxonomy

LABELS = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
    "No finding",
)
OTHER = ("Other diseases", "Other disease")  # the train and the test spelling of the 28th label
FILES = {
    "train": ("annotations/image_labels_train.csv", "image_labels_train.csv"),
    "test": ("annotations/image_labels_test.csv", "image_labels_test.csv"),
}
BINARY = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}
FIX_LABEL = "fix the cell (VinDr labels are 0 or 1), or ingest with --on-error skip to quarantine the image"


@dataclass(frozen=True)
class _Image:
    """One image's labels from a label file, before its DICOM header is read."""

    image_id: str
    row: int  # 0-based data row of the image's first line in the label file
    findings: dict[str, float]
    readers: int  # label rows behind the findings (the vote's size; 1 for the test consensus)
    problem: str | None = None  # why the labels cannot be used


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    root = Path(root)
    notes.update(age_malformed=0, dicom_missing=0, unreadable_image=0)
    for split in ("train", "test"):
        path = find_file(root, FILES[split], f"VinDr-CXR image_labels_{split}.csv")
        required = ("image_id", "rad_id", *LABELS) if split == "train" else ("image_id", *LABELS)
        table = read_table(path, required=required)
        labels = [*LABELS, _other_column(table, path)]
        notes[f"{split}_labels"] = {"file": path.relative_to(root).as_posix(), "rows": len(table)}
        yield from _blank_ids(table, path)
        table = table[table["image_id"].notna()]
        images = _votes(table, labels, path, notes) if split == "train" else _consensus(table, labels, path)
        yield from _rows(root, path, split, images, notes)


def _other_column(table: pd.DataFrame, path: Path) -> str:
    for name in OTHER:
        if name in table.columns:
            return name
    raise SourceError(
        f"{path}: missing column {OTHER[0]!r} (train spelling) or {OTHER[1]!r} (test spelling); "
        f"the file has {[str(c) for c in table.columns]}",
        "use the file exactly as published (see docs/sources.md for the expected columns)",
    )


def _blank_ids(table: pd.DataFrame, path: Path) -> Iterator[Rejected]:
    for i in np.flatnonzero(table["image_id"].isna().to_numpy()):
        where = at_row(path, int(i))
        yield Rejected("", where, "invalid_value", f"{where}: image_id is blank", "fix or remove the row")


def _binary(table: pd.DataFrame, labels: list[str], path: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    """The label cells as 0.0 / 1.0 (NaN where invalid), and a message per data row with an invalid cell."""
    values = pd.DataFrame({c: table[c].str.strip().map(BINARY) for c in labels})
    bad = values.isna().to_numpy()
    problems = {}
    for i in np.flatnonzero(bad.any(axis=1)):
        column = labels[int(bad[i].argmax())]
        row = int(table.index[i])  # the file's data row: read_table keeps a RangeIndex
        raw = table[column].iloc[i]
        problems[i] = f"{at_row(path, row)}: label {column!r} = {raw!r} is not 0 or 1"
    return values, problems


def _votes(table: pd.DataFrame, labels: list[str], path: Path, notes: dict) -> Iterator[_Image]:
    """Training images: each label is 1 when more than half of the image's reader rows mark it."""
    values, problems = _binary(table, labels, path)
    ids = table["image_id"].to_numpy()
    groups = pd.Series(table.index.to_numpy(), index=values.index).groupby(ids, sort=False)
    first, readers = groups.first(), groups.size()
    positives = values.fillna(0.0).groupby(ids, sort=False).sum().loc[first.index]
    flags = positives.to_numpy() * 2 > readers.to_numpy()[:, None]  # (images, labels) strict majority
    bad: dict[str, str] = {}
    for i, message in problems.items():  # an image is rejected for its first bad row
        bad.setdefault(ids[i], message)
    notes["reader_counts"] = {str(n): c for n, c in sorted(Counter(readers.tolist()).items())}
    notes["train_images"] = len(first)
    for image_id, row, n, row_flags in zip(first.index, first.tolist(), readers.tolist(), flags, strict=True):
        findings = {label: float(flag) for label, flag in zip(labels, row_flags, strict=True)}
        yield _Image(str(image_id), row, findings, n, bad.get(image_id))


def _consensus(table: pd.DataFrame, labels: list[str], path: Path) -> Iterator[_Image]:
    """Test images: one consensus row each, as published (a repeated image_id is ingest's duplicate_id)."""
    values, problems = _binary(table, labels, path)
    rows = table.index.tolist()
    for i, (image_id, cells) in enumerate(zip(table["image_id"], values.to_numpy(), strict=True)):
        findings = {label: float(v) for label, v in zip(labels, cells, strict=True)}
        yield _Image(str(image_id), rows[i], findings, 1, problems.get(i))


def _rows(
    root: Path, path: Path, split: str, images: Iterator[_Image], notes: dict
) -> Iterator[SourceRow | Rejected]:
    for image in images:
        where = at_row(path, image.row)
        fields = {"readers": str(image.readers)} if split == "train" else {}
        if image.problem is not None:
            yield Rejected(image.image_id, where, "invalid_value", image.problem, FIX_LABEL, fields)
            continue
        image_path = f"{split}/{image.image_id}.dicom"
        try:
            header = _header(root / image_path, notes)
        except ImageReadError as err:
            notes["unreadable_image"] += 1
            yield Rejected(
                image.image_id, where, "unreadable_image", f"{where}: {err.message}", err.hint, fields
            )
            continue
        fields.update(header)
        derived = {}
        if header["PatientAge"] is not None:
            derived["age"] = parse_age(header["PatientAge"])
            notes["age_malformed"] += derived["age"] is None
        yield SourceRow(
            source_id=image.image_id,
            patient_id=image.image_id,
            image_path=image_path,
            where=where,
            fields=fields,
            findings=image.findings,
            split=split,
            derived=derived,
        )


def _header(file: Path, notes: dict) -> dict[str, str | None]:
    """PatientSex and PatientAge of an existing DICOM (None for both when the file is missing)."""
    if not file.is_file():
        notes["dicom_missing"] += 1  # ingest quarantines the row as image_missing
        return {"PatientSex": None, "PatientAge": None}
    ds = read_header(file)
    return {k: _text(ds.get(k)) for k in ("PatientSex", "PatientAge")}


def _text(value: Any) -> str | None:
    return None if value is None else blank_to_none(str(value).strip())
