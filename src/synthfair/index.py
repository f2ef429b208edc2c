"""The index: one Parquet row per factual image of every ingested source, with harmonized covariates.

    INDEX_DIR/index.parquet            every source's rows by (dataset, sample_key); rebuilt per ingest
    INDEX_DIR/sources/<source>.parquet one source's rows (re-ingesting a source replaces this file)
    INDEX_DIR/quarantine/<source>.parquet  rows that could not be indexed, with where, code and reason
    INDEX_DIR/reports/<source>.json    counts (read, indexed, quarantined by reason), config, versions
    INDEX_DIR/index.json               sources, row counts and the taxonomy hash of each, written last

Columns (`columns` gives them in order): ``sample_key`` (``<dataset>_<id>``, dot-free, unique), ``dataset``
(the ingested source: mimic, ..., phantom; the ``source`` covariate is the site, which for the phantom is one
of its simulated hospitals), ``source_id`` (as published), ``patient_key``, ``study_key``, ``image_root``,
``image_path`` (relative to the root), ``split`` (train / validate / test, patient-disjoint), ``sample_hash``
(a stable 63-bit hash of source and id, for engine-independent deterministic sampling), ``where`` (file and
row it came from), then per covariate in taxonomy order the harmonized value and ``<covariate>_raw``;
continuous covariates add ``_lo`` / ``_hi`` for intervals; findings are ``findings.<label>`` (0 / 1 / null)
with ``uncertain.<label>`` and ``findings_raw`` (JSON of the raw label states).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthfair.errors import SynthfairError
from synthfair.fileio import atomic_write, write_json
from synthfair.taxonomy import Taxonomy

SCHEMA = "synthfair.index/1"
INDEX_FILE = "index.parquet"
BASE_COLUMNS = (
    ("sample_key", pa.string()),
    ("dataset", pa.string()),
    ("source_id", pa.string()),
    ("patient_key", pa.string()),
    ("study_key", pa.string()),
    ("image_root", pa.string()),
    ("image_path", pa.string()),
    ("split", pa.string()),
    ("sample_hash", pa.int64()),
    ("where", pa.string()),
)
QUARANTINE_SCHEMA = pa.schema(
    [(n, pa.string()) for n in ("source", "source_id", "where", "code", "reason", "hint", "fields")]
)


def sample_hash(source: str, source_id: str) -> int:
    """A stable 63-bit integer from (source, id): the same on every machine, engine and thread count."""
    digest = hashlib.sha256(f"{source}\x00{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (used for hashed, patient-level splits)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def schema(taxonomy: Taxonomy) -> pa.Schema:
    """The index's Arrow schema for ``taxonomy`` (see the module docstring)."""
    cols = list(BASE_COLUMNS)
    for spec in taxonomy:
        if spec.kind == "continuous":
            cols += [(spec.name, pa.float64()), (f"{spec.name}_lo", pa.float64())]
            cols += [(f"{spec.name}_hi", pa.float64()), (f"{spec.name}_raw", pa.string())]
        elif spec.kind == "categorical":
            cols += [(spec.name, pa.string()), (f"{spec.name}_raw", pa.string())]
        else:
            cols += [(f"{spec.name}.{label}", pa.int8()) for label in spec.values]
            cols += [(f"uncertain.{label}", pa.int8()) for label in spec.values]
            cols += [(f"{spec.name}_raw", pa.string())]
    return pa.schema(cols)


def columns(taxonomy: Taxonomy) -> list[str]:
    return schema(taxonomy).names


def finding_columns(taxonomy: Taxonomy) -> list[str]:
    """``findings.<label>`` for every multilabel covariate's labels, in taxonomy order."""
    return [f"{s.name}.{label}" for s in taxonomy if s.kind == "multilabel" for label in s.values]


