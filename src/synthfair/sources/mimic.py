"""MIMIC-CXR-JPG 2.x (Beth Israel Deaconess, Boston) joined with the MIMIC-IV patients and admissions tables.

Files read (``--root`` holds both releases; each is found by name below the root, skipping the ``p1x/``
patient folders of the image tree; which files were used is recorded in the notes):

- MIMIC-CXR-JPG: ``mimic-cxr-2.0.0-metadata.csv(.gz)`` (one row per image), ``mimic-cxr-2.0.0-split.csv(.gz)``
  and ``mimic-cxr-2.0.0-chexpert.csv(.gz)`` in one folder (the root or any folder below it, e.g.
  ``physionet.org/files/mimic-cxr-jpg/2.0.0/``); the file names keep "2.0.0" in v2.1.0. Images are
  ``files/p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg`` beside them.
- MIMIC-IV: ``hosp/patients.csv(.gz)`` + ``hosp/admissions.csv(.gz)`` (v2+, race column ``race``) or
  ``core/patients.csv(.gz)`` + ``core/admissions.csv(.gz)`` (v1.0, column ``ethnicity``), anywhere below
  the root (e.g. ``mimic-iv/2.2/hosp/``). The race column is detected from the admissions header (noted as
  ``race_column``); a header with both or neither column is an error. Several copies of either release
  below the root are an error too (which one to use would be a guess).

Joins: metadata ⨝ split on (dicom_id, study_id, subject_id); chexpert labels on (subject_id, study_id), so
every image of a study gets the study's labels; patients on subject_id; admissions per subject_id. Before
joining, exact duplicate rows of the split and label files are dropped (counted as ``split_duplicate_rows``
and ``labels_duplicate_rows``); two rows with the same key but different values are an error naming the
file, the key and the rows. So every metadata row is one image, read once.

Covariates (mapped by taxonomy.yaml ``sources.mimic``):
- age = anchor_age + (StudyDate // 10000) - anchor_year, computed here (``derived``); anchor_age, anchor_year
  and StudyDate are kept raw. MIMIC-IV censors ages above 89 as anchor_age 91, so such a patient's age is
  91 + the years since the anchor year: a lower bound, not the true age. A blank in any of the three -> age
  missing; a value that is not a number -> the image is rejected (``invalid_value``).
- sex from ``gender`` (M/F); view from ``ViewPosition`` (blank stays blank -> view missing).
- race: each admission's raw string is harmonized through the taxonomy; missing values (UNKNOWN, UNABLE TO
  OBTAIN, PATIENT DECLINED TO ANSWER, blank) are ignored. One distinct harmonized value -> the field
  ``race`` (or ``ethnicity``) is the subject's most frequent raw string of that value (ties: first in sorted
  order); none -> missing.

Policies:
- ids: source_id = dicom_id; patient_id = subject_id; study_id = study_id (as published text); the sample
  key is ``mimic_p{subject_id}_s{study_id}_{dicom_id}``, the image's folders and name.
- split: the official split (train / validate / test). An image absent from the split file gets no split
  (counted) and ingest gives it its patient's official split, or hashes the patient if it has none; an
  unknown split value rejects the image (``invalid_value``).
- labels: 1.0 / 0.0 / -1.0 / blank per label column; a study without a chexpert row -> findings None
  (missing, not negative), counted; a bad label cell rejects that image only (``invalid_value``).
- a subject without a patients row is kept with sex and age missing (its images and labels are still
  valid; the index carries missing covariates explicitly), counted as ``images_without_patients_row``.
- a subject whose admissions harmonize to several races follows ``IngestConfig.race_conflict``: "drop"
  rejects each of its images (``race_conflict``, naming the subject and values), "missing" keeps them with
  race missing (counted).
- an admission race string the taxonomy does not map rejects every image of that subject
  (``unmapped_value``, naming the value, the admissions file and row, and the taxonomy entry to extend).
  The adapter maps race with the taxonomy ingest passes in (the packaged one by default).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pandas as pd

from synthfair.errors import TaxonomyError
from synthfair.sources.records import (
    CHEXPERT_LABELS,
    SPLITS,
    Rejected,
    RowError,
    SourceError,
    SourceRow,
    at_row,
    find_file,
    label_value,
    read_table,
)
from synthfair.taxonomy import Taxonomy, load_taxonomy

PREFIX = "mimic-cxr-2.0.0-"
IDS = ("dicom_id", "study_id", "subject_id")
STUDY = ("subject_id", "study_id")  # the chexpert labels' key
META_COLUMNS = (*IDS, "ViewPosition", "StudyDate")
LABELS = CHEXPERT_LABELS  # label columns, read by name
PATIENT_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year")
RACE_COLUMNS = ("race", "ethnicity")  # MIMIC-IV v2+ / v1.0
MIMIC_IV_DIRS = ("hosp", "core")
MAX_DEPTH = 6  # folders below --root searched for the tables
_PATIENT_DIR = re.compile(r"p\d+\Z")  # files/p10/p10000032: never searched
_STATES = {None: None, "1.0": 1.0, "0.0": 0.0, "-1.0": -1.0, "1": 1.0, "0": 0.0, "-1": -1.0}


@dataclass(frozen=True)
class Race:
    """A subject's race over its admissions: the raw string kept, or why there is none."""

    raw: str | None = None
    conflict: tuple[str, ...] = ()  # the distinct harmonized values, when more than one
    raws: tuple[str, ...] = ()  # with a conflict: the subject's raw strings, sorted
    unmapped: TaxonomyError | None = None  # the first admission whose string the taxonomy does not map


