"""The index layer: sources in, training shards out.

    synthfair.index.ingest      a source's files -> harmonized index rows (bad rows quarantined, counted)
    synthfair.index.table       the index's files: one Parquet row per factual image (read_index, ...)
    synthfair.index.stats       counts per source and per intersectional group (`synthfair index stats`)
    synthfair.index.preprocess  index -> resized 16-bit WebDataset shards for training (a shard job)

The table's names are this package's own (``from synthfair.index import read_index``); ingest, stats and
preprocess are imported from their modules, so that reading an index stays light.
"""

from synthfair.index.table import (
    BASE_COLUMNS,
    INDEX_FILE,
    QUARANTINE_SCHEMA,
    SCHEMA,
    TOKEN,
    columns,
    count_rows,
    finding_columns,
    read_index,
    read_quarantine,
    rebuild,
    sample_hash,
    schema,
    to_table,
    unit_hash,
    write_source,
)

__all__ = [
    "BASE_COLUMNS",
    "INDEX_FILE",
    "QUARANTINE_SCHEMA",
    "SCHEMA",
    "TOKEN",
    "columns",
    "count_rows",
    "finding_columns",
    "read_index",
    "read_quarantine",
    "rebuild",
    "sample_hash",
    "schema",
    "to_table",
    "unit_hash",
    "write_source",
]
