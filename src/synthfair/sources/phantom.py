"""The built-in phantom as a source: the directory `synthfair phantom --out DIR` writes.

Reads ``metadata.csv`` (key, image, split, one column per covariate, ``findings.<label>``). The phantom
writes harmonized values already; taxonomy.yaml maps them one to one, so a value outside the taxonomy is
still caught. Each subject is its own patient (one image per subject); the phantom's split is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synthfair.sources.records import (
    Rejected,
    RowError,
    SourceError,
    SourceRow,
    at_row,
    find_file,
    label_value,
    read_table,
    rejection,
)
from synthfair.taxonomy import Taxonomy

PREFIX = "findings."


def read(
    root: Path, config: Any, notes: dict[str, Any], taxonomy: Taxonomy | None = None
) -> Iterator[SourceRow | Rejected]:
    if not (Path(root) / "provenance.json").is_file():
        raise SourceError(
            f"{root} is not a finished phantom source (no provenance.json)",
            "render it with `synthfair phantom --out DIR` (re-running resumes an unfinished one)",
        )
    path = find_file(root, ["metadata.csv"], "phantom metadata.csv")
    table = read_table(path, required=("key", "image", "split"))
    labels = [c for c in table.columns if c.startswith(PREFIX)]
    plain = [c for c in table.columns if c not in labels and c not in ("key", "image", "split")]
    notes["rows"] = len(table)
    for i, row in enumerate(table.itertuples(index=False)):
        row = dict(zip(table.columns, row, strict=True))
        where = at_row(path, i)
        fields = {c: row[c] for c in plain}
        try:
            findings = {c[len(PREFIX) :]: label_value(row[c], where, c) for c in labels}
        except RowError as err:
            yield rejection(err, row["key"], where, fields)
            continue
        yield SourceRow(
            source_id=row["key"],
            patient_id=row["key"],
            image_path=row["image"],
            where=where,
            fields=fields,
            findings=findings,
            split=row["split"],
        )
