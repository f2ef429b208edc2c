"""CheXpert v1.0 (Stanford; small or full release) with the CHEXPERT DEMO demographics, or CheXpert Plus.

Files read (``--root`` is the folder that holds ``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``, or that folder
itself; which one is recorded in the notes as ``root_layout``):

- ``train.csv`` (official split "train"; ``train_cheXbert.csv`` when ``train.csv`` is absent) and
  ``valid.csv`` ("validate"). Header, exactly: Path, Sex, Age, Frontal/Lateral, AP/PA, then the 14 labels.
  ``Path`` is relative to the release's parent (``CheXpert-v1.0-small/train/patient00001/study1/
  view1_frontal.jpg``); the image path is rebuilt from the folder actually found, so a root that is the
  release folder itself gets the first component stripped.
- Demographics: ``CHEXPERT DEMO.xlsx`` (first sheet) or a CSV with the same columns (PATIENT, GENDER,
  AGE_AT_CXR, PRIMARY_RACE, ETHNICITY), found by name (case-insensitive ``chexpert demo*`` /
  ``chexpert_demo*``, ``.xlsx`` / ``.csv`` / ``.csv.gz``) up to three folders below the root, skipping the
  image trees. Joined on PATIENT = the patient component of ``Path``.
- CheXpert Plus, when the root holds ``df_chexpert_plus_*.csv`` and no ``train.csv``: columns path_to_image,
  frontal_lateral, ap_pa, deid_patient_id, split (train/valid), age, sex, race, ethnicity (an unverified
  layout: a missing column fails with the columns present).

Covariates (mapped by taxonomy.yaml ``sources.chexpert``): sex from ``Sex`` (Unknown -> missing), age from
``Age`` (0 -> missing), view from ``AP/PA`` falling back to ``Frontal/Lateral``, race from ``PRIMARY_RACE``.
``ETHNICITY`` is kept raw in the fields; no covariate maps it. CheXpert Plus columns are renamed to those
v1 names (age -> Age, sex -> Sex, ap_pa -> AP/PA, frontal_lateral -> Frontal/Lateral, race -> PRIMARY_RACE,
ethnicity -> ETHNICITY), so one taxonomy entry serves both.

Policies:
- ids: source_id = ``Path`` as published (Plus: ``path_to_image``); the sample key is that path without
  the release folder and the extension (``chexpert_train-patient00001-study1-view1_frontal``), so the
  small and full releases and Plus give one image the same key; patient_id = ``patientNNNNN`` (Plus:
  ``deid_patient_id``); study_id = ``patientNNNNN_studyN``.
- labels: 1.0 / 0.0 / -1.0 / blank per label column; a bad cell rejects that row (``invalid_value``).
  CheXpert Plus's CSV has no labels: findings are None (missing, not negative).
- no demographics file: race missing for every image (noted, not an error); a patient absent from the file:
  race missing (counted). A patient listed more than once: each PRIMARY_RACE is harmonized through the
  taxonomy ingest passes in, missing ones (blank, Unknown, ...) ignored. One value left -> the patient's
  most frequent raw string of it is kept (ties: first in sorted order; so "Asian - Historical Conv" and
  "Asian", or "White" and "Unknown", agree); several -> ``IngestConfig.race_conflict`` ("drop": rejected
  as ``race_conflict``; "missing": race missing). A string the taxonomy does not map is kept raw, and the
  harmonizer rejects the image naming it (``unmapped_value``). ETHNICITY: the most frequent raw string.
- CheXpert Plus images: ``path_to_image`` ends in ``.jpg`` but the release ships PNGs; the image folder is
  found under the root (``.``, ``PNG/``, ``PNG/PNG/``) and the ``.png`` sibling is used when the ``.jpg``
  does not exist (counted in the notes).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from synthfair.errors import TaxonomyError
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
    rejection,
)
from synthfair.taxonomy import SourceMapping, Taxonomy, load_taxonomy

RELEASES = ("CheXpert-v1.0-small", "CheXpert-v1.0")
FIELDS = ("Sex", "Age", "Frontal/Lateral", "AP/PA")
LABELS = CHEXPERT_LABELS  # label columns, read by name
SPLIT_FILES = (("train.csv", "train"), ("valid.csv", "validate"))
DEMO_NAME = re.compile(r"chexpert[ _-]?demo.*\.(xlsx|csv|csv\.gz)\Z", re.IGNORECASE)
DEMO_COLUMNS = ("PATIENT", "PRIMARY_RACE", "ETHNICITY")
DEMO_SKIP = {"train", "valid", "test", "png", "dicom"}  # image trees: never searched for demographics
PLUS_RENAME = {
    "age": "Age",
    "sex": "Sex",
    "ap_pa": "AP/PA",
    "frontal_lateral": "Frontal/Lateral",
    "race": "PRIMARY_RACE",
    "ethnicity": "ETHNICITY",
}
PLUS_COLUMNS = ("path_to_image", "deid_patient_id", "split", *PLUS_RENAME)
PLUS_SPLITS = {"train": "train", "valid": "validate"}
PLUS_IMAGE_DIRS = ("", "PNG/", "PNG/PNG/")
_STATES = {None: None, "1.0": 1.0, "0.0": 0.0, "-1.0": -1.0, "1": 1.0, "0": 0.0, "-1": -1.0}
_UNSEEN = object()  # a label cell not in _STATES
_UNMAPPED = object()  # a PRIMARY_RACE string the taxonomy does not map


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    root = Path(root)
    try:
        train = _train_file(root)
    except SourceError as err:
        plus = sorted(root.glob("df_chexpert_plus_*.csv"))
        if not plus:
            raise SourceError(
                f"{err.message}, nor CheXpert Plus's df_chexpert_plus_*.csv", err.hint
            ) from None
        yield from _read_plus(root, plus[-1], notes)
        return
    base = train.parent
    notes.update(release=base.name, labels_file=train.name)
    notes["root_layout"] = "release folder itself" if base == root else "parent of the release folder"
    demo = _demographics(root, notes, taxonomy or load_taxonomy())
    release = _Release("" if base == root else f"{base.name}/", demo, config, Counter())
    for path, split in ((train, "train"), (find_file(base, ["valid.csv"], "CheXpert valid.csv"), "validate")):
        table = read_table(path, required=("Path", *FIELDS, *LABELS))
        notes.setdefault("rows", {})[path.name] = len(table)
        columns = [table[c].tolist() for c in ("Path", *FIELDS, *LABELS)]
        for i, values in enumerate(zip(*columns, strict=True)):
            yield _row(values, at_row(path, i), split, release)
    if demo is not None:
        notes["images_without_demographics"] = release.counts["images_without_demographics"]


def _train_file(root: Path) -> Path:
    """train.csv of the release at or under ``root``; train_cheXbert.csv where train.csv is absent."""
    names = [
        f"{d}{n}" for n in ("train.csv", "train_cheXbert.csv") for d in ("", *(f"{r}/" for r in RELEASES))
    ]
    return find_file(root, names, "CheXpert train.csv")


@dataclass(frozen=True)
class Patient:
    """One patient's demographics rows, reduced to the raw values kept, or the race conflict."""

    race: Any = None  # the PRIMARY_RACE kept, as written (the harmonizer maps it)
    ethnicity: Any = None
    conflict: tuple[str, ...] = ()  # the distinct harmonized races, when more than one
    raws: tuple[str, ...] = ()  # with a conflict: the patient's PRIMARY_RACE strings, sorted