@dataclass
class _Join:
    """What every image row needs: the files read, the demographics by subject and the counts so far."""

    config: Any
    prefix: str  # the CXR release folder relative to --root, '' or ending in '/'
    metadata: Path
    labels: Path
    split_file: str
    patients: dict[str, tuple[Any, Any, Any]]  # subject_id -> (gender, anchor_age, anchor_year)
    race_column: str  # "race" (MIMIC-IV v2+) or "ethnicity" (v1.0)
    races: dict[str, Race]
    counts: Counter[str]


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    root = Path(root)
    cxr = _one_folder(root, f"{PREFIX}metadata.csv*", "MIMIC-CXR-JPG metadata file")
    metadata, split, labels = (_gz_first(cxr, kind) for kind in ("metadata", "split", "chexpert"))
    images = _images(metadata, split, labels, notes)
    notes["cxr_folder"] = cxr.relative_to(root).as_posix() or "."
    patients, race_column, races = _demographics(root, notes, taxonomy or load_taxonomy())
    notes["race_conflict_policy"] = config.race_conflict
    prefix = "" if cxr == root else cxr.relative_to(root).as_posix() + "/"
    join = _Join(config, prefix, metadata, labels, split.name, patients, race_column, races, Counter())
    columns = [images[c].tolist() for c in (*META_COLUMNS, "split", "_row", "_label_row", *LABELS)]
    for values in zip(*columns, strict=True):
        yield _row(values, join)
    notes.update({f"images_{k}": v for k, v in sorted(join.counts.items())})


def _row(values: tuple, join: _Join) -> SourceRow | Rejected:
    dicom, study, subject, view, date, split, row, label_row, *labels = values
    where = at_row(join.metadata, row)
    gender, anchor_age, anchor_year = join.patients.get(subject, (None, None, None))
    race = join.races.get(subject, Race())
    fields = {
        "gender": gender,
        "anchor_age": anchor_age,
        "anchor_year": anchor_year,
        "StudyDate": date,
        join.race_column: race.raw,
        "ViewPosition": view,
    }
    rejected = _check(dicom, study, subject, split, race, where, join)
    if rejected is not None:
        code, message, hint = rejected
        return Rejected(str(dicom), where, code, message, hint, fields)
    join.counts["without_patients_row"] += subject not in join.patients
    join.counts["without_split"] += split is None
    join.counts["without_labels"] += label_row is None
    join.counts["race_conflict_kept_missing"] += bool(race.conflict)
    try:
        findings = None if label_row is None else _findings(labels, join, where, label_row)
        age = _age(anchor_age, anchor_year, date, where)
    except RowError as err:
        return Rejected(dicom, where, err.code, err.message, err.hint, fields)
    return SourceRow(
        source_id=dicom,
        key=f"p{subject}_s{study}_{dicom}",
        patient_id=subject,
        image_path=f"{join.prefix}files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg",
        where=where,
        fields=fields,
        findings=findings,
        split=split,
        derived={"age": age},
        study_id=study,
    )


def _check(dicom, study, subject, split, race: Race, where: str, join: _Join) -> tuple[str, str, str] | None:
    """(code, message, hint) when the image must be rejected, else None."""
    if dicom is None or study is None or subject is None:
        message = f"{where}: blank id (dicom_id={dicom!r}, study_id={study!r}, subject_id={subject!r})"
        return "invalid_value", message, "use the metadata file as published"
    if race.unmapped is not None:
        return "unmapped_value", f"{where}: subject {subject}: {race.unmapped.message}", race.unmapped.hint
    if race.conflict and join.config.race_conflict == "drop":
        message = (
            f"{where}: subject {subject} has admissions with different {join.race_column} values "
            f"{list(race.raws)} (harmonized: {list(race.conflict)})"
        )
        return "race_conflict", message, "ingest with race_conflict='missing' to keep them with race missing"
    if split is not None and split not in SPLITS:
        message = f"{where}: {join.split_file} gives split {split!r}, not one of {list(SPLITS)}"
        return "invalid_value", message, "use the split file as published"
    return None


