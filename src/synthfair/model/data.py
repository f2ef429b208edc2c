"""Training data: random access to a preprocessed cache's samples, and a deterministic batch order.

`CacheDataset` reads the cache's shards through `synthfair.shards.ShardReader`: each tar's members are
indexed once, then any sample is read directly, so training can draw batches in any order without streaming
whole shards. 16-bit PNGs stay 16-bit (webdataset's PIL decoders would reduce them to 8 bits).

`batch_indices(step, ...)` makes the order a pure function of (seed, step, rank): an endless sequence of
seeded permutations, the global batch of step ``s`` being positions ``[s * B * W, (s + 1) * B * W)``, of which
rank ``r`` takes every W-th. Resuming at step ``s`` therefore continues the same trajectory with nothing to
skip, and the data each rank sees does not depend on how fast the others run.

`oversampled(...)` repeats the positions of images with rare values (``oversample:`` in the training config,
e.g. ``findings.cardiomegaly: 3``) before the permutations: a finding's conditioning then learns from more
than the few images that have it, and the order stays a pure function of (seed, step, rank).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthfair.errors import ConfigError, SynthfairError
from synthfair.shards import ShardReader, decode_record
from synthfair.taxonomy import Taxonomy, TaxonomyError


class CacheDataset:
    """The samples of a `synthfair preprocess` cache (optionally one split), readable by position."""

    def __init__(self, cache: str | Path, split: str | None = "train", in_memory: bool = False):
        self.cache = Path(cache)
        manifest_path = self.cache / "manifest.json"
        if not manifest_path.is_file():
            raise SynthfairError(
                f"{self.cache} is not a finished preprocessed cache (no manifest.json)",
                "make one with `synthfair preprocess INDEX_DIR --size PX --out CACHE`",
            )
        self.manifest = json.loads(manifest_path.read_text())
        self.size = int(self.manifest["config"]["size"])
        shards = [(self.cache / "shards" / s["shard"], s["nsamples"]) for s in self.manifest["shards"]]
        self.reader = ShardReader(shards)
        self.keys: list[str] = []
        self.positions: list[tuple[int, int]] = []  # (shard, position in it) of each sample
        self.meta: list[dict[str, Any]] = []
        for shard in range(len(shards)):
            for position in range(len(self.reader.keys(shard))):
                key, parts = self.reader.parts(shard, position, needed=("json",))
                meta = decode_record(parts["json"], f"{shards[shard][0]}: sample {key!r}")
                if split is None or meta["split"] == split:
                    self.keys.append(key)
                    self.positions.append((shard, position))
                    self.meta.append(meta)
        if not self.keys:
            raise SynthfairError(
                f"{self.cache} has no samples in split {split!r}",
                "check the split name (train, validate, test) or preprocess an index that has it",
            )
        self._images = [self._load(i) for i in range(len(self))] if in_memory else None

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, i: int) -> np.ndarray:
        """Sample ``i`` as float32 (H, W) in [0, 1]."""
        return self._images[i] if self._images is not None else self._load(i)

    def covariates(self, i: int) -> dict[str, Any]:
        """Sample ``i``'s harmonized covariates as one dict, findings included (``{"findings": {...}}``)."""
        meta = self.meta[i]
        extra = {
            k: v for k, v in meta.items() if isinstance(v, dict) and k not in ("covariates", "uncertain")
        }
        return {**meta["covariates"], **extra}

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Images (B, 1, H, W) in [0, 1] and their covariate dicts."""
        images = torch.from_numpy(np.stack([self.image(i) for i in indices]))[:, None]
        return images, [self.covariates(i) for i in indices]

    def _load(self, i: int) -> np.ndarray:
        return self.reader.read(*self.positions[i])[1]


def batch_indices(step: int, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
    """Rank ``rank``'s dataset positions for training step ``step`` (see the module docstring)."""
    start = step * batch_size * world
    positions = range(start + rank, start + batch_size * world, world)
    out = []
    cache: dict[int, np.ndarray] = {}
    for p in positions:
        epoch, offset = divmod(p, n)
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(cache[epoch][offset]))
    return out


def oversampled(
    records: Sequence[Mapping[str, Any]], oversample: Mapping[str, int], taxonomy: Taxonomy
) -> np.ndarray:
    """Dataset positions, each repeated by the product of the factors of the values its record has.

    Keys of ``oversample`` are a binary label's column (``findings.cardiomegaly``: images with the label) or
    ``covariate=value`` (``view=LATERAL``); factors are whole numbers >= 1. No keys: ``0 .. n - 1``."""
    match = oversample_rules(oversample, taxonomy)
    repeats = np.ones(len(records), dtype=np.int64)
    for i, record in enumerate(records):
        flat = taxonomy.flatten(record)
        for column, value, factor in match:
            if flat.get(column) == value:
                repeats[i] *= factor
    return np.repeat(np.arange(len(records)), repeats)


def oversample_rules(oversample: Mapping[str, int], taxonomy: Taxonomy) -> list[tuple[str, Any, int]]:
    """(flat column, value, factor) per key of ``oversample``; a wrong key or factor raises, naming it."""
    return [(*_oversample_key(key, taxonomy), _oversample_factor(key, f)) for key, f in oversample.items()]


def _oversample_key(key: str, taxonomy: Taxonomy) -> tuple[str, Any]:
    column, equals, raw = key.partition("=")
    try:
        spec, label = taxonomy.column(column)
    except (TaxonomyError, KeyError) as err:
        raise ConfigError(
            f"oversample: {key!r} names no covariate or label ({err})", _OVERSAMPLE_HINT
        ) from None
    if label is not None and not equals:
        return column, 1
    if label is None and equals and spec.kind == "categorical":
        return column, spec.check(raw, where=f"oversample: {key}")
    raise ConfigError(
        f"oversample: {key!r} is neither a label column nor categorical=value", _OVERSAMPLE_HINT
    )


def _oversample_factor(key: str, factor: Any) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ConfigError(
            f"oversample: {key}: factor {factor!r} is not a whole number >= 1", _OVERSAMPLE_HINT
        )
    return factor


_OVERSAMPLE_HINT = "use e.g. oversample: {findings.cardiomegaly: 3, view=LATERAL: 2}"
