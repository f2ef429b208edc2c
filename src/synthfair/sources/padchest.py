"""PadChest (BIMCV; Hospital San Juan, Alicante) as a source.

Files read (``--root`` is the download folder):

- ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (or its ``.gz``, or any
  ``PADCHEST_chest_x_ray_images_labels_*.csv*``). The authors wrote it with pandas' default index, so the
  first column has an empty header (``Unnamed: 0`` when read); it is skipped, and its absence is noted.
  Only the columns below are read (the file also holds the reports).
- images ``<ImageDir>/<ImageID>``: 16-bit grayscale PNGs in folders ``0/`` ... ``50/`` named by ``ImageDir``
  (written ``0`` or ``0.0``; normalized to ``0``). They are read as stored and scaled by the 16-bit maximum
  (pixel / 65535), as torchxrayvision does, not by the DICOM's bit depth: the CSV's ``BitsStored_DICOM``
  (often 12) describes the original DICOM, and is kept raw in the fields only.

Covariates (mapped by taxonomy.yaml ``sources.padchest``): sex from ``PatientSex_DICOM``, view from
``Projection`` (AP_horizontal, a supine AP, -> AP; L -> LATERAL), device from ``Manufacturer_DICOM`` (kept
raw), age computed here as year(``StudyDate_DICOM``, YYYYMMDD) - int(float(``PatientBirth``)), missing when
either is blank (range checks, e.g. a birth year that gives age 300, happen in harmonization).

Policies:
- ids: source_id = ``ImageID`` without its ``.png`` suffix (the sample key must be dot-free; the full
  ``ImageID`` is kept in the fields); patient_id = ``PatientID``; study_id = ``StudyID``. No official split:
  ingest hashes the patient.
- ``Labels`` is the text of a Python list (``"['pneumonia', ' infiltrates']"``): parsed with
  ``ast.literal_eval``, each label stripped and lower-cased, empty strings dropped; findings are the
  positives ``{label: 1.0}``. A blank (NaN) Labels cell gives findings None (unlabelled, not normal); ``[]``
  gives no positive. ``'suboptimal study'`` and ``'unchanged'`` are not findings and are dropped (counted in
  the notes); a list of nothing else gives findings None (unchanged from an unknown previous study is not
  normal); ``'normal'`` is kept (the taxonomy maps it to nothing). Labels outside the taxonomy map are
  ignored by its ``default`` and counted in the report's ``defaulted_raw_values``.
- rejected: ``'exclude'`` among the labels or ``Projection`` EXCLUDE -> ``excluded_by_source``; a Labels
  cell that is not a list of strings, an unparseable ``StudyDate_DICOM``, ``PatientBirth`` or ``ImageDir``
  -> ``invalid_value``.
- the authors' generator script passed every column through ``astype(str)``, which writes a missing cell as
  the text ``nan``; such cells are read as missing (counted per column in the notes).
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synthfair.sources.records import (
    Rejected,
    RowError,
    SourceRow,
    at_row,
    blank_to_none,
    find_file,
    read_table,
    rejection,
)
from synthfair.taxonomy import Taxonomy

CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
CSV_NAMES = (
    CSV,
    f"{CSV}.gz",
    "PADCHEST_chest_x_ray_images_labels_*.csv",
    "PADCHEST_chest_x_ray_images_labels_*.csv*",
)
INDEX_COLUMN = "Unnamed: 0"  # pandas' name for the empty header cell of the written index
IDS = ("ImageID", "ImageDir", "PatientID", "StudyID")
FIELDS = (
    "PatientBirth",
    "StudyDate_DICOM",
    "PatientSex_DICOM",
    "Projection",
    "Manufacturer_DICOM",
    "BitsStored_DICOM",  # kept raw: the PNGs are read on the 16-bit scale whatever it says
)
COLUMNS = (*IDS, *FIELDS, "Labels")
DROPPED = frozenset({"suboptimal study", "unchanged"})  # remarks about the study, not findings
EXCLUDE = "exclude"
FIX = "fix the cell, or ingest with --on-error skip to quarantine the row"


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    path = find_file(root, CSV_NAMES, "PadChest labels CSV")
    header = read_table(path, required=COLUMNS, nrows=0)
    notes["labels_file"] = path.name
    notes["index_column"] = "present" if header.columns[0] == INDEX_COLUMN else "absent"
    table = read_table(path, usecols=list(COLUMNS))
    notes["rows"] = len(table)
    nan_text: Counter[str] = Counter()
    counts: Counter[str] = Counter()  # dropped labels; blank Labels cells
    columns = [_nan_to_none(table[name].tolist(), name, nan_text) for name in COLUMNS]
    for i, values in enumerate(zip(*columns, strict=True)):
        row = dict(zip(COLUMNS, values, strict=True))
        try:
            yield _row(row, at_row(path, i), counts)
        except RowError as err:
            yield rejection(err, _source_id(row["ImageID"]), at_row(path, i), _fields(row))
    notes["nan_text_cells"] = {k: v for k, v in nan_text.items() if v}
    notes["labels_dropped"] = {label: counts[label] for label in sorted(DROPPED)}
    notes["labels_missing"] = counts["blank"]


def _nan_to_none(values: list, name: str, counts: Counter) -> list:
    """The column with pandas' text ``nan`` (any case) as None; counts the cells changed."""
    out = [None if isinstance(v, str) and v.strip().lower() == "nan" else v for v in values]
    counts[name] = sum(a is not b for a, b in zip(values, out, strict=True))
    return out


