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
from synthfair.fileio import atomic_write, remove_temporaries, write_json
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
    return list(taxonomy.label_columns())


def to_table(records: Sequence[Mapping[str, Any]], taxonomy: Taxonomy) -> pa.Table:
    """Index records (dicts with every column) as an Arrow table in the index schema."""
    sch = schema(taxonomy)
    return pa.table(
        {name: pa.array([r.get(name) for r in records], sch.field(name).type) for name in sch.names}
    )


def write_source(out: str | Path, source: str, table: pa.Table, quarantine: pa.Table, report: dict) -> None:
    """Replace ``source``'s rows, quarantine and report in the index at ``out``, then rebuild the index.

    Each file is written atomically, and the files of one version carry its token (in the Parquet footer,
    in the JSON): a source's report, quarantine and part are used together only when their tokens agree, and
    ``index.parquet`` only with the ``index.json`` written after it. An interrupted ingest therefore leaves
    the old version, or a mismatch that readers refuse with the fix (re-run the ingest), never a mix."""
    out = Path(out)
    for sub in ("sources", "quarantine", "reports"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    remove_temporaries(out, recursive=True)  # a killed ingest's half-written files (one ingest at a time)
    stable = {k: v for k, v in report.items() if k != "ingested_at"}  # the same input: the same bytes
    token = _token(json.dumps(stable, sort_keys=True, default=str), _digest(table), _digest(quarantine))
    write_json(out / "reports" / f"{source}.json", {**report, TOKEN: token})
    _write_parquet(out / "quarantine" / f"{source}.parquet", quarantine, token)
    _write_parquet(out / "sources" / f"{source}.parquet", table, token)  # last of the source's files
    rebuild(out)


def rebuild(out: str | Path) -> pa.Table:
    """Concatenate every source's part into ``index.parquet`` and write ``index.json``."""
    out = Path(out)
    parts = sorted((out / "sources").glob("*.parquet"))
    tables = [_without_token(pq.read_table(p)) for p in parts]
    _check_same_schema(tables, parts)
    table = pa.concat_tables(tables) if tables else pa.table({})
    if tables:
        table = table.sort_by([("dataset", "ascending"), ("sample_key", "ascending")])
    reports = {part.stem: _source_report(out, part) for part in parts}
    token = _token(*(r.get(TOKEN, "") for r in reports.values()), table.num_rows)
    _write_parquet(out / INDEX_FILE, table, token)
    summary = {"schema": SCHEMA, "rows": table.num_rows, "sources": {}, TOKEN: token}
    for part in parts:
        report = reports[part.stem]
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
    table = _without_token(pq.read_table(file, filters=filters))
    return table.to_pandas(types_mapper=_nullable)


def count_rows(path: str | Path) -> int:
    """Rows of the index at ``path`` from the Parquet footer (no data read)."""
    return pq.ParquetFile(_index_file(path)).metadata.num_rows


def read_quarantine(path: str | Path) -> pd.DataFrame:
    """Every quarantined row of the index at ``path``."""
    parts = sorted((Path(path) / "quarantine").glob("*.parquet"))
    if not parts:
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([_without_token(pq.read_table(p)) for p in parts]).to_pandas()


def _index_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / INDEX_FILE if path.is_dir() else path
    if not file.is_file():
        raise SynthfairError(
            f"no index at {path} ({file.name} not found)",
            "build one with `synthfair ingest SOURCE --root DIR --out INDEX_DIR`",
        )
    summary = file.parent / "index.json"
    if summary.is_file():  # one version's files together: the summary written last names the index's token
        expected = json.loads(summary.read_text()).get(TOKEN)
        if expected is not None and _file_token(file) != expected:
            raise SynthfairError(
                f"{file} and {summary} are from different versions: an ingest was interrupted",
                "re-run the last `synthfair ingest` into this index; it finishes the update",
            )
    return file


TOKEN = "version_token"  # in index.json and reports, and in the Parquet footers (schema metadata)


def _token(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _file_token(path: Path) -> str | None:
    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(TOKEN.encode())
    return None if value is None else value.decode()


def _without_token(table: pa.Table) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata.pop(TOKEN.encode(), None)
    return table.replace_schema_metadata(metadata or None)


def _source_report(out: Path, part: Path) -> dict[str, Any]:
    """A source's report, if its part and quarantine are of the same version (same token)."""
    report_path = out / "reports" / f"{part.stem}.json"
    hint = f"re-run `synthfair ingest {part.stem} ...` into {out}: it finishes the interrupted update"
    if not report_path.is_file():
        missing = f"{part} has no ingest report ({report_path} is missing)"
        raise SynthfairError(missing, f"{hint}, or delete it")
    report = json.loads(report_path.read_text())
    quarantine = out / "quarantine" / part.name
    tokens = {report.get(TOKEN), _file_token(part), _file_token(quarantine) if quarantine.is_file() else None}
    if len(tokens - {None}) > 1:
        raise SynthfairError(f"{part.stem}'s part, quarantine and report are from different ingests", hint)
    return report


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


def _write_parquet(path: Path, table: pa.Table, token: str | None = None) -> None:
    if token is not None:
        metadata = {**(table.schema.metadata or {}), TOKEN.encode(): token.encode()}
        table = table.replace_schema_metadata(metadata)
    atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))
