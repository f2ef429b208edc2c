"""BRAX 1.x (PhysioNet ``brax`` 1.0.0 / 1.1.0, Hospital Israelita Albert Einstein): a spreadsheet and images.

Files read under ``--root`` (the release folder), as published:

- ``master_spreadsheet_update.csv`` (1.1.0), else ``master_spreadsheet.csv`` (1.0.0): one row per image with
  ``PatientID, PatientSex, PatientAge, AccessionNumber, ViewPosition, Manufacturer``, the 14 CheXpert label
  columns and ``PngPath`` and/or ``DicomPath`` (paths relative to the root, e.g.
  ``images/id_<PatientID>/Study_<UID>/Series_<UID>/image-<UID>.png``); other columns (StudyDate, Rows,
  Columns, a leading unnamed index column) are ignored;
- the image files are only checked for existence, never opened here.

Policies:

- image: ``PngPath`` when that file exists, else ``DicomPath``; 1.0.0 DICOMs have no ``.dcm`` suffix, so a
  DicomPath that does not exist is also tried with the suffix removed or added. When no file exists the row
  keeps the published PngPath (else DicomPath) and ingest quarantines it (``image_missing``). Counts of
  each choice are in ``notes["images"]``.
- ids: ``source_id`` is the published PngPath (the DicomPath when PngPath is blank), unique per image and the
  same whichever image files were downloaded; ``patient_id = PatientID``; ``study_id = AccessionNumber``
  (accession numbers shared by several patients are counted in ``notes["accessions_shared"]``). No official
  split: ingest hashes the patient.
- age: ``PatientAge`` is published as 5-year groups, read defensively into an interval [lo, hi):
  ``50-54`` / ``50 - 54`` / ``50 to 54`` -> (50, 55); ``85 or more`` / ``85+`` / ``>=85`` -> (85, 95), the
  open top group capped at 95 (an assumption: ten years above its start). Loaders of the real file treat every
  other value as an integer, so a bare number is read by a file-wide rule: when every bare number in the file
  is a multiple of 5 they are the groups' lower bounds (``50`` -> (50, 55)), otherwise exact years (``61`` ->
  61.0); ``notes["age_numbers"]`` says which. Anything else is rejected (``invalid_value``). The harmonizer
  stores the midpoint and ``age_lo`` / ``age_hi``.
- sex (M / F / O), view (``ViewPosition``: PA, AP, L, AP LLD, ...) and device (``Manufacturer``, an integer
  vendor code kept raw; taxonomy.yaml maps unknown codes to missing) are passed through as written.
- findings: the 14 label columns, ``1`` / ``0`` / ``-1`` (uncertain) / blank, written as integers or floats;
  another value rejects the row (``invalid_value``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synthfair.sources.records import (
    CHEXPERT_LABELS,
    Rejected,
    RowError,
    SourceError,
    SourceRow,
    at_row,
    blank_to_none,
    find_file,
    label_value,
    read_table,
)
from synthfair.taxonomy import Taxonomy

SPREADSHEETS = ("master_spreadsheet_update.csv", "master_spreadsheet.csv")  # 1.1.0 first
LABELS = CHEXPERT_LABELS  # label columns, read by name
FIELDS = ("PatientSex", "PatientAge", "ViewPosition", "Manufacturer")  # raw fields named in taxonomy.yaml
REQUIRED = ("PatientID", "AccessionNumber", *FIELDS, *LABELS)
PATHS = ("PngPath", "DicomPath")  # preference order
TOP_AGE_SPAN = 10  # the open top group "85 or more" is taken as [85, 95)
FIX_ROW = "fix the cell, or ingest with --on-error skip to quarantine the row"

_GROUP = re.compile(r"(\d{1,3})\s*(?:-|–|to)\s*(\d{1,3})", re.IGNORECASE)
_TOP = re.compile(
    r"(?:(\d{1,3})\s*(?:\+|or more|or older|and over|and older)|(?:>=|≥)\s*(\d{1,3}))", re.IGNORECASE
)
_NUMBER = re.compile(r"(\d{1,3})(?:\.0*)?")


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    root = Path(root)
    path = find_file(root, SPREADSHEETS, "BRAX master spreadsheet")
    table = read_table(path, required=REQUIRED)
    paths = [c for c in PATHS if c in table.columns]
    if not paths:
        raise SourceError(
            f"{path}: missing columns {list(PATHS)} (one is needed); "
            f"the file has {[str(c) for c in table.columns]}",
            "use the spreadsheet exactly as published (see docs/sources.md for the expected columns)",
        )
    ages, notes["age_numbers"] = _age_table(table["PatientAge"])
    images: Counter[str] = Counter()
    notes.update(spreadsheet=path.name, rows=len(table), path_columns=paths, images=images)
    notes["accessions_shared"] = int((table.groupby("AccessionNumber")["PatientID"].nunique() > 1).sum())
    columns = list(table.columns)
    for i, values in enumerate(table.itertuples(index=False, name=None)):
        row = dict(zip(columns, values, strict=True))
        try:
            yield _row(root, row, at_row(path, i), paths, ages, images)
        except RowError as err:
            kept = {c: row[c] for c in ("PatientID", *FIELDS)}
            yield Rejected(
                _source_id(row, paths) or "", at_row(path, i), err.code, err.message, err.hint, kept
            )


def _row(root: Path, row: dict, where: str, paths: list[str], ages: dict, images: Counter) -> SourceRow:
    source_id, patient_id = _source_id(row, paths), blank_to_none(row["PatientID"])
    if source_id is None or patient_id is None:
        empty = [c for c in ("PatientID", *paths) if blank_to_none(row[c]) is None]
        raise RowError("invalid_value", f"{where}: {' and '.join(empty)} blank", FIX_ROW)
    age = ages.get(blank_to_none(row["PatientAge"]))
    if isinstance(age, str):
        raise RowError("invalid_value", f"{where}: {age}", FIX_ROW)
    return SourceRow(
        source_id=source_id,
        patient_id=patient_id,
        image_path=_image(root, row, paths, images),
        where=where,
        fields={f: row[f] for f in FIELDS},
        findings={label: label_value(row[label], where, label) for label in LABELS},
        derived={} if age is None else {"age": age},
        study_id=blank_to_none(row["AccessionNumber"]),
    )


def _source_id(row: dict, paths: list[str]) -> str | None:
    for column in paths:
        if (value := blank_to_none(row[column])) is not None:
            return str(value)
    return None


def _image(root: Path, row: dict, paths: list[str], images: Counter) -> str:
    """The relative path of the first image file that exists (PNG, then DICOM), else the published one."""
    published = [_relative(row[c]) for c in paths if blank_to_none(row[c]) is not None]
    for column in paths:
        for candidate in _candidates(row[column], column):
            if (root / candidate).is_file():
                images["png" if column == "PngPath" else "dicom"] += 1
                return candidate
    images["missing"] += 1
    return published[0]


def _candidates(value: Any, column: str) -> list[str]:
    if blank_to_none(value) is None:
        return []
    path = _relative(value)
    if column != "DicomPath":
        return [path]
    return [path, path[: -len(".dcm")] if path.lower().endswith(".dcm") else path + ".dcm"]


def _relative(value: Any) -> str:
    return str(value).strip().replace("\\", "/").lstrip("/")


def _age_table(column: Any) -> tuple[dict[str, float | tuple[float, float] | str], str]:
    """Each distinct PatientAge -> years, an interval (lo, hi) or an error message; and how bare numbers
    were read ("group lower bounds" or "exact years", see the module docstring)."""
    distinct = [str(v) for v in column.dropna().unique()]
    numbers = [int(m[1]) for v in distinct if (m := _NUMBER.fullmatch(v.strip()))]
    grouped = bool(numbers) and all(n % 5 == 0 for n in numbers)
    mode = "none" if not numbers else "group lower bounds" if grouped else "exact years"
    return {v: _age(v, grouped) for v in distinct}, mode


def _age(raw: str, grouped: bool) -> float | tuple[float, float] | str:
    text = raw.strip()
    if m := _GROUP.fullmatch(text):
        lo, hi = int(m[1]), int(m[2])
        if lo <= hi:
            return float(lo), float(hi + 1)
    elif m := _TOP.fullmatch(text):
        lo = int(m[1] or m[2])
        return float(lo), float(lo + TOP_AGE_SPAN)
    elif m := _NUMBER.fullmatch(text):
        return (float(m[1]), float(int(m[1]) + 5)) if grouped else float(m[1])
    return f"PatientAge = {raw!r} is not an age group ('50-54', '85 or more') nor a number of years"