@dataclass(frozen=True)
class _Release:
    """What every v1 row needs: the image prefix, the demographics by patient, the config, counts so far."""

    prefix: str  # the release folder relative to --root, '' or ending in '/'
    demo: dict[str, Patient] | None  # PATIENT (lower case) -> `Patient`; None without a demographics file
    config: Any
    counts: Counter[str]


def _row(values: tuple, where: str, split: str, release: _Release) -> SourceRow | Rejected:
    path, sex, age, frontal, ap_pa, *labels = values
    fields: dict[str, Any] = {"Sex": sex, "Age": age, "Frontal/Lateral": frontal, "AP/PA": ap_pa}
    try:
        relative = _relative(path, where)  # train/patientNNNNN/studyN/viewN_frontal.jpg
        patient, study = relative.split("/")[-3:-1]
        person = _patient(patient, release)
        fields.update(PRIMARY_RACE=person.race, ETHNICITY=person.ethnicity)
        _check_race(person, patient, where, release.config)
        findings = {name: _state(raw, where, name) for name, raw in zip(LABELS, labels, strict=True)}
    except RowError as err:
        return rejection(err, str(path), where, fields)
    return SourceRow(
        source_id=path,
        key=_stem(relative),
        patient_id=patient,
        image_path=release.prefix + relative,
        where=where,
        fields=fields,
        findings=findings,
        split=split,
        study_id=f"{patient}_{study}",
    )


