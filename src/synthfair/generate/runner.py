"""Generate a planned release: each process writes whole shards of counterfactual samples, resumably.

Per shard (files in `synthfair.release.layout`):

1. leftovers of a killed run (temporary files) are removed;
2. the shard's factual images are read and fitted to the model's size once per family; an image that cannot
   be read fails its family's rows with the reason (recorded, counted, never dropped silently);
3. the counterfactual engine runs the reconstruction and counterfactual rows in fixed-size batches, each
   sample with its planned seed; PNG encoding runs in a small thread pool while the model works;
4. ``<key>.png`` + ``<key>.json`` go into a tar with a fixed mtime, written under a temporary name and
   renamed; then the per-shard Parquet of statuses; then ``_stats.json``, last: it marks the shard done.

A re-run skips done shards and redoes unfinished ones. ``release.json`` records the request (plan, checkpoint,
engine settings) on the first run and refuses a different one later. Which process does a shard does not
change its bytes: keys, seeds and batch composition come from the plan, not from the process layout.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

import synthfair
from synthfair import shardjob
from synthfair.config import config_to_dict
from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.environment import die_with_parent
from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import atomic_write, sha256_file
from synthfair.generate.plan import read_plan
from synthfair.images.png16 import encode_png16
from synthfair.images.readers import ImageReadError, read_image
from synthfair.images.resize import FITS, fit_image
from synthfair.model.diffusion import resolve_model
from synthfair.model.registry import MODEL_FILE, weights_file
from synthfair.model.routes import route_dir
from synthfair.phantom.engine import NAME as PHANTOM
from synthfair.phantom.engine import PhantomEngine, PhantomEngineConfig
from synthfair.release import layout
from synthfair.taxonomy import Taxonomy, load_taxonomy


@dataclass(frozen=True)
class GenerateConfig:
    # the model's engine settings (None: those the model recommends, `EngineConfig.recommended`), or
    # `PhantomEngineConfig`: the phantom's exact counterfactuals, no model
    engine: EngineConfig | PhantomEngineConfig | None = None
    fit: str = "crop"  # how factual images are fitted to the model's size (see synthfair.index.preprocess)
    encode_workers: int = 2  # PNG-encoding threads beside the model

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ConfigError(f"fit {self.fit!r} is not one of {FITS}", "use crop, pad or stretch")
        if self.encode_workers < 1:
            raise ConfigError(f"encode_workers must be >= 1, got {self.encode_workers}", "use e.g. 2")


@dataclass(frozen=True)
class GenerateResult:
    out: Path
    shards: tuple[int, ...]  # the shards this process is responsible for
    written: int  # shards written by this call
    skipped: int  # shards already done
    samples: int  # samples written by this call
    failed: int  # plan rows of the written shards that failed
    seconds: float


def shard_count(plan: pa.Table) -> int:
    return int(pc.max(plan["shard"]).as_py()) + 1 if plan.num_rows else 0


def task_shards(n_shards: int, task_index: int, num_tasks: int) -> range:
    """The contiguous block of shards of array task ``task_index`` of ``num_tasks`` (the first tasks get one
    more when the shards do not divide evenly)."""
    if not 0 <= task_index < num_tasks:
        raise ConfigError(
            f"task index {task_index} is outside 0..{num_tasks - 1}",
            "pass --task-index in [0, --num-tasks) (Slurm: SLURM_ARRAY_TASK_ID with a 0-based --array)",
        )
    base, extra = divmod(n_shards, num_tasks)
    start = task_index * base + min(task_index, extra)
    return range(start, start + base + (task_index < extra))


def process_shards(shards: Sequence[int], process_index: int, num_processes: int) -> list[int]:
    """The shards of ``shards`` that process ``process_index`` of ``num_processes`` writes."""
    return [s for position, s in enumerate(shards) if position % num_processes == process_index]


def generate(
    plan: str | Path,
    checkpoint: str | Path | None,
    out: str | Path,
    config: GenerateConfig | None = None,
    shards: Sequence[int] | None = None,
    process_index: int = 0,
    num_processes: int = 1,
    device: str | None = None,
    on_sample: Callable[[int], None] | None = None,
    taxonomy: Taxonomy | None = None,
) -> GenerateResult:
    """Write this process's share of ``shards`` (default: all of the plan's) to the release ``out``, with
    the model at ``checkpoint``, or with the phantom's exact counterfactuals (``checkpoint`` None and
    ``config.engine`` a `PhantomEngineConfig`)."""
    start = time.time()
    config = config or GenerateConfig()
    taxonomy = taxonomy or load_taxonomy()
    table, _ = read_plan(plan)
    n_shards = shard_count(table)
    wanted = list(range(n_shards)) if shards is None else list(shards)
    outside = [s for s in wanted if not 0 <= s < n_shards]
    if outside:
        raise ConfigError(f"shards {outside[:5]} are not in the plan (0..{n_shards - 1})", "check --shards")
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    engine = _engine(checkpoint, config, taxonomy, device)
    config = replace(config, engine=engine.config)  # the settings used, recommended ones resolved
    request = _request(plan, checkpoint, config, engine, n_shards, taxonomy)
    _claim(out, request, plan)
    mine = process_shards(wanted, process_index, num_processes)
    tick = on_sample or (lambda n: None)
    rows_by_shard = _rows_by_shard(table, set(mine))
    with ThreadPoolExecutor(config.encode_workers) as pool, shardjob.Committer() as committer:
        for shard in mine:
            if shardjob.is_done(out, shard):
                tick(len(rows_by_shard[shard]))
                continue
            _write_shard(out, shard, rows_by_shard[shard], engine, config, request, pool, tick, committer)
    written = committer.stats
    samples, failed = sum(s["nsamples"] for s in written), sum(s["failed"] for s in written)
    return GenerateResult(
        out, tuple(mine), len(written), len(mine) - len(written), samples, failed, time.time() - start
    )


def generate_in_processes(
    plan: str | Path,
    checkpoint: str | Path | None,
    out: str | Path,
    config: GenerateConfig | None = None,
    workers: int = 2,
    shards: Sequence[int] | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> GenerateResult:
    """`generate` in ``workers`` local processes at once (each its own share of the shards, as under
    ``accelerate launch``), for one machine without a launcher: the phantom's exact engine renders on one
    core per process. Model processes each get an equal share of the torch threads. The bytes are those of
    one process (with the model: at the same thread count per process). ``on_shard(shard)`` hears of each
    shard of ``shards`` (default: all) once it is done, already done ones included: for a progress bar."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}", "use e.g. 2")
    start = time.time()
    threads = max(1, torch.get_num_threads() // workers)
    jobs = [(plan, checkpoint, out, config, shards, i, workers, threads) for i in range(workers)]
    wanted = range(shard_count(read_plan(plan)[0])) if shards is None else shards
    announce = _announcer(Path(out), wanted, on_shard)
    with mp.get_context("spawn").Pool(workers, initializer=die_with_parent) as pool:
        pending = pool.starmap_async(_generate_process, jobs)
        while not pending.ready():
            pending.wait(1.0)  # the processes write; this one watches for finished shards
            announce()
        results = pending.get()
    announce()
    return GenerateResult(
        Path(out),
        tuple(sorted(s for r in results for s in r.shards)),
        sum(r.written for r in results),
        sum(r.skipped for r in results),
        sum(r.samples for r in results),
        sum(r.failed for r in results),
        time.time() - start,
    )


def _announcer(
    out: Path, shards: Sequence[int], on_shard: Callable[[int], None] | None
) -> Callable[[], None]:
    """A call that passes each shard of ``shards`` done since its last call to ``on_shard``."""
    left = [] if on_shard is None else list(shards)

    def announce() -> None:
        for shard in [s for s in left if shardjob.is_done(out, s)]:
            left.remove(shard)
            on_shard(shard)

    return announce


def _generate_process(plan, checkpoint, out, config, shards, index, workers, threads) -> GenerateResult:
    torch.set_num_threads(threads)
    return generate(plan, checkpoint, out, config, shards, index, workers)


def _engine(checkpoint, config: GenerateConfig, taxonomy: Taxonomy, device: str | None):
    """The model's counterfactual engine, or the phantom's exact one."""
    if isinstance(config.engine, PhantomEngineConfig):
        if checkpoint is not None:
            raise ConfigError(
                "the phantom engine renders exact counterfactuals: it takes no checkpoint",
                "leave out --checkpoint, or generate with the model's engine",
            )
        return PhantomEngine(config.engine, config.fit)
    if checkpoint is None:
        raise ConfigError(
            "no checkpoint: the model engine needs an image model", "pass --checkpoint runs/NAME"
        )
    model_dir = resolve_model(checkpoint)
    engine = CounterfactualEngine.load(
        model_dir, config.engine or EngineConfig.recommended(model_dir), taxonomy
    )
    return engine.to(device) if device is not None else engine


# -- the request --------------------------------------------------------------------------------------------
def _request(plan, checkpoint, config, engine, n_shards: int, taxonomy: Taxonomy) -> dict[str, Any]:
    exact = isinstance(engine, PhantomEngine)
    model_dir = None if exact else resolve_model(checkpoint)
    weights = None if exact else weights_file(model_dir)
    if weights is not None and not weights.is_file():
        raise SynthfairError(f"no weights at {weights}", "pass a model written by `synthfair train`")
    device_type = "cpu" if exact else engine.device.type
    return {
        "schema": layout.RELEASE_SCHEMA,
        "plan_sha256": sha256_file(plan),
        "generator": PHANTOM if exact else "model",
        "checkpoint_sha256": None if exact else sha256_file(weights),
        "model_config_sha256": None if exact else sha256_file(model_dir / MODEL_FILE),
        **({} if exact else _route_digests(model_dir, engine)),
        "engine": config_to_dict(config.engine),
        "fit": config.fit,
        "size": engine.size,
        "scm": exact or engine.scm is not None,  # the phantom propagates through its own SCM
        # CPU kernels sum in a thread-count-dependent order: the same bytes need the same thread count
        "device_type": device_type,
        "torch_threads": torch.get_num_threads() if device_type == "cpu" and not exact else None,
        "shards": n_shards,
        "taxonomy_sha256": taxonomy.sha256,
        "synthfair_version": synthfair.__version__,
    }


def _route_digests(model_dir: Path, engine: CounterfactualEngine) -> dict[str, Any]:
    """The keys, weights' and configuration's sha256 of every route the engine uses
    (`synthfair.model.routes`); nothing without routes, so a release without them records what it did."""
    if not engine.routes:
        return {}
    paths = {name: route_dir(model_dir, name) for name in sorted(engine.routes)}
    return {
        "routes": dict(sorted(engine.config.routes.items())),
        "route_sha256": {name: sha256_file(weights_file(path)) for name, path in paths.items()},
        "route_config_sha256": {name: sha256_file(path / MODEL_FILE) for name, path in paths.items()},
    }


def _claim(out: Path, request: dict[str, Any], plan) -> None:
    """Record the request (first run) or check it against the recorded one; copy the plan in."""
    shardjob.claim(out / layout.REQUEST_FILE, request, "release")
    if not (out / layout.PLAN_FILE).exists():
        atomic_write(out / layout.PLAN_FILE, lambda f: f.write(Path(plan).read_bytes()))


def _rows_by_shard(table: pa.Table, shards: set[int]) -> dict[int, list[dict[str, Any]]]:
    """The plan rows of ``shards`` only (a 1M-row plan is never turned into Python objects whole)."""
    mine = table.filter(pc.is_in(table["shard"], pa.array(sorted(shards), pa.int32())))
    by_shard: dict[int, list[dict[str, Any]]] = {s: [] for s in shards}
    for row in mine.to_pylist():
        by_shard[row["shard"]].append(row)
    return by_shard


# -- one shard ----------------------------------------------------------------------------------------------
def _write_shard(out, shard, rows, engine, config, request, pool, tick, committer) -> None:
    start = time.time()
    images, errors = _factual_images(rows, engine.size, config.fit)
    encoded: dict[str, Future] = {}  # key -> PNG + JSON, encoded by the pool while the model works on
    failed: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["family"] in errors:
            failed[row["key"]] = _status(row["key"], "failed", errors[row["family"]])
            tick(1)
        elif row["kind"] == "factual":
            encoded[row["key"]] = pool.submit(_encode, *_sample(row, images[row["family"]], None, request))
            tick(1)
    model_rows = [r for r in rows if r["kind"] != "factual" and r["family"] in images]
    for first in range(0, len(model_rows), config.engine.batch_size):
        batch = model_rows[first : first + config.engine.batch_size]
        for row, result in zip(batch, _run_model(batch, images, engine), strict=True):
            if isinstance(result, SynthfairError):
                failed[row["key"]] = _status(row["key"], "failed", result.message)
            else:
                encoded[row["key"]] = pool.submit(
                    _encode, *_sample(row, images[row["family"]], result, request)
                )
        tick(len(batch))

    def samples():
        for row in rows:
            if row["key"] in failed:
                yield failed[row["key"]], None
                continue
            png, text, record = encoded[row["key"]].result()
            sample = {"__key__": row["key"], "png": png, "json": text}
            yield _status(row["key"], "ok", None, png, record), sample

    def summarize(written: shardjob.Written) -> dict[str, Any]:
        ok = [row for row, s in zip(rows, written.statuses, strict=True) if s["status"] == "ok"]
        return {
            "shard": shard,
            "url": f"shards/{written.path.name}",
            "sha256": written.sha256,
            "filesize": written.filesize,
            "nsamples": len(ok),
            "failed": len(rows) - len(ok),
            "first_key": rows[0]["key"],
            "last_key": rows[-1]["key"],
            "counts": {
                "kind": dict(sorted(Counter(r["kind"] for r in ok).items())),
                "label": dict(sorted(Counter(r["label"] for r in ok).items())),
            },
            "errors": dict(sorted(Counter(s["error"] for s in written.statuses if s["error"]).items())),
            "seconds": round(time.time() - start, 3),
        }

    committer.write(out, shard, samples(), layout.STATUS_SCHEMA, summarize)


def _factual_images(rows, size: int, fit: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each family's factual image fitted to ``size`` (float32 [0, 1]); or its read error."""
    images: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for row in rows:
        family = row["family"]
        if family in images or family in errors:
            continue
        try:
            images[family] = fit_image(read_image(row["image"]).image, size, fit).astype(np.float32)
        except ImageReadError as err:
            errors[family] = f"factual image: {err.message}"
        except FileNotFoundError:
            errors[family] = f"factual image {row['image']} does not exist"
    return images, errors


def _run_model(batch, images, engine: CounterfactualEngine | PhantomEngine) -> list[Any]:
    """The engine's counterfactuals of a batch of plan rows (reconstruction and counterfactual kinds); the
    exact engine gives an error instead for a row it cannot render."""
    if isinstance(engine, PhantomEngine):
        noises = [json.loads(r["phantom"]) if r["phantom"] else None for r in batch]
        return engine(noises, [json.loads(r["intervention"]) for r in batch])
    return engine(
        [images[r["family"]] for r in batch],
        [json.loads(r["factual"]) for r in batch],
        [json.loads(r["intervention"]) for r in batch],
        [r["seed"] for r in batch],
    )


def _model_record(request: dict[str, Any], route: str | None) -> dict[str, Any]:
    """The image model that made a sample: the checkpoint's, or that of the route that made it."""
    if route is None:
        record = {
            "checkpoint_sha256": request["checkpoint_sha256"],
            "config_sha256": request["model_config_sha256"],
        }
    else:
        record = {
            "checkpoint_sha256": request["route_sha256"][route],
            "config_sha256": request["route_config_sha256"][route],
        }
    return {**record, "route": route} if "routes" in request else record


def _sample(row, factual_image: np.ndarray, result, request) -> tuple[np.ndarray, dict[str, Any]]:
    """The image and the ``synthfair.sample/1`` record of one plan row."""
    factual = json.loads(row["factual"])
    record: dict[str, Any] = {
        "schema": layout.SAMPLE_SCHEMA,
        "key": row["key"],
        "family": row["family"],
        "kind": row["kind"],
        "parent": row["parent"],
        "label": row["label"],
        "source": {"dataset": row["dataset"], "id": row["source_id"], "split": row["split"]},
        "factual": factual,
        "intervention": json.loads(row["intervention"]),
        "seed": row["seed"],
        "sample_hash": row["sample_hash"],
        "model": _model_record(request, None if result is None else result.route)
        if request["generator"] == "model"
        else None,
        "generation": {
            "generator": request["generator"],
            "size": request["size"],
            "fit": request["fit"],
            **request["engine"],
        },
    }
    if row["phantom"]:
        record["phantom"] = json.loads(row["phantom"])
    if result is None:  # the factual image itself
        record.update(covariates=factual, changed=[], propagated=False, reconstruction_error=None)
        return factual_image, record
    error = result.reconstruction_error
    record.update(
        covariates=result.covariates,
        changed=list(result.changed),
        propagated=result.propagated,
        reconstruction_error=None if np.isnan(error) else round(float(error), 7),
    )
    return result.image, record


def _encode(image: np.ndarray, record: dict[str, Any]) -> tuple[bytes, bytes, dict[str, Any]]:
    return encode_png16(image), json.dumps(record, sort_keys=True).encode(), record


def _status(key, status, error, png: bytes | None = None, record: dict | None = None) -> dict[str, Any]:
    return {
        "key": key,
        "status": status,
        "error": error,
        "png_sha256": hashlib.sha256(png).hexdigest() if png is not None else None,
        "covariates": json.dumps(record["covariates"], sort_keys=True) if record else None,
        "changed": list(record["changed"]) if record else None,
        "reconstruction_error": record["reconstruction_error"] if record else None,
    }
