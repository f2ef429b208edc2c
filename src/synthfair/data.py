"""Stream a subset's samples from a release's shards (local or remote) as a WebDataset pipeline.

    from synthfair.data import subset_pipeline
    for sample in subset_pipeline("subset/", split="train"):      # shards where subset.json says
        sample["image"]          # torch.float32 (1, H, W) in [0, 1]
        sample["target"]         # the label to train on (label noise applied), int
        sample["target_true"]    # the true label; sample["target_flipped"] says whether they differ
        sample["group"], sample["json"]   # the sample's group in the spec, its full synthfair.sample/1 record

    loader = torch.utils.data.DataLoader(subset_pipeline("subset/", "train", shuffle=1000), batch_size=64,
                                         num_workers=2, collate_fn=collate)  # shards split between workers
    batch = next(iter(loader))   # image (B, 1, H, W), target / target_true (B,), key, group, json: lists

Only the shards that hold the split's samples are opened (in order; ``release=`` points at another copy,
e.g. a `synthfair download` directory or a URL prefix); members of other samples are skipped without being
decoded. Shards are opened through fsspec, so paths, file://, http(s)://, s3:// and hf:// all work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import webdataset as wds

from synthfair.errors import SynthfairError
from synthfair.fileio import join_location, open_location
from synthfair.release import layout
from synthfair.sampling.sampler import SUBSET_FILE, SUBSET_META
from synthfair.shards import (
    FIX,
    ShardError,
    ShardReader,
    decode_png,
    decode_record,
    sample_parts,
    shard_samples,
)

LABEL_COLUMNS = ("target", "target_true", "target_flipped", "group", "split")


def subset_pipeline(
    subset: str | Path,
    split: str | None = "train",
    release: str | Path | None = None,
    shuffle: int = 0,
    seed: int = 0,
) -> wds.DataPipeline:
    """The samples of ``subset`` (a `synthfair sample` output directory) in ``split`` (None: every split)."""
    meta, table = read_subset(subset)
    if split is not None:
        if split not in set(table["split"]):
            raise SynthfairError(
                f"subset {subset} has no split {split!r}", f"its splits: {sorted(set(table['split']))}"
            )
        table = table[table["split"] == split]
    root = str(release if release is not None else meta["release"])
    if root.startswith("<"):
        raise SynthfairError(
            f"subset {subset} does not say where its release is ({root})",
            "pass release= (a release directory or URL prefix)",
        )
    expected = _expected(root, table)
    urls = list(expected)
    labels = {row["key"]: {c: row[c] for c in LABEL_COLUMNS if c in row} for row in table.to_dict("records")}
    stages: list[Any] = [wds.SimpleShardList(urls)]
    if shuffle:  # shard order and a sample buffer, reseeded every epoch (seed + epoch): deterministic
        stages.append(wds.detshuffle(len(urls), initial=len(urls), seed=seed))
    stages += [wds.split_by_node, wds.split_by_worker, _open]
    stages += [_decoded(expected), _attach(labels)]
    if shuffle:
        stages.append(wds.detshuffle(shuffle, initial=min(shuffle, 100), seed=seed))
    return wds.DataPipeline(*stages)


def release_images(release: str | Path, keys: pd.DataFrame) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """key -> (image (H, W) float32 in [0, 1], its record) for ``keys`` (a frame with ``key`` and ``shard``
    columns, e.g. rows of samples.parquet or subset.parquet), read by random access (`ShardReader`) from only
    the shards that hold them. An expected sample that its shard lacks is an error, never a silent gap."""
    expected = _expected(str(release), keys)
    reader = ShardReader([(url, None) for url in expected])
    out = {}
    for shard, (url, wanted) in enumerate(expected.items()):
        missing = wanted - set(reader.keys(shard))
        if missing:
            raise ShardError(
                f"{url}: {len(missing)} expected samples are missing (e.g. {min(missing)!r})",
                "check that the release and the subset or samples table belong together; " + FIX,
            )
        for key in sorted(wanted):
            _, image, record = reader.sample(shard, key)
            out[key] = (image, record)
    return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of pipeline samples: images stacked, labels as tensors, keys, groups and records as lists."""
    batch: dict[str, Any] = {"image": torch.stack([s["image"] for s in samples])}
    for name in ("target", "target_true", "target_flipped"):
        if name in samples[0]:
            batch[name] = torch.tensor([s[name] for s in samples])
    for name in ("__key__", "group", "split", "json"):
        batch[name] = [s.get(name) for s in samples]
    return batch


def read_subset(subset: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    subset = Path(subset)
    meta_path, table_path = subset / SUBSET_META, subset / SUBSET_FILE
    if not meta_path.is_file() or not table_path.is_file():
        raise SynthfairError(
            f"{subset} is not a subset (needs {SUBSET_META} and {SUBSET_FILE})",
            "make one with `synthfair sample RELEASE --spec bias.yaml --out DIR`",
        )
    return json.loads(meta_path.read_text()), pd.read_parquet(table_path)


def _shard_url(root: str, shard: int) -> str:
    return join_location(root, layout.tar_path(Path("."), shard).as_posix())


def _open(urls: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Open each shard (a local path or an fsspec URL)."""
    for item in urls:
        url = item["url"]
        try:
            stream = open_location(url)
        except OSError as err:
            raise SynthfairError(
                f"cannot open shard {url}: {err}",
                "download the subset's shards (`synthfair download URL --subset DIR`), or pass release= "
                "with where they are",
            ) from err
        try:
            yield {**item, "stream": stream}
        finally:
            stream.close()


def _expected(root: str, rows: pd.DataFrame) -> dict[str, set[str]]:
    """Shard URL -> the keys ``rows`` (``key`` and ``shard`` columns) expect in it, in shard order."""
    out: dict[str, set[str]] = {}
    for shard, group in sorted(rows.groupby("shard")["key"], key=lambda item: int(item[0])):
        out[_shard_url(root, int(shard))] = set(group)
    return out


def _decoded(expected: dict[str, set[str]]):
    """The stage from open shards to the expected samples: only their members are read out (every member
    checked, `synthfair.shards`), decoded into {__key__, __url__, pixels (H, W) float32, json (the record)}.
    An expected sample that a shard lacks is an error naming the shard and the key, never a silent gap."""

    def stage(data):
        for item in data:
            url, keys = item["url"], expected[item["url"]]
            found = set()
            for key, parts in shard_samples(item["stream"], url, wanted=keys.__contains__):
                where = f"{url}: sample {key!r}"
                parts = sample_parts(key, parts, url)
                found.add(key)
                pixels, record = decode_png(parts["png"], where), decode_record(parts["json"], where)
                yield {"__key__": key, "__url__": url, "pixels": pixels, "json": record}
            if found != keys:
                raise ShardError(
                    f"{url}: {len(keys - found)} expected samples are missing (e.g. {min(keys - found)!r})",
                    "check that the release and the subset or samples table belong together; " + FIX,
                )

    return stage


def _attach(labels: dict[str, dict[str, Any]]):
    """The pipeline's sample: the image as a (1, H, W) tensor, the record, and the subset's label columns."""

    def stage(data):
        for sample in data:
            out = {
                "__key__": sample["__key__"],
                "__url__": sample["__url__"],
                "image": torch.from_numpy(sample["pixels"])[None],
                "json": sample["json"],
            }
            for name, value in labels[sample["__key__"]].items():
                out[name] = value.item() if isinstance(value, np.generic) else value
            yield out

    return stage