def _relative(path: Any, where: str) -> str:
    """``Path`` without its release folder; `RowError` when it is not <release>/<split>/<patient>/..."""
    parts = str(path or "").split("/")
    if len(parts) < 4:
        raise RowError(
            "invalid_value",
            f"{where}: Path {path!r} is not <release>/<split>/<patient>/<study>/<view>.jpg",
            "use train.csv / valid.csv as published",
        )
    return "/".join(parts[1:])


def _stem(relative: str) -> str:
    """The sample key's id: the image path without its extension (the key adds no dots)."""
    return str(PurePosixPath(relative).with_suffix(""))


def _patient(patient: str, release: _Release) -> Patient:
    """The patient's demographics; an empty `Patient` (counted) when the file does not list the patient."""
    if release.demo is None:
        return Patient()
    person = release.demo.get(patient.lower())
    release.counts["images_without_demographics"] += person is None
    return person or Patient()


def _check_race(person: Patient, patient: str, where: str, config: Any) -> None:
    if person.conflict and config.race_conflict == "drop":
        raise RowError(
            "race_conflict",
            f"{where}: patient {patient} has PRIMARY_RACE values {list(person.raws)} in the demographics "
            f"file (harmonized: {list(person.conflict)})",
            "ingest with race_conflict='missing' to keep the images without race",
        )


def _state(raw: Any, where: str, column: str) -> float | None:
    value = _STATES.get(raw, _UNSEEN)
    return label_value(raw, where, column) if value is _UNSEEN else value


def _demographics(root: Path, notes: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Patient] | None:
    """The demographics file's rows by patient (lower case); None (and a note) when there is no such file."""
    found = _find_demographics(root)
    if not found:
        notes["demographics"] = None
        notes["demographics_note"] = (
            f"no CHEXPERT DEMO file (.xlsx or .csv) found under {root}: race is missing for every image"
        )
        return None
    path = found[0]
    notes["demographics"] = str(path.relative_to(root))
    if len(found) > 1:
        notes["demographics_ignored"] = [str(p.relative_to(root)) for p in found[1:]]
    table = read_table(path, required=DEMO_COLUMNS)
    rows: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for patient, race, ethnicity in zip(*(table[c].tolist() for c in DEMO_COLUMNS), strict=True):
        rows[str(blank_to_none(patient) or "").strip().lower()].append((race, ethnicity))
    mapping = taxonomy.mapping("chexpert", "race")
    demo = {patient: _reduce(listed, mapping) for patient, listed in rows.items()}
    notes["demographics_rows"] = len(table)
    notes["demographics_race_conflicts"] = sum(bool(p.conflict) for p in demo.values())
    return demo


def _reduce(rows: list[tuple[Any, Any]], mapping: SourceMapping) -> Patient:
    """A patient's (PRIMARY_RACE, ETHNICITY) rows as one `Patient`: races are compared after harmonization,
    missing ones ignored; the most frequent raw string of the one value left is kept. A string the taxonomy
    does not map is kept as it is, for the harmonizer to reject naming it and the taxonomy entry."""
    races = Counter(r for r, _ in rows if blank_to_none(r) is not None)
    ethnicity = _most_frequent(Counter(e for _, e in rows if blank_to_none(e) is not None))
    value = {raw: _lookup(mapping, raw) for raw in races}
    unmapped = sorted(raw for raw, v in value.items() if v is _UNMAPPED)
    if unmapped:
        return Patient(unmapped[0], ethnicity)
    known = Counter({raw: n for raw, n in races.items() if value[raw] is not None})
    distinct = sorted({value[raw] for raw in known})
    if len(distinct) > 1:
        return Patient(None, ethnicity, tuple(distinct), tuple(sorted(races)))
    return Patient(_most_frequent(known or races), ethnicity)


