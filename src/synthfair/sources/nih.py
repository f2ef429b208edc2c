"""NIH ChestX-ray14 (NIH Clinical Center, Bethesda): the Data_Entry CSV, the PNG folders and the split lists.

Files read (``--root`` is the folder of the download, from the NIH Box share or Kaggle):

- ``Data_Entry_2017_v2020.csv``, else ``Data_Entry_2017.csv`` (plain or ``.gz``; v2020 preferred when both
  are there; the file used is noted as ``data_entry``). The raw header is
  ``Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,
  OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]``: the commas inside the brackets split two
  headers, so the columns read are ``OriginalImage[Width``, ``Height]``, ``OriginalImagePixelSpacing[x``,
  ``y]``, renamed here to original_width, original_height, pixel_spacing_x, pixel_spacing_y. The original
  file ends every line with a comma (an empty ``Unnamed: 11`` column, dropped and noted as
  ``trailing_comma``). Any other header is an error naming the missing columns.
- PNGs under ``images/`` (Box archives unpacked) or ``images_001/images/`` ... ``images_012/images/``
  (Kaggle), listed once into a name -> path map (the folders used are noted).
- ``train_val_list.txt`` and ``test_list.txt`` (one image name per line), when present.

Covariates (mapped by taxonomy.yaml ``sources.nih``): age from ``Patient Age``, sex from ``Patient Gender``,
view from ``View Position``. Findings: ``Finding Labels`` split on ``|``, each label positive; ``No Finding``
is a label the taxonomy maps to nothing, so every covered finding is negative.

Policies:
- ids: source_id = ``Image Index`` as published (e.g. ``00000001_000.png``); the sample key drops the
  ``.png`` (``nih_00000001_000``); patient_id = ``Patient ID`` as published; no study id.
- split: with the lists, test_list -> "test" and train_val_list -> "train" or "validate" (ingest picks by
  patient hash); an image in both lists is rejected (``split_conflict``), one in neither gets no split
  (hashed over all three, counted). Without the lists every image is hashed by patient. Only one of the two
  lists present is an error.
- age: the number as published; ages above the taxonomy range (the original file has a few > 100, e.g. 148,
  412) are quarantined by the harmonizer (``invalid_value``). Copies of the original file that write ages as
  ``058Y`` are read as DICOM age strings (three digits and Y, M, W or D) by `dicom.parse_age`, counted
  as ``ages_with_unit``; any other text is rejected by the harmonizer (``invalid_value``).
- an image not in the folders gets the path ``images/<name>`` (so ingest reports it as ``image_missing``);
  with ``check_images`` on and no image folder at all, the whole source is an error.
- a blank ``Finding Labels`` cell -> findings None (missing, not negative).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthfair.images.dicom import parse_age
from synthfair.sources.records import (
    Rejected,
    SourceError,
    SourceRow,
    at_row,
    check_columns,
    find_file,
    read_table,
)
from synthfair.taxonomy import Taxonomy

DATA_ENTRY = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
RENAMED = {
    "OriginalImage[Width": "original_width",
    "Height]": "original_height",
    "OriginalImagePixelSpacing[x": "pixel_spacing_x",
    "y]": "pixel_spacing_y",
}
FIELDS = ("Patient Age", "Patient Gender", "View Position")
COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", *FIELDS, *RENAMED)
OTHER_FIELDS = (*FIELDS, *RENAMED.values())  # kept in SourceRow.fields
SPLIT_LISTS = (("test_list.txt", ("test",)), ("train_val_list.txt", ("train", "validate")))
_TRAILING = re.compile(r"Unnamed: \d+\Z")


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    root = Path(root)
    path = find_file(root, DATA_ENTRY, "NIH Data_Entry_2017_v2020.csv or Data_Entry_2017.csv")
    table = _data_entry(path, notes)
    splits = _split_lists(root, notes)
    images = _image_paths(root, notes)
    if config.check_images and not notes["image_folders"]:
        raise SourceError(
            f"no image folder under {root}: expected images/ or images_001/images/ ... images_012/images/",
            "unpack the image archives into --root as downloaded (Box: images/, Kaggle: images_NNN/images/)",
        )
    files = _Files(path, images, splits, Counter())
    columns = [table[c].tolist() for c in ("Image Index", "Finding Labels", "Patient ID", *OTHER_FIELDS)]
    for i, (name, labels, patient, *values) in enumerate(zip(*columns, strict=True)):
        yield _row(i, name, labels, patient, dict(zip(OTHER_FIELDS, values, strict=True)), files)
    notes.update({k: v for k, v in sorted(files.counts.items())})


@dataclass(frozen=True)
class _Files:
    """What every row needs: the CSV read, image name -> path, the split lists, counts so far."""

    data_entry: Path
    images: dict[str, str]
    splits: dict[str, str | tuple[str, ...]] | None  # None without the lists
    counts: Counter[str]


def _row(i: int, name: Any, labels: Any, patient: Any, fields: dict, files: _Files) -> SourceRow | Rejected:
    where = at_row(files.data_entry, i)
    if name is None or patient is None:
        message = f"{where}: blank Image Index ({name!r}) or Patient ID ({patient!r})"
        return Rejected(str(name), where, "invalid_value", message, "use the file as published", fields)
    split = None if files.splits is None else files.splits.get(name)
    if split == ():
        message = f"{where}: image {name} is listed in both test_list.txt and train_val_list.txt"
        hint = "use the split lists as published (the same release as the CSV)"
        return Rejected(name, where, "split_conflict", message, hint, fields)
    files.counts["images_in_no_split_list"] += files.splits is not None and split is None
    derived = {}
    age = _age_with_unit(fields["Patient Age"])
    if age is not None:
        derived["age"] = age
        files.counts["ages_with_unit"] += 1
    positives = [label.strip() for label in str(labels or "").split("|") if label.strip()]
    return SourceRow(
        source_id=name,
        key=name.removesuffix(".png"),
        patient_id=patient,
        image_path=files.images.get(name, f"images/{name}"),
        where=where,
        fields=fields,
        findings={label: 1.0 for label in positives} if positives else None,
        split=split,
        derived=derived,
    )


def _age_with_unit(raw: Any) -> float | None:
    """Years from a DICOM age string (``058Y``); None for a bare number (read by the harmonizer as it is)
    and for anything else (the harmonizer then rejects it as not a number)."""
    text = str(raw or "").strip()
    return None if text.isdigit() else parse_age(text)


def _data_entry(path: Path, notes: dict[str, Any]) -> pd.DataFrame:
    """The Data_Entry CSV with its bracket columns renamed and the trailing-comma column dropped."""
    # index_col=False: a comma at the end of the data lines but not of the header must not turn the first
    # column into a row index (pandas then drops the empty last field quietly, and warns if it is not empty)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        table = read_table(path, index_col=False)
    trailing = [c for c in table.columns if _TRAILING.match(str(c)) and table[c].isna().all()]
    table = table.drop(columns=trailing)
    try:
        check_columns(table, COLUMNS, path)
    except SourceError as err:
        raise SourceError(
            f"{err.message}. Expected the published header: {','.join(COLUMNS[:-4])},"
            "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]",
            err.hint,
        ) from None
    longer = [str(w.message) for w in caught if issubclass(w.category, pd.errors.ParserWarning)]
    if longer:
        raise SourceError(
            f"{path}: some lines have more non-empty fields than the header ({longer[0]})",
            "use the file as published (one field per header column, optionally one trailing comma)",
        )
    notes.update(data_entry=path.name, rows=len(table), trailing_comma=bool(trailing))
    return table.rename(columns=RENAMED)


def _image_paths(root: Path, notes: dict[str, Any]) -> dict[str, str]:
    """Image name -> path relative to ``root``, from images/ and images_NNN/images/ (listed once)."""
    folders = [root / "images", *sorted(root.glob("images_*/images"))]
    paths: dict[str, str] = {}
    duplicates = 0
    used = []
    for folder in folders:
        if not folder.is_dir():
            continue
        relative = folder.relative_to(root).as_posix()
        used.append(relative)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".png"):
                    duplicates += entry.name in paths
                    paths.setdefault(entry.name, f"{relative}/{entry.name}")
    notes.update(image_folders=used, images_found=len(paths), images_in_two_folders=duplicates)
    return paths


def _split_lists(root: Path, notes: dict[str, Any]) -> dict[str, str | tuple[str, ...]] | None:
    """Image name -> "test" or ("train", "validate"), () when in both lists; None without the lists."""
    present = [name for name, _ in SPLIT_LISTS if (root / name).is_file()]
    notes["split_lists"] = present
    if not present:
        return None
    if len(present) == 1:
        missing = next(name for name, _ in SPLIT_LISTS if name not in present)
        raise SourceError(
            f"{root} has {present[0]} but not {missing}",
            "put both split lists from the release beside the CSV, or remove both to hash splits by patient",
        )
    splits: dict[str, tuple[str, ...]] = {}
    for name, allowed in SPLIT_LISTS:
        for line in (root / name).read_text().splitlines():
            image = line.strip()
            if image:
                splits[image] = () if image in splits and splits[image] != allowed else allowed
    return {image: (s[0] if len(s) == 1 else s) for image, s in splits.items()}