def to_table(records: Sequence[Mapping[str, Any]], taxonomy: Taxonomy) -> pa.Table:
    """Index records (dicts with every column) as an Arrow table in the index schema."""
    sch = schema(taxonomy)
    return pa.table(
        {name: pa.array([r.get(name) for r in records], sch.field(name).type) for name in sch.names}
    )


def write_source(out: str | Path, source: str, table: pa.Table, quarantine: pa.Table, report: dict) -> None:
    """Replace ``source``'s rows, quarantine and report in the index at ``out``, then rebuild the index.

    Each file is written atomically; ``index.json`` is written last, so an interrupted ingest leaves either
    the old state or the new one, and re-running the ingest finishes it."""
    out = Path(out)
    for sub in ("sources", "quarantine", "reports"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_json(out / "reports" / f"{source}.json", report)  # before the part: a part always has a report
    _write_parquet(out / "quarantine" / f"{source}.parquet", quarantine)
    _write_parquet(out / "sources" / f"{source}.parquet", table)
    rebuild(out)


def rebuild(out: str | Path) -> pa.Table:
    """Concatenate every source's part into ``index.parquet`` and write ``index.json``."""
    out = Path(out)
    parts = sorted((out / "sources").glob("*.parquet"))
    tables = [pq.read_table(p) for p in parts]
    _check_same_schema(tables, parts)
    table = pa.concat_tables(tables) if tables else pa.table({})
    if tables:
        table = table.sort_by([("dataset", "ascending"), ("sample_key", "ascending")])
    _write_parquet(out / INDEX_FILE, table)
    summary = {"schema": SCHEMA, "rows": table.num_rows, "sources": {}}
    for part in parts:
        report_path = out / "reports" / f"{part.stem}.json"
        if not report_path.is_file():
            raise SynthfairError(
                f"{part} has no ingest report ({report_path} is missing)",
                f"re-run `synthfair ingest {part.stem} ...` into {out}, or delete {part}",
            )
        report = json.loads(report_path.read_text())
        summary["sources"][part.stem] = {
            "rows": report["counts"]["indexed"],
            "quarantined": report["counts"]["quarantined"],
            "taxonomy_sha256": report["taxonomy_sha256"],
            "ingested_at": report["ingested_at"],
        }
    write_json(out / "index.json", summary)
    return table


def read_index(path: str | Path, sources: Iterable[str] | None = None) -> pd.DataFrame:
    """The index at ``path`` (an index directory or an index.parquet file) as a DataFrame."""
    file = _index_file(path)
    filters = [("dataset", "in", list(sources))] if sources else None
    return pq.read_table(file, filters=filters).to_pandas(types_mapper=_nullable)


def count_rows(path: str | Path) -> int:
    """Rows of the index at ``path`` from the Parquet footer (no data read)."""
    return pq.ParquetFile(_index_file(path)).metadata.num_rows


def read_quarantine(path: str | Path) -> pd.DataFrame:
    """Every quarantined row of the index at ``path``."""
    parts = sorted((Path(path) / "quarantine").glob("*.parquet"))
    if not parts:
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pandas()


def _index_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / INDEX_FILE if path.is_dir() else path
    if not file.is_file():
        raise SynthfairError(
            f"no index at {path} ({file.name} not found)",
            "build one with `synthfair ingest SOURCE --root DIR --out INDEX_DIR`",
        )
    return file


def _nullable(dtype: pa.DataType) -> Any:
    if pa.types.is_integer(dtype) and dtype != pa.int64():
        return pd.Int8Dtype() if dtype == pa.int8() else None
    return None


def _check_same_schema(tables: list[pa.Table], parts: list[Path]) -> None:
    for table, part in zip(tables[1:], parts[1:], strict=True):
        if table.schema != tables[0].schema:
            raise SynthfairError(
                f"{part} was ingested with other columns than {parts[0]} (the taxonomy changed in between)",
                f"re-ingest {part.stem} (or every source) with the current taxonomy.yaml",
            )


def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))
