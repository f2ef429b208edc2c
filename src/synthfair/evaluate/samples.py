"""Read a release's samples back from its shards: images (16-bit PNG -> float32 [0, 1]) and their records.

The evaluator reads shards only (never the generator's memory). 16-bit PNGs are decoded here, as in
`synthfair.model.data` (webdataset's PIL decoders would reduce them to 8 bits).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthfair.errors import SynthfairError
from synthfair.release import layout
from synthfair.shards import ShardReader


@dataclass(frozen=True)
class ReleaseSamples:
    keys: list[str]
    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    records: list[dict[str, Any]]  # synthfair.sample/1
    position: dict[str, int]  # key -> row

    def of_kind(self, kind: str) -> list[int]:
        return [i for i, r in enumerate(self.records) if r["kind"] == kind]

    def factual_of(self, i: int) -> int | None:
        """Row of sample ``i``'s factual sample (its family's ``_f``), if the release holds it."""
        parent = self.records[i]["parent"]
        return self.position.get(parent) if parent else i


def iter_shard(tar_path: str | Path) -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
    """(key, image, record) per sample of one shard, in order; every member checked (`synthfair.shards`)."""
    yield from ShardReader([(tar_path, None)])


def read_release(release: str | Path, on_sample=None) -> ReleaseSamples:
    """Every sample of a finished release (``_stats.json`` present for every shard of ``release.json``)."""
    reader = layout.shard_reader(release)
    keys, images, records = [], [], []
    for key, image, record in reader:
        keys.append(key)
        images.append(image)
        records.append(record)
        if on_sample:
            on_sample(1)
    if not keys:
        raise SynthfairError(f"{release} holds no samples", "check the plan and the shards' Parquet statuses")
    return ReleaseSamples(keys, np.stack(images), records, {k: i for i, k in enumerate(keys)})
