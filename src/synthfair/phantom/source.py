"""Write the phantom as a data source on disk, like a real CXR release.

    <out>/images/<key>.png     16-bit grayscale radiographs
    <out>/metadata.csv         one row per image: key, image path, split, harmonized covariates
    <out>/subjects.parquet     every subject's exogenous noise, to re-render exact counterfactuals later
    <out>/provenance.json      package version, seed, size, configs and their hashes; written last
    <out>/.request.json        the same record, written first: it guards an unfinished source

Images are written to a temporary name and renamed, so a crash never leaves a truncated PNG; re-running
the same command skips the images already there and finishes the rest. A different seed, size or
configuration in an existing directory is refused. Work is spread over ``workers`` processes, each with
one torch thread; every image depends only on (seed, index), so the bytes do not depend on ``workers``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

import synthfair
from synthfair.config import config_to_dict
from synthfair.environment import die_with_parent, package_version
from synthfair.errors import SynthfairError
from synthfair.fileio import atomic_write, write_json
from synthfair.phantom.simulator import TRAITS, Phantom, PhantomConfig, Subject

SCHEMA = "synthfair.phantom-source/1"
SPLITS = (("train", 0.8), ("validate", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class SourceResult:
    out: Path
    n: int
    rendered: int  # images rendered by this run (the rest were already on disk)
    complete: bool  # every image is there and metadata, subjects and provenance were written


def write_source(
    out: str | Path,
    n: int,
    size: int = 256,
    seed: int = 0,
    workers: int = 1,
    config: PhantomConfig | None = None,
    on_image: Callable[[], None] | None = None,
    part: tuple[int, int] = (0, 1),
) -> SourceResult:
    """Render ``n`` phantom subjects to ``out`` (see the module docstring); ``on_image`` ticks per image.

    ``part=(i, k)`` renders only subjects with ``index % k == i`` (one of ``k`` array tasks); whichever
    part finds every image present writes metadata, subjects and provenance."""
    if n < 1 or size < 16:
        raise SynthfairError(
            f"phantom source needs n >= 1 and size >= 16, got n={n}, size={size}",
            "pass --n 1 or more and --size 16 or more",
        )
    if not 0 <= part[0] < part[1]:
        raise SynthfairError(
            f"part {part[0]}/{part[1]} is not one of 0/k .. k-1/k", "pass --part I/K with 0 <= I < K"
        )
    out = Path(out)
    config = config or PhantomConfig()
    phantom = Phantom(config)
    provenance = _provenance(phantom, n, size, seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    _claim(out, provenance)
    subjects = phantom.sample_subjects(n, seed)
    mine = [s for s in subjects if s.index % part[1] == part[0]]
    todo = [s.index for s in mine if not _image_path(out, s.key).exists()]
    for _ in range(len(mine) - len(todo)):
        _tick(on_image)
    for _ in _render_all(out, todo, seed, size, config, workers, phantom):
        _tick(on_image)
    complete = all(_image_path(out, s.key).exists() for s in subjects)
    if complete:
        _write_metadata(out / "metadata.csv", phantom, subjects)
        write_subjects(out / "subjects.parquet", phantom, subjects)
        _write_json(out / "provenance.json", provenance)
    return SourceResult(out, n, len(todo), complete)


def image_bytes(image: np.ndarray) -> bytes:
    """A (H, W) uint16 array as 16-bit grayscale PNG bytes (deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint16)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def read_png16(path: str | Path) -> np.ndarray:
    """A 16-bit grayscale PNG as a uint16 array (PIL's own conversions would drop to 8 bits)."""
    with Image.open(path) as im:
        return np.asarray(im).astype(np.uint16)


def write_subjects(path: Path, phantom: Phantom, subjects: Iterable[Subject]) -> None:
    """Subjects' exogenous noise as Parquet: key, seed, index, noise_seed, u_<covariate>, t_<trait>."""
    subjects = list(subjects)
    cols: dict[str, Any] = {
        "key": [s.key for s in subjects],
        "seed": pa.array([s.seed for s in subjects], pa.int64()),
        "index": pa.array([s.index for s in subjects], pa.int64()),
        "noise_seed": pa.array([s.noise_seed for s in subjects], pa.int64()),
    }
    for name in phantom.spec.scm.order:
        cols[f"u_{name}"] = pa.array([s.noise[name].tolist() for s in subjects], pa.list_(pa.float64()))
    for trait in TRAITS:
        cols[f"t_{trait}"] = pa.array([s.traits[trait] for s in subjects], pa.float64())
    atomic_write(path, lambda f: pq.write_table(pa.table(cols), f))


