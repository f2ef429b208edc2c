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
- ids: source_id = ``Path`` as published (Plus: ``path_to_image``); patient_id = ``patientNNNNN``
  (Plus: ``deid_patient_id``); study_id = ``patientNNNNN_studyN``.
- labels: 1.0 / 0.0 / -1.0 / blank per label column; a bad cell rejects that row (``invalid_value``).
  CheXpert Plus's CSV has no labels: findings are None (missing, not negative).
- no demographics file: race missing for every image (noted, not an error); a patient absent from the file:
  race missing (counted). A patient listed twice with different PRIMARY_RACE strings follows
  ``IngestConfig.race_conflict`` ("drop": rejected as ``race_conflict``; "missing": race missing).
- CheXpert Plus images: ``path_to_image`` ends in ``.jpg`` but the release ships PNGs; the image folder is
  found under the root (``.``, ``PNG/``, ``PNG/PNG/``) and the ``.png`` sibling is used when the ``.jpg``
  does not exist (counted in the notes).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthfair.sources.records import (
    Rejected,
    RowError,
    SourceError,
    SourceRow,
    at_row,
    blank_to_none,
    check_columns,
    find_file,
    label_value,
    read_table,
    rejection,
)
from synthfair.taxonomy import Taxonomy

RELEASES = ("CheXpert-v1.0-small", "CheXpert-v1.0")
FIELDS = ("Sex", "Age", "Frontal/Lateral", "AP/PA")
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
    prefix = "" if base == root else f"{base.name}/"
    notes.update(release=base.name, labels_file=train.name)
    notes["root_layout"] = "release folder itself" if base == root else "parent of the release folder"
    demo = _demographics(root, notes)
    missing: Counter[str] = Counter()
    for path, split in ((train, "train"), (find_file(base, ["valid.csv"], "CheXpert valid.csv"), "validate")):
        table = read_table(path, required=("Path", *FIELDS, *LABELS))
        notes.setdefault("rows", {})[path.name] = len(table)
        columns = [table[c].tolist() for c in ("Path", *FIELDS, *LABELS)]
        for i, values in enumerate(zip(*columns, strict=True)):
            yield _row(values, at_row(path, i), split, prefix, demo, config, missing)
    if demo is not None:
        notes["images_without_demographics"] = missing["images"]


def _train_file(root: Path) -> Path:
    """train.csv of the release at or under ``root``; train_cheXbert.csv where train.csv is absent."""
    names = [
        f"{d}{n}" for n in ("train.csv", "train_cheXbert.csv") for d in ("", *(f"{r}/" for r in RELEASES))
    ]
    return find_file(root, names, "CheXpert train.csv")


def _row(
    values: tuple,
    where: str,
    split: str,
    prefix: str,
    demo: Demographics | None,
    config: Any,
    missing: Counter,
) -> SourceRow | Rejected:
    path, sex, age, frontal, ap_pa, *labels = values
    fields: dict[str, Any] = {"Sex": sex, "Age": age, "Frontal/Lateral": frontal, "AP/PA": ap_pa}
    parts = str(path or "").split("/")
    if len(parts) < 4:
        return Rejected(
            str(path),
            where,
            "invalid_value",
            f"{where}: Path {path!r} is not <release>/<split>/<patient>/<study>/<view>.jpg",
            "use train.csv / valid.csv as published",
            fields,
        )
    patient, study = parts[-3], parts[-2]
    race, ethnicity = None, None
    if demo is not None and patient.lower() not in demo.by_patient:
        missing["images"] += 1
    elif demo is not None:
        race, ethnicity = demo.by_patient[patient.lower()]
    fields.update(PRIMARY_RACE=race, ETHNICITY=ethnicity)
    conflict = demo.conflicts.get(patient.lower()) if demo is not None else None
    if conflict and config.race_conflict == "drop":
        return Rejected(
            path,
            where,
            "race_conflict",
            f"{where}: patient {patient} has several PRIMARY_RACE values {conflict} in the demographics file",
            "ingest with race_conflict='missing' to keep the images without race",
            fields,
        )
    if conflict:
        fields["PRIMARY_RACE"] = None
    try:
        findings = {name: _state(raw, where, name) for name, raw in zip(LABELS, labels, strict=True)}
    except RowError as err:
        return rejection(err, path, where, fields)
    return SourceRow(
        source_id=path,
        patient_id=patient,
        image_path=prefix + "/".join(parts[1:]),
        where=where,
        fields=fields,
        findings=findings,
        split=split,
        study_id=f"{patient}_{study}",
    )


