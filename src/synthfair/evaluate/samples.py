"""Read a release's samples back from its shards: images (16-bit PNG -> float32 [0, 1]) and their records.

The evaluator reads shards only (never the generator's memory). 16-bit PNGs are decoded here, as in
`synthfair.model.data` (webdataset's PIL decoders would reduce them to 8 bits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthfair.errors import SynthfairError
from synthfair.release import layout
from synthfair.shards import decode_png, decode_record, sample_parts, shard_samples


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
    shard = str(tar_path)
    with open(tar_path, "rb") as stream:
        for key, parts in shard_samples(stream, shard):
            parts = sample_parts(key, parts, shard)
            where = f"{shard}: sample {key!r}"
            yield key, decode_png(parts["png"], where), decode_record(parts["json"], where)


def read_release(release: str | Path, on_sample=None) -> ReleaseSamples:
    """Every sample of a finished release (``_stats.json`` present for every shard of ``release.json``)."""
    release = Path(release)
    request = release / layout.REQUEST_FILE
    if not request.is_file():
        raise SynthfairError(
            f"{release} is not a release (no {layout.REQUEST_FILE})", "run `synthfair generate`"
        )
    n = json.loads(request.read_text())["shards"]
    missing = [s for s in range(n) if not layout.stats_path(release, s).exists()]
    if missing:
        raise SynthfairError(
            f"{release} has {len(missing)} unfinished shards (first: {missing[0]})",
            "finish it with `synthfair generate` (same arguments) before evaluating",
        )
    keys, images, records = [], [], []
    for shard in range(n):
        for key, image, record in iter_shard(layout.tar_path(release, shard)):
            keys.append(key)
            images.append(image)
            records.append(record)
            if on_sample:
                on_sample(1)
    if not keys:
        raise SynthfairError(f"{release} holds no samples", "check the plan and the shards' Parquet statuses")
    return ReleaseSamples(keys, np.stack(images), records, {k: i for i, k in enumerate(keys)})