def _findings(labels: list, join: _Join, where: str, label_row: Any) -> dict[str, float | None]:
    """The study's label cells as 1 / 0 / -1 / None; an unusual spelling is checked by `label_value`."""
    findings = {name: _STATES.get(raw, raw) for name, raw in zip(LABELS, labels, strict=True)}
    for name, value in findings.items():
        if isinstance(value, str):  # accepted (e.g. "1.00") or rejected naming both files and the cell
            findings[name] = label_value(value, f"{where} ({at_row(join.labels, int(label_row))})", name)
    return findings


def _age(anchor_age: Any, anchor_year: Any, study_date: Any, where: str) -> float | None:
    """anchor_age + year of StudyDate (YYYYMMDD) - anchor_year; None when any of the three is blank."""
    if anchor_age is None or anchor_year is None or study_date is None:
        return None
    try:
        return float(anchor_age) + int(float(study_date)) // 10000 - float(anchor_year)
    except ValueError:
        raise RowError(
            "invalid_value",
            f"{where}: cannot compute age from anchor_age={anchor_age!r}, anchor_year={anchor_year!r}, "
            f"StudyDate={study_date!r}: not numbers",
            "use patients.csv and the metadata file as published, or quarantine the row",
        ) from None


def _images(metadata: Path, split: Path, labels: Path, notes: dict[str, Any]) -> pd.DataFrame:
    """Metadata rows (in file order) with their split and the row of their study's chexpert labels; the
    split and label tables are made unique on the join keys first, so the joins never add rows."""
    meta = read_table(metadata, required=META_COLUMNS)
    splits = read_table(split, required=(*IDS, "split"))
    studies = read_table(labels, required=("subject_id", "study_id", *LABELS))
    notes["rows"] = {p.name: len(t) for p, t in ((metadata, meta), (split, splits), (labels, studies))}
    splits = _unique(splits[[*IDS, "split"]], IDS, split, notes, "split_duplicate_rows")
    studies = _unique(studies[[*STUDY, *LABELS]], STUDY, labels, notes, "labels_duplicate_rows")
    notes["split_rows_without_image"] = len(splits) - int(splits["dicom_id"].isin(meta["dicom_id"]).sum())
    meta = meta[list(META_COLUMNS)].assign(_row=range(len(meta)))
    studies = studies.assign(_label_row=studies.index)  # the data row in the labels file, for messages
    table = meta.merge(splits, how="left", on=list(IDS))
    table = table.merge(studies, how="left", on=list(STUDY))
    merged = ["split", "_label_row", *LABELS]  # NaN where the image has no split or label row
    table[merged] = table[merged].astype(object).where(table[merged].notna(), None)
    return table


def _unique(table: pd.DataFrame, key: tuple[str, ...], path: Path, notes: dict, note: str) -> pd.DataFrame:
    """``table`` without its exact duplicate rows (counted as ``notes[note]``); rows that share ``key`` but
    differ elsewhere raise `SourceError` naming the file, the key and the rows (which to join is a guess)."""
    copies = table.duplicated()
    notes[note] = int(copies.sum())
    table = table[~copies]
    clashing = table[table.duplicated(subset=list(key), keep=False)]
    if clashing.empty:
        return table
    keys = list(clashing[list(key)].itertuples(index=False, name=None))
    same = clashing[[k == keys[0] for k in keys]]
    rows = ", ".join(str(i + 1) for i in same.index)  # data rows, as `at_row` counts them
    differ = "; ".join(f"{c} {list(same[c])}" for c in same.columns if len(set(same[c])) > 1)
    raise SourceError(
        f"{path}: rows {rows} have the same ({', '.join(key)}) = {keys[0]} but different values: {differ}",
        f"use {path.name} as published (compare with the release's SHA256SUMS)",
    )