def read_subjects(path: str | Path, phantom: Phantom) -> list[Subject]:
    """Subjects back from `write_subjects`'s Parquet, ready to render (exactly) again."""
    table = pq.read_table(path).to_pylist()
    return [
        Subject(
            key=r["key"],
            seed=r["seed"],
            index=r["index"],
            noise_seed=r["noise_seed"],
            noise={n: np.asarray(r[f"u_{n}"]) for n in phantom.spec.scm.order},
            traits={t: r[f"t_{t}"] for t in TRAITS},
        )
        for r in table
    ]


def split_of(key: str) -> str:
    """A stable 80/10/10 train/validate/test split from the key's hash (subjects are patients)."""
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if u < edge:
            return name
    return SPLITS[-1][0]


def covariate_columns(phantom: Phantom) -> list[str]:
    """metadata.csv covariate columns: one per covariate, one per label (``<covariate>.<label>``) for
    multilabel covariates."""
    return list(phantom.taxonomy.columns())


def covariate_row(phantom: Phantom, covariates: dict) -> dict[str, Any]:
    row = phantom.taxonomy.flatten(covariates, label=lambda value: int(value or 0))
    return {k: repr(v) if isinstance(v, float) else v for k, v in row.items()}


# -- internals ---------------------------------------------------------------------------------------------
def _render_all(out, todo, seed, size, config, workers, phantom):
    if workers <= 1 or len(todo) <= 1:
        for index in todo:
            yield _render_one(phantom, out, seed, index, size)
        return
    chunks = [todo[i : i + 4] for i in range(0, len(todo), 4)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config, phantom.anatomy)) as pool:
        for keys in pool.imap(_render_chunk, [(str(out), seed, chunk, size) for chunk in chunks]):
            yield from keys


_WORKER: Phantom | None = None


def _init_worker(config: PhantomConfig, anatomy) -> None:
    import torch

    die_with_parent()
    torch.set_num_threads(1)
    global _WORKER
    _WORKER = Phantom(config, anatomy=anatomy)


def _render_chunk(args) -> list[str]:
    out, seed, chunk, size = args
    return [_render_one(_WORKER, Path(out), seed, index, size) for index in chunk]


def _render_one(phantom: Phantom, out: Path, seed: int, index: int, size: int) -> str:
    subject = phantom.subject(seed, index)
    data = image_bytes(phantom.render(subject, size=size))
    atomic_write(_image_path(out, subject.key), lambda f: f.write(data))
    return subject.key


def _image_path(out: Path, key: str) -> Path:
    return out / "images" / f"{key}.png"


def _write_metadata(path: Path, phantom: Phantom, subjects: list[Subject]) -> None:
    fields = ["key", "image", "split", *covariate_columns(phantom)]

    def write(f):
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for s in subjects:
            writer.writerow(
                {
                    "key": s.key,
                    "image": f"images/{s.key}.png",
                    "split": split_of(s.key),
                    **covariate_row(phantom, phantom.covariates(s)),
                }
            )
        text.flush()
        text.detach()

    atomic_write(path, write)


def _provenance(phantom: Phantom, n: int, size: int, seed: int) -> dict:
    spec_text = json.dumps(phantom.spec.raw, sort_keys=True, default=str)
    return {
        "schema": SCHEMA,
        "synthfair_version": synthfair.__version__,
        "seed": seed,
        "n": n,
        "size": size,
        "config": config_to_dict(phantom.config),
        "phantom_spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
        "taxonomy_sha256": phantom.taxonomy.sha256,
        "anatomy": phantom.anatomy.name,
        "image_format": "png16",
        # bytes are reproducible on the same software stack; record it
        "packages": {name: package_version(name) for name in ("torch", "numpy", "scipy", "pillow")},
    }


def _claim(out: Path, provenance: dict) -> None:
    """Refuse a directory that holds (part of) another source; else record this request before rendering,
    so that an unfinished source, or a concurrent array task, is guarded too."""
    for name in ("provenance.json", ".request.json"):
        if (out / name).exists():
            _check_same(out, json.loads((out / name).read_text()), provenance)
    if not (out / ".request.json").exists():
        _write_json(out / ".request.json", provenance)


def _check_same(out: Path, old: dict, provenance: dict) -> None:
    for key in ("seed", "size", "config", "phantom_spec_sha256", "taxonomy_sha256", "anatomy"):
        if old.get(key) != provenance[key]:
            raise SynthfairError(
                f"{out} holds a phantom source with {key}={old.get(key)!r}, this run has {provenance[key]!r}",
                "use a new --out directory (a source is one seed, size and configuration)",
            )


def _write_json(path: Path, data: dict) -> None:
    write_json(path, data, sort_keys=True)


def _tick(callback) -> None:
    if callback is not None:
        callback()