def _state(raw: Any, where: str, column: str) -> float | None:
    value = _STATES.get(raw, _UNSEEN)
    return label_value(raw, where, column) if value is _UNSEEN else value


@dataclass(frozen=True)
class Demographics:
    by_patient: dict[str, tuple[Any, Any]]  # PATIENT (lower case) -> (PRIMARY_RACE, ETHNICITY)
    conflicts: dict[str, list[str]]  # patients listed with several PRIMARY_RACE values -> those values


def _demographics(root: Path, notes: dict[str, Any]) -> Demographics | None:
    """The demographics file's races by patient; None (and a note) when there is no such file."""
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
    demo = Demographics({}, {})
    for patient, race, ethnicity in zip(*(table[c].tolist() for c in DEMO_COLUMNS), strict=True):
        key = str(blank_to_none(patient) or "").strip().lower()
        seen = demo.by_patient.get(key)
        if seen is not None and seen[0] != race:
            values = demo.conflicts.setdefault(key, [str(seen[0])])
            values.append(str(race))
        demo.by_patient[key] = (race, ethnicity)
    notes["demographics_rows"] = len(table)
    notes["demographics_race_conflicts"] = len(demo.conflicts)
    return demo


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
    header = pd.read_csv(path, nrows=0)
    check_columns(header, PLUS_COLUMNS, path)
    table = read_table(path, required=PLUS_COLUMNS, usecols=list(PLUS_COLUMNS))
    notes.update(release="CheXpert Plus", labels_file=path.name, rows={path.name: len(table)})
    notes["renamed_columns"] = dict(PLUS_RENAME)
    first = next((p for p in table["path_to_image"] if p), "")
    image_dir = next((d for d in PLUS_IMAGE_DIRS if _plus_image(root, d + first)), "")
    notes["image_dir"] = image_dir or "."
    pngs = 0
    columns = [table[c].tolist() for c in PLUS_COLUMNS]
    for i, (image, patient, split, *values) in enumerate(zip(*columns, strict=True)):
        where = at_row(path, i)
        fields = {PLUS_RENAME[c]: v for c, v in zip(PLUS_RENAME, values, strict=True)}
        image_path = _plus_image(root, image_dir + str(image or "")) or image_dir + str(image or "")
        pngs += image_path.endswith(".png") and not str(image).endswith(".png")
        parts = str(image or "").split("/")
        if split not in PLUS_SPLITS or image is None or patient is None or len(parts) < 3:
            yield Rejected(
                str(image),
                where,
                "invalid_value",
                f"{where}: path_to_image {image!r}, deid_patient_id {patient!r}, split {split!r}: expected "
                f"<split>/<patient>/<study>/<view>.jpg, a patient id and a split in {list(PLUS_SPLITS)}",
                "use df_chexpert_plus_*.csv as published",
                fields,
            )
            continue
        yield SourceRow(
            source_id=image,
            patient_id=patient,
            image_path=image_path,
            where=where,
            fields=fields,
            findings=None,
            split=PLUS_SPLITS[split],
            study_id=f"{patient}_{parts[-2]}",
        )
    notes["png_instead_of_jpg"] = pngs


def _plus_image(root: Path, relative: str) -> str | None:
    """``relative`` if that image exists under ``root``, else its existing ``.png`` sibling, else None."""
    if relative and (root / relative).is_file():
        return relative
    png = str(Path(relative).with_suffix(".png")) if relative else ""
    return png if png and (root / png).is_file() else None