def _demographics(root: Path, notes: dict[str, Any], taxonomy: Taxonomy) -> tuple[dict, str, dict[str, Race]]:
    """subject_id -> (gender, anchor_age, anchor_year); the race column's name; subject_id -> `Race`."""
    hits = [d for d in _search(root, "patients.csv*") if d.name in MIMIC_IV_DIRS]
    if len(hits) != 1:
        found = [d.relative_to(root).as_posix() for d in hits] or "none"
        raise SourceError(
            f"expected one MIMIC-IV demographics folder below {root} (hosp/ for v2+ or core/ for v1.0, "
            f"holding patients.csv(.gz) and admissions.csv(.gz)); found: {found}",
            "put exactly one MIMIC-IV release (its hosp/ or core/ folder) below --root",
        )
    folder = hits[0]
    patients_path = find_file(folder, ["patients.csv.gz", "patients.csv"], "MIMIC-IV patients table")
    admissions_path = find_file(folder, ["admissions.csv.gz", "admissions.csv"], "MIMIC-IV admissions table")
    header = read_table(admissions_path, required=["subject_id"], nrows=0)
    present = [c for c in RACE_COLUMNS if c in header.columns]
    if len(present) != 1:
        raise SourceError(
            f"{admissions_path}: expected exactly one of the columns {list(RACE_COLUMNS)} (race in MIMIC-IV "
            f"v2+, ethnicity in v1.0), found {present or 'neither'}; the file has {list(header.columns)}",
            "use admissions.csv(.gz) as published by MIMIC-IV",
        )
    column = present[0]
    patients = read_table(patients_path, required=PATIENT_COLUMNS)
    admissions = read_table(admissions_path, usecols=["subject_id", column])
    notes.update(
        mimic_iv_folder=folder.relative_to(root).as_posix(),
        race_column=column,
        mimic_iv_rows={patients_path.name: len(patients), admissions_path.name: len(admissions)},
    )
    demo = {
        s: (g, a, y)
        for s, g, a, y in zip(*(patients[c].tolist() for c in PATIENT_COLUMNS), strict=True)
        if s is not None
    }
    races = _races(admissions, admissions_path, column, taxonomy)
    notes["subjects_race_conflict"] = sum(bool(r.conflict) for r in races.values())
    notes["subjects_race_unmapped"] = sum(r.unmapped is not None for r in races.values())
    return demo, column, races


def _races(admissions: pd.DataFrame, path: Path, column: str, taxonomy: Taxonomy) -> dict[str, Race]:
    """Per subject: distinct harmonized values over its admissions (missing ones ignored), as a `Race`."""
    mapping = taxonomy.mapping("mimic", "race")
    value: dict[str, Any] = {}  # raw string -> harmonized value, or TaxonomyError when unmapped
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    unmapped: dict[str, TaxonomyError] = {}
    for i, (subject, raw) in enumerate(zip(admissions["subject_id"], admissions[column], strict=True)):
        if raw is None:
            continue
        if raw not in value:
            try:
                value[raw] = mapping.lookup(raw)
            except TaxonomyError as err:
                value[raw] = err
        if isinstance(value[raw], TaxonomyError):
            if subject not in unmapped:
                try:
                    mapping.lookup(raw, at_row(path, i))
                except TaxonomyError as err:
                    unmapped[subject] = err
        elif value[raw] is not None:
            counts[subject][raw] += 1
    races = {subject: Race(unmapped=err) for subject, err in unmapped.items()}
    for subject, raws in counts.items():
        if subject in races:
            continue
        distinct = sorted({value[r] for r in raws})
        if len(distinct) > 1:
            races[subject] = Race(conflict=tuple(distinct), raws=tuple(sorted(raws)))
        else:
            races[subject] = Race(raw=min(raws, key=lambda r: (-raws[r], r)))
    return races


def _one_folder(root: Path, pattern: str, what: str) -> Path:
    """The single folder at or below ``root`` holding a file matching ``pattern``."""
    hits = _search(root, pattern)
    if len(hits) != 1:
        found = [str(d.relative_to(root)) or "." for d in hits] or "none"
        raise SourceError(
            f"expected one folder holding the {what} ({pattern}) at or below {root}; found: {found}",
            "point --root at a folder holding one MIMIC-CXR-JPG release (and one MIMIC-IV release)",
        )
    return hits[0]


def _search(root: Path, pattern: str) -> list[Path]:
    """Folders at most `MAX_DEPTH` below ``root`` holding a file matching ``pattern`` (sorted)."""
    if not root.is_dir():
        raise SourceError(f"source root {root} is not a directory", "pass --root the folder of the releases")
    found = []
    top = len(root.parts)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if any(fnmatch(f, pattern) for f in files):
            found.append(here)
        deep = len(here.parts) - top >= MAX_DEPTH
        dirs[:] = [] if deep else [d for d in sorted(dirs) if not _PATIENT_DIR.match(d) and d[0] != "."]
    return sorted(found)


def _gz_first(folder: Path, kind: str) -> Path:
    """``mimic-cxr-2.0.0-<kind>.csv.gz`` as published, or the unpacked ``.csv``."""
    return find_file(folder, [f"{PREFIX}{kind}.csv.gz", f"{PREFIX}{kind}.csv"], f"MIMIC-CXR-JPG {kind} file")
