"""The files of a release directory, in one place (DESIGN.md section 6). The shards are those of a
`synthfair.shardjob` (its paths are re-exported here).

RELEASE/release.json              the request (plan and checkpoint hashes, engine settings); written first,
                                  checked by every later run so a release never mixes two requests
RELEASE/plan.parquet              a copy of the plan it was generated from
RELEASE/shards/000000.tar         <key>.png (16-bit grayscale) + <key>.json (schema synthfair.sample/1)
RELEASE/shards/000000.parquet     one row per plan row of the shard, failures included (status, error)
RELEASE/shards/000000_stats.json  written last: its existence marks the shard as done
-- written by finalize --
RELEASE/samples.parquet           one row per written sample across all shards, covariates as columns
RELEASE/manifest.json             dataset version, checkpoint, config, taxonomy hash, one entry per shard
RELEASE/shardindex.json           the wids shard index (wids-shard-index-v1) of the same shards
RELEASE/DATASET_CARD.md           the dataset card with its numbers section filled from the release
RELEASE/SHA256SUMS                "<sha256>  <path>" per file, checkable with ``sha256sum -c SHA256SUMS``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import join_location
from synthfair.shardjob import TAR_MTIME as TAR_MTIME  # a release's shards are a shard job's
from synthfair.shardjob import shard_name as shard_name
from synthfair.shardjob import stats_path as stats_path
from synthfair.shardjob import status_path as status_path
from synthfair.shardjob import tar_path as tar_path

SAMPLE_SCHEMA = "synthfair.sample/1"
RELEASE_SCHEMA = "synthfair.release/1"
PLAN_SCHEMA = "synthfair.plan/1"
REQUEST_FILE = "release.json"
PLAN_FILE = "plan.parquet"
SAMPLES_FILE = "samples.parquet"
MANIFEST_FILE = "manifest.json"
SHARD_INDEX_FILE = "shardindex.json"
CARD_FILE = "DATASET_CARD.md"
SUMS_FILE = "SHA256SUMS"
KINDS = ("factual", "reconstruction", "counterfactual")

# one row per plan row of a shard: what happened to it
# the plan: one row per sample to generate (`synthfair plan` writes it; a release keeps a copy)
PLAN_COLUMNS = pa.schema(
    [
        ("key", pa.string()),
        ("family", pa.string()),  # the factual's sample_key
        ("kind", pa.string()),  # factual | reconstruction | counterfactual
        ("parent", pa.string()),  # the factual sample's key (null for the factual)
        ("intervention", pa.string()),  # JSON do(); {} for factual and reconstruction
        ("label", pa.string()),  # "sex=female,age=80"; "factual"; "null"
        ("shard", pa.int32()),
        ("seed", pa.int64()),
        ("sample_hash", pa.int64()),  # stable hash of the key: engine-independent sampling downstream
        ("dataset", pa.string()),
        ("source_id", pa.string()),
        ("patient", pa.string()),  # the source's patient key: the unit of leakage-free splits downstream
        ("split", pa.string()),
        ("image", pa.string()),  # the factual image's path
        ("factual", pa.string()),  # JSON factual covariates
        ("phantom", pa.string()),  # JSON {seed, index, noise_seed, config, spec_sha256, size}
    ]
)

STATUS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("status", pa.string()),  # "ok" or "failed"
        ("error", pa.string()),
        ("png_sha256", pa.string()),
        ("covariates", pa.string()),  # JSON: the sample's covariates (after propagation through the SCM)
        ("changed", pa.list_(pa.string())),  # covariates that differ from the factual
        ("reconstruction_error", pa.float64()),
    ]
)


def read_request(release: str | Path) -> dict:
    """The request a release was generated for (``release.json``: plan, checkpoint, engine, generator)."""
    path = Path(release) / REQUEST_FILE
    if not path.is_file():
        raise SynthfairError(f"{release} is not a release (no {REQUEST_FILE})", "run `synthfair generate`")
    return json.loads(path.read_text())


def release_complete(out: str | Path) -> tuple[int, list[int]]:
    """(shards in the release's plan, the shards not done yet)."""
    n = read_request(out)["shards"]
    return n, [s for s in range(n) if not stats_path(out, s).exists()]


def shard_reader(release: str | Path):
    """A `synthfair.shards.ShardReader` over a release's samples (a directory or any fsspec URL): the shards
    its ``shardindex.json`` lists once finalized; before that (a local release), every shard's
    ``_stats.json``, all of which must exist."""
    from synthfair.shards import ShardReader  # lazy: the layout's names stay light

    if "://" in str(release) or (Path(release) / SHARD_INDEX_FILE).is_file():
        return ShardReader.from_shard_index(join_location(release, SHARD_INDEX_FILE))
    n, missing = release_complete(release)
    if missing:
        raise SynthfairError(
            f"{release} has {len(missing)} unfinished shards (first: {missing[0]})",
            "finish it with `synthfair generate` (same arguments)",
        )
    stats = [json.loads(stats_path(release, s).read_text()) for s in range(n)]
    return ShardReader([(tar_path(release, s), stats[s].get("nsamples")) for s in range(n)])


def read_plan(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """(plan table, its metadata) of a plan file written by `write_plan`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"plan {path} does not exist", "make one with `synthfair plan`")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"synthfair")
    meta = json.loads(raw) if raw else {}
    if meta.get("schema") != PLAN_SCHEMA or table.schema.names != PLAN_COLUMNS.names:
        raise ConfigError(f"{path} is not a synthfair plan ({PLAN_SCHEMA})", "make one with `synthfair plan`")
    return table, meta