def _lookup(mapping: SourceMapping, raw: str) -> Any:
    try:
        return mapping.lookup(raw)
    except TaxonomyError:
        return _UNMAPPED


def _most_frequent(counts: Counter) -> Any:
    """The most frequent value (ties: first in sorted order); None when there is none."""
    return min(counts, key=lambda v: (-counts[v], v), default=None)


def _find_demographics(root: Path, depth: int = 3) -> list[Path]:
    """Demographics files up to ``depth`` folders below ``root`` (xlsx first, then by path)."""
    hits: list[Path] = []
    level = [root]
    for _ in range(depth + 1):
        below = []
        for folder in level:
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and DEMO_NAME.match(entry.name):
                    hits.append(entry)
                elif (
                    entry.is_dir() and entry.name.lower() not in DEMO_SKIP and not entry.name.startswith(".")
                ):
                    below.append(entry)
        level = below
    return sorted(hits, key=lambda p: (p.suffix.lower() != ".xlsx", len(p.parts), str(p)))


def _read_plus(root: Path, path: Path, notes: dict[str, Any]) -> Iterator[SourceRow | Rejected]:
    """CheXpert Plus: one CSV with demographics and no labels; columns renamed to the v1 field names."""
    read_table(path, required=PLUS_COLUMNS, nrows=0)  # the header first: a missing column names them all
    table = read_table(path, required=PLUS_COLUMNS, usecols=list(PLUS_COLUMNS))
    notes.update(release="CheXpert Plus", labels_file=path.name, rows={path.name: len(table)})
    notes["renamed_columns"] = dict(PLUS_RENAME)
    first = next((p for p in table["path_to_image"] if p), "")
    image_dir = next((d for d in PLUS_IMAGE_DIRS if _plus_image(root, d + first)), "")
    notes["image_dir"] = image_dir or "."
    pngs: Counter[str] = Counter()
    columns = [table[c].tolist() for c in PLUS_COLUMNS]
    for i, values in enumerate(zip(*columns, strict=True)):
        yield _plus_row(values, at_row(path, i), root, image_dir, pngs)
    notes["png_instead_of_jpg"] = pngs["png_instead_of_jpg"]


def _plus_row(values: tuple, where: str, root: Path, image_dir: str, counts: Counter) -> SourceRow | Rejected:
    image, patient, split, *rest = values
    fields = {PLUS_RENAME[c]: v for c, v in zip(PLUS_RENAME, rest, strict=True)}
    parts = str(image or "").split("/")
    if split not in PLUS_SPLITS or image is None or patient is None or len(parts) < 3:
        return Rejected(
            str(image),
            where,
            "invalid_value",
            f"{where}: path_to_image {image!r}, deid_patient_id {patient!r}, split {split!r}: expected "
            f"<split>/<patient>/<study>/<view>.jpg, a patient id and a split in {list(PLUS_SPLITS)}",
            "use df_chexpert_plus_*.csv as published",
            fields,
        )
    image_path = _plus_image(root, image_dir + image) or image_dir + image
    counts["png_instead_of_jpg"] += image_path.endswith(".png") and not image.endswith(".png")
    return SourceRow(
        source_id=image,
        key=_stem(image),
        patient_id=patient,
        image_path=image_path,
        where=where,
        fields=fields,
        findings=None,
        split=PLUS_SPLITS[split],
        study_id=f"{patient}_{parts[-2]}",
    )


def _plus_image(root: Path, relative: str) -> str | None:
    """``relative`` if that image exists under ``root``, else its existing ``.png`` sibling, else None."""
    if relative and (root / relative).is_file():
        return relative
    png = str(Path(relative).with_suffix(".png")) if relative else ""
    return png if png and (root / png).is_file() else None
