"""What a source adapter yields, and the small helpers every adapter uses to read its published files.

An adapter reads one source exactly as its publisher ships it and yields, per image, a `SourceRow`: the
published ids, the image path, the official split if any, and the raw values of the fields that
``taxonomy.yaml`` names for that source (``sources.<source>.covariates.<covariate>.field``), as text. It does
not harmonize: `synthfair.sources.harmonize` maps raw values through the taxonomy, so that every raw value
the taxonomy does not know is an error naming the value, the file and row, and the taxonomy entry to extend.

A row that cannot become an index row for a reason the adapter knows (a subject whose race differs across
admissions, an image the source itself excludes) is yielded as a `Rejected` with a reason; the ingest loop
quarantines it or stops, according to ``--on-error``. A problem with a whole file (missing, missing column)
raises `SourceError` at once.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from synthfair.errors import SynthfairError, did_you_mean

SPLITS = ("train", "validate", "test")
# The CheXpert labeller's 14 observations, as the label columns of CheXpert, MIMIC-CXR-JPG and BRAX name them.
CHEXPERT_LABELS = (
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
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class SourceError(SynthfairError):
    """A source's files are missing, unreadable or not in the published layout."""


class RowError(SynthfairError):
    """One input row cannot be indexed; ``code`` is the short reason counted in the ingest report."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.code = code


@dataclass(frozen=True)
class SourceRow:
    """One published image, before harmonization (every value as the source wrote it)."""

    source_id: str  # the image's published id (MIMIC dicom_id, CheXpert Path, PadChest ImageID, ...)
    patient_id: str  # the published patient id; splits never separate a patient's images
    image_path: str  # relative to the source root, '/'-separated
    where: str  # "file, row N" for messages and the quarantine file
    fields: Mapping[str, Any]  # raw field name -> raw value, as read (text, or None when blank)
    # raw finding label -> 1 / 0 / -1 (uncertain) / None (not mentioned); labels absent from the mapping are
    # negative (list-valued sources give only positives). None: the image has no labels at all.
    findings: Mapping[str, float | None] | None = None
    split: str | tuple[str, ...] | None = None  # official split, or the splits a hashed split may choose
    derived: Mapping[str, Any] = field(default_factory=dict)  # covariate -> value the adapter computed
    study_id: str | None = None
    key: str | None = None  # the sample key's id part when it should differ from source_id (no extension)


@dataclass(frozen=True)
class Rejected:
    """A row the adapter itself cannot index, with the reason (see `RowError`)."""

    source_id: str
    where: str
    code: str
    message: str
    hint: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


def rejection(err: RowError, source_id: str, where: str, fields: Mapping[str, Any] | None = None) -> Rejected:
    """A `RowError` raised while an adapter builds one row, as that row's `Rejected`."""
    return Rejected(source_id, where, err.code, err.message, err.hint, fields or {})


def key_part(text: str) -> str:
    """``text`` made safe for a WebDataset key: no dots, no slashes; runs of other characters become '-'."""
    return _KEY_UNSAFE.sub("-", str(text)).strip("-")


def at_row(path: Path, index: int) -> str:
    """The location of data row ``index`` (0-based), as a person counts rows below the header. (Not a line
    number: quoted fields may hold newlines, as CheXpert Plus's reports do.)"""
    return f"{path.name}, row {index + 1}"


def blank_to_none(value: Any) -> Any:
    """Empty or whitespace-only text (and NaN) becomes None; anything else is returned unchanged."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (paths relative to ``root``, globs allowed) that exists, else `SourceError`."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(
            f"source root {root} is not a directory", "pass --root the downloaded release folder"
        )
    for name in names:
        hits = sorted(root.glob(name))
        if hits:
            return hits[-1]
    raise SourceError(
        f"{what} not found under {root}: looked for {', '.join(names)}",
        "point --root at the folder that holds it, as downloaded from the publisher (see docs/sources.md)",
    )


def read_table(path: Path, required: Iterable[str] = (), **kwargs: Any) -> pd.DataFrame:
    """A CSV (plain or .gz) or XLSX file as text columns, blanks as None; checks the ``required`` columns.

    Every cell is read as text, exactly as written ("1.0" stays "1.0", "NA" stays "NA"), so raw values can
    be kept and mapped through the taxonomy without pandas guessing types."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".xlsx", ".xls"):
            table = pd.read_excel(path, dtype=str, engine="openpyxl", **kwargs)
        else:
            _check_line_lengths(path)
            table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], **kwargs)
    except (OSError, EOFError, ValueError, zlib.error, pd.errors.ParserError) as err:  # gz: EOF, zlib errors
        raise SourceError(
            f"cannot read {path}: {err}", "check the file is complete (compare with the release's SHA256SUMS)"
        ) from None
    check_columns(table, required, path)
    return table.astype(object).where(table.notna(), None)


MAX_LINE_BYTES = 1 << 20  # no metadata row of any CXR source comes near; a longer line is damage or an attack


def _check_line_lengths(path: Path) -> None:
    """Refuse a CSV with a line longer than `MAX_LINE_BYTES` before pandas reads it whole into memory."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as f:
        number, length = 1, 0
        while block := f.read(1 << 20):
            start = 0
            while (end := block.find(b"\n", start)) != -1:
                if length + end - start > MAX_LINE_BYTES:
                    break
                number, length, start = number + 1, 0, end + 1
            else:
                length += len(block) - start
                if length <= MAX_LINE_BYTES:
                    continue
            raise SourceError(
                f"{path}, line {number}: longer than {MAX_LINE_BYTES} bytes, which no metadata row is",
                "the file is damaged or not the published one: compare it with the release's SHA256SUMS",
            )


def check_columns(table: pd.DataFrame, required: Iterable[str], path: Path) -> None:
    """Raise `SourceError` naming the file, each missing column and the columns that are there."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        near = did_you_mean(missing[0], [str(c) for c in table.columns])
        raise SourceError(
            f"{path}: missing column(s) {missing}{near}; the file has {[str(c) for c in table.columns]}",
            "use the file exactly as published (see docs/sources.md for the expected columns)",
        )


def label_value(raw: Any, where: str, column: str) -> float | None:
    """A CheXpert-style label cell: '1'/'1.0' -> 1, '0'/'0.0' -> 0, '-1'/'-1.0' -> -1, blank -> None."""
    raw = blank_to_none(raw)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value not in (1.0, 0.0, -1.0):
        raise RowError(
            "invalid_value",
            f"{where}: label {column!r} = {raw!r} is not 1, 0, -1 or blank",
            "fix the cell, or ingest with --on-error skip to quarantine the row",
        )
    return value
