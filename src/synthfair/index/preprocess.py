"""Turn an index into training-ready WebDataset shards: decoded once, resized, 16-bit, with covariates.

    CACHE/cache.json                 the request (config, index fingerprint); written first, checked on resume
    CACHE/shards/000000.tar          <key>.png (16-bit grayscale, size x size) + <key>.json per image
    CACHE/shards/000000.parquet      one row per index row of the shard, failures included (status, error)
    CACHE/shards/000000_stats.json   written last: its existence marks the shard as done
    CACHE/manifest.json              every shard's sha256, sample count and bytes; written when all are done

Training reads these shards and never decodes DICOM. Rows are cut into shards in index order
(dataset, sample_key), so the same index gives the same shards. Decoding runs in ``workers`` processes;
the main process writes tars in order, with a fixed mtime, so the bytes do not depend on ``workers``.
A tar is written under a temporary name and renamed; a re-run skips done shards and redoes the others.
An image that cannot be read is recorded in the shard's Parquet with its reason and counted, never dropped
silently.

The sample JSON holds the index row's identity, split and harmonized covariates (``covariates``:
{age, sex, ...}, ``findings``: {label: 0/1/null}, ``uncertain``: {label: 0/1}), the source image's bit
depth, photometric interpretation and original size.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

import synthfair
from synthfair import shardjob
from synthfair.environment import die_with_parent
from synthfair.errors import SynthfairError
from synthfair.fileio import write_json
from synthfair.images.png16 import encode_png16
from synthfair.images.readers import ImageReadError, read_image
from synthfair.images.resize import FITS, fit_image
from synthfair.index import read_index
from synthfair.shards import ShardReader
from synthfair.taxonomy import Taxonomy, load_taxonomy

SCHEMA = "synthfair.cache/1"
STATUS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("status", pa.string()),  # "ok" or "failed"
        ("error", pa.string()),
        ("image", pa.string()),  # the source image path
        ("bits", pa.int32()),
        ("original_height", pa.int32()),
        ("original_width", pa.int32()),
        ("png_sha256", pa.string()),
    ]
)


@dataclass(frozen=True)
class PreprocessConfig:
    size: int = 64  # output images are size x size pixels
    fit: str = "crop"  # "crop": shorter side to size, centre crop; "pad": longer side, zero pad; "stretch"
    shard_size: int = 1000  # images per shard (the last shard may be smaller)
    workers: int = 1  # decoding processes; 1 decodes in the main process

    def __post_init__(self) -> None:
        if self.size < 8 or self.shard_size < 1 or self.workers < 1:
            raise SynthfairError(
                f"preprocess needs size >= 8, shard_size >= 1 and workers >= 1, got size={self.size}, "
                f"shard_size={self.shard_size}, workers={self.workers}",
                "pass e.g. --size 64 --shard-size 1000",
            )
        if self.fit not in FITS:
            raise SynthfairError(f"--fit {self.fit!r} is not one of {FITS}", "use crop, pad or stretch")


@dataclass(frozen=True)
class PreprocessResult:
    out: Path
    shards: int
    images: int  # index rows
    processed: int  # rows decoded by this run (the rest were in done shards)
    failed: int  # rows that could not be read, over all shards
    complete: bool


def preprocess(
    index_dir: str | Path,
    out: str | Path,
    config: PreprocessConfig | None = None,
    taxonomy: Taxonomy | None = None,
    on_image: Callable[[int], None] | None = None,
) -> PreprocessResult:
    """Write the shards of the index at ``index_dir`` to ``out`` (see the module docstring).

    ``on_image(n)`` is called as images are done (n at a time), for a progress bar."""
    config = config or PreprocessConfig()
    taxonomy = taxonomy or load_taxonomy()
    rows = _samples(read_index(index_dir), taxonomy)
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    request = _request(rows, config, taxonomy)
    shardjob.claim(out / "cache.json", request, "cache")
    shards = [rows[i : i + config.shard_size] for i in range(0, len(rows), config.shard_size)]
    todo = [i for i in range(len(shards)) if not shardjob.is_done(out, i)]  # each redone from scratch
    tick = on_image or (lambda n: None)
    tick(sum(len(shards[i]) for i in range(len(shards)) if i not in todo))
    with _pool(config) as pool, shardjob.Committer() as committer:
        for i in todo:
            _write_shard(out, i, shards[i], config, pool, tick, committer)
    stats = [json.loads(shardjob.stats_path(out, i).read_text()) for i in range(len(shards))]
    shard_entries = [{k: v for k, v in s.items() if k != "seconds"} for s in stats]  # bytes stay reproducible
    write_json(out / "manifest.json", {**request, "shards": shard_entries})
    failed = sum(s["failed"] for s in stats)
    return PreprocessResult(out, len(shards), len(rows), sum(len(shards[i]) for i in todo), failed, True)


def iter_cache(cache: str | Path, split: str | None = None) -> Iterator[dict[str, Any]]:
    """The samples of a preprocessed cache, in order: ``{"key", "image" (float32 [0, 1], (H, W)), "meta"}``.

    Read through `synthfair.shards.ShardReader` (16-bit PNGs stay 16-bit, every member checked)."""
    manifest = Path(cache) / "manifest.json"
    if not manifest.is_file():
        raise SynthfairError(
            f"{cache} is not a finished cache (no manifest.json)",
            "run `synthfair preprocess INDEX_DIR --size PX --out CACHE` (re-running resumes)",
        )
    shards = json.loads(manifest.read_text())["shards"]
    reader = ShardReader([(Path(cache) / "shards" / s["shard"], s["nsamples"]) for s in shards])
    for key, image, meta in reader:
        if split is None or meta["split"] == split:
            yield {"key": key, "image": image, "meta": meta}


def _samples(index: pd.DataFrame, taxonomy: Taxonomy) -> list[dict[str, Any]]:
    """Per index row, what a worker needs: key, image file and the sample JSON."""
    if index.empty:
        raise SynthfairError("the index is empty", "ingest a source first: `synthfair ingest SOURCE ...`")
    index = index.sort_values(["dataset", "sample_key"]).astype(object)
    index = index.where(index.notna(), None)
    out = []
    for row in index.to_dict("records"):
        meta = {
            k: row[k] for k in ("sample_key", "dataset", "source_id", "patient_key", "split", "sample_hash")
        }
        meta["covariates"] = {s.name: row[s.name] for s in taxonomy if s.kind != "multilabel"}
        for spec in taxonomy:
            if spec.kind == "multilabel":
                meta[spec.name] = {v: _int(row[f"{spec.name}.{v}"]) for v in spec.values}
                meta["uncertain"] = {v: _int(row[f"uncertain.{v}"]) for v in spec.values}
        image = str(Path(row["image_root"]) / row["image_path"])
        out.append({"key": row["sample_key"], "image": image, "meta": meta})
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _request(rows: list[dict], config: PreprocessConfig, taxonomy: Taxonomy) -> dict[str, Any]:
    fingerprint = hashlib.sha256()
    for row in rows:  # the keys, images and metadata, in order: any change in the index changes it
        fingerprint.update(json.dumps(row, sort_keys=True, default=str).encode())
    settings = {k: v for k, v in asdict(config).items() if k != "workers"}  # workers do not change bytes
    return {
        "schema": SCHEMA,
        "config": settings,
        "index_sha256": fingerprint.hexdigest(),
        "images": len(rows),
        "taxonomy_sha256": taxonomy.sha256,
        "synthfair_version": synthfair.__version__,
    }


class _Serial:
    """A stand-in for a process pool when ``workers == 1``."""

    def imap(self, fn, items, chunksize=1):
        return map(fn, items)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _pool(config: PreprocessConfig):
    if config.workers == 1:
        return _Serial()
    return mp.get_context("spawn").Pool(config.workers, initializer=die_with_parent)


def _encode(row: dict, config: PreprocessConfig) -> dict:
    """Decode, fit and PNG-encode one image; a read failure becomes a failed status, not an exception."""
    try:
        decoded = read_image(row["image"])
    except ImageReadError as err:
        return {"key": row["key"], "status": "failed", "error": err.message, "image": row["image"]}
    fitted = fit_image(decoded.image, config.size, config.fit)
    png = encode_png16(fitted)
    h, w = decoded.image.shape
    meta = {**row["meta"], "bits": decoded.bits, "photometric": decoded.photometric, "original_size": [h, w]}
    return {
        "key": row["key"],
        "status": "ok",
        "error": None,
        "image": row["image"],
        "bits": decoded.bits,
        "original_height": h,
        "original_width": w,
        "png_sha256": hashlib.sha256(png).hexdigest(),
        "png": png,
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def _write_shard(
    out: Path, i: int, rows: list[dict], config: PreprocessConfig, pool, tick, committer
) -> None:
    work = functools.partial(_encode, config=config)  # picklable for the spawned workers

    def samples():
        for result in pool.imap(work, rows, chunksize=4):
            sample = None
            if result["status"] == "ok":
                sample = {"__key__": result["key"], "png": result["png"], "json": result["json"]}
            yield {k: result.get(k) for k in STATUS_SCHEMA.names}, sample
            tick(1)

    def summarize(written: shardjob.Written) -> dict[str, Any]:
        ok = sum(s["status"] == "ok" for s in written.statuses)
        return {
            "shard": written.path.name,
            "sha256": written.sha256,
            "bytes": written.filesize,
            "nsamples": ok,
            "failed": len(written.statuses) - ok,
            "first_key": rows[0]["key"],
            "last_key": rows[-1]["key"],
            "seconds": round(written.seconds, 3),
        }

    committer.write(out, i, samples(), STATUS_SCHEMA, summarize)
