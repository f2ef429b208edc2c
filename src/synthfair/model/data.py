"""Training data: random access to a preprocessed cache's samples, and a deterministic batch order.

`CacheDataset` indexes the members of every shard tar once (offset and size of each ``.png`` / ``.json``),
then reads any sample directly, so training can draw batches in any order without streaming whole shards.
16-bit PNGs are decoded with numpy (webdataset's PIL decoders would reduce them to 8 bits).

`batch_indices(step, ...)` makes the order a pure function of (seed, step, rank): an endless sequence of
seeded permutations, the global batch of step ``s`` being positions ``[s * B * W, (s + 1) * B * W)``, of which
rank ``r`` takes every W-th. Resuming at step ``s`` therefore continues the same trajectory with nothing to
skip, and the data each rank sees does not depend on how fast the others run.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthfair.errors import SynthfairError
from synthfair.shards import FIX, ShardError, check_member, decode_png


@dataclass(frozen=True)
class Member:
    shard: Path
    png: tuple[int, int]  # (offset, size) of the PNG bytes in the tar
    json: tuple[int, int]


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
        members = [m for s in self.manifest["shards"] for m in _members(self.cache / "shards" / s["shard"])]
        self.keys: list[str] = []
        self.members: list[Member] = []
        self.meta: list[dict[str, Any]] = []
        for key, member in members:
            meta = json.loads(_read(member.shard, member.json))
            if split is None or meta["split"] == split:
                self.keys.append(key)
                self.members.append(member)
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
        member = self.members[i]
        return decode_png(_read(member.shard, member.png), f"{member.shard}: sample {i}")


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


def _members(shard: Path) -> list[tuple[str, Member]]:
    """(key, Member) per sample of one tar, in order."""
    parts: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(shard) as tar:
            for info in tar:
                check_member(info, str(shard))
                key, _, ext = info.name.partition(".")
                if ext in parts.get(key, {}):
                    raise ShardError(f"{shard}: member {info.name!r} appears twice", FIX)
                parts.setdefault(key, {})[ext] = (info.offset_data, info.size)
    except (tarfile.TarError, EOFError) as err:
        raise ShardError(f"{shard}: not a readable tar ({type(err).__name__})", FIX) from None
    return [
        (key, Member(shard, p["png"], p["json"])) for key, p in parts.items() if "png" in p and "json" in p
    ]


def _read(path: Path, span: tuple[int, int]) -> bytes:
    with open(path, "rb") as f:
        f.seek(span[0])
        return f.read(span[1])