def _row(row: dict[str, Any], where: str, counts: Counter) -> SourceRow:
    image_id = blank_to_none(row["ImageID"])
    if image_id is None or blank_to_none(row["PatientID"]) is None:
        raise RowError(
            "invalid_value", f"{where}: ImageID {image_id!r} / PatientID {row['PatientID']!r} blank", FIX
        )
    if row["Projection"] == "EXCLUDE":
        raise RowError(
            "excluded_by_source", f"{where}: Projection is EXCLUDE (the authors excluded the image)"
        )
    findings = _labels(row["Labels"], where, counts)
    return SourceRow(
        source_id=_source_id(image_id),
        patient_id=row["PatientID"],
        image_path=f"{_image_dir(row['ImageDir'], where)}/{image_id}",
        where=where,
        fields=_fields(row),
        findings=findings,
        split=None,
        derived={"age": _age(row["PatientBirth"], row["StudyDate_DICOM"], where)},
        study_id=blank_to_none(row["StudyID"]),
    )


def _source_id(image_id: Any) -> str:
    """``ImageID`` without its ``.png`` suffix (216840...253_04-014-084.png -> 216840...253_04-014-084)."""
    text = str(image_id)
    return text[:-4] if text.lower().endswith(".png") else text


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    return {"ImageID": row["ImageID"], "ImageDir": row["ImageDir"], **{f: row[f] for f in FIELDS}}


def _labels(raw: Any, where: str, counts: Counter) -> dict[str, float] | None:
    """The positive labels of a ``Labels`` cell; None when the cell is blank."""
    raw = blank_to_none(raw)
    if raw is None:
        counts["blank"] += 1
        return None
    labels = _parse_labels(raw)
    if labels is None:
        raise RowError(
            "invalid_value",
            f"{where}: Labels {raw!r} is not a Python list of strings, e.g. ['pneumonia']",
            FIX,
        )
    if EXCLUDE in labels:
        raise RowError(
            "excluded_by_source", f"{where}: Labels {raw!r} holds 'exclude' (excluded by the authors)"
        )
    for label in labels & DROPPED:
        counts[label] += 1
    if labels and labels <= DROPPED:  # only "unchanged" / "suboptimal study": says nothing about findings
        counts["only_remarks"] += 1
        return None
    return {label: 1.0 for label in sorted(labels - DROPPED)}


@functools.lru_cache(maxsize=1 << 16)  # ~160k cells, far fewer distinct lists
def _parse_labels(raw: str) -> frozenset[str] | None:
    """The stripped, lower-cased, non-empty labels of a list literal; None if ``raw`` is not one."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    return frozenset(v.strip().lower() for v in value) - {""}


def _image_dir(raw: Any, where: str) -> str:
    """``ImageDir`` as a folder name: "0" and "0.0" -> "0"."""
    try:
        number = float(str(raw).strip())
    except ValueError:
        number = -1.0
    if not number.is_integer() or number < 0:
        raise RowError("invalid_value", f"{where}: ImageDir {raw!r} is not a folder number (0-50)", FIX)
    return str(int(number))


def _age(birth: Any, date: Any, where: str) -> int | None:
    """Study year minus birth year; None when either is blank."""
    birth, date = blank_to_none(birth), blank_to_none(date)
    if birth is None or date is None:
        return None
    year = _year(str(date).strip().removesuffix(".0"))
    if year is None:
        raise RowError("invalid_value", f"{where}: StudyDate_DICOM {date!r} is not a YYYYMMDD date", FIX)
    try:
        return year - int(float(birth))
    except (ValueError, OverflowError):
        raise RowError("invalid_value", f"{where}: PatientBirth {birth!r} is not a year", FIX) from None


@functools.lru_cache(maxsize=1 << 14)  # a few thousand distinct study dates
def _year(text: str) -> int | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").year
    except ValueError:
        return None
