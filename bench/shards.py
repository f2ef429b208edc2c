"""The shard writer against a bare ``webdataset.TarWriter``, as generation and preprocessing use it.

Both write the same encoded samples (16-bit PNG + JSON, already encoded: only the writing is timed) into a
tar, alternating, ``--repeats`` times each, each run after an untimed ``sync`` (medians and their ratios):

1. bare: ``webdataset.TarWriter`` on an open file, nothing else (the data may still be in the page cache when
   it ends);
2. synthfair: `synthfair.shardjob.Committer`, as `preprocess` and `generate` write their shards: everything
   a resumable shard needs: the tar hashed (sha256) while it is written, under a temporary name, fsynced and
   renamed; the status Parquet; the stats JSON; each shard committed while the next one is written;
3. bare + fsync: the bare writer with each tar fsynced when closed: the durable peer. Once a job writes
   more than the disk absorbs while it runs, durability costs disk time, whoever writes.

    python bench/shards.py [--samples 2000] [--size 256] [--shards 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

import sidebyside  # bench/: this script's own folder
from synthfair import shardjob
from synthfair.images.png16 import encode_png16

STATUS = pa.schema([("key", pa.string()), ("status", pa.string())])


def encoded_samples(n: int, size: int, seed: int = 0) -> list[dict[str, bytes | str]]:
    """``n`` WebDataset samples: a smooth random 16-bit PNG (compresses like a radiograph) and a record."""
    rng = np.random.default_rng(seed)
    base = rng.random((size // 8, size // 8))
    out = []
    for i in range(n):
        image = np.kron(base, np.ones((8, 8))) * 0.8 + rng.random((size, size)) * 0.05
        record = {"key": f"k{i:07d}", "kind": "factual", "covariates": {"age": 50.0 + i % 40, "sex": "F"}}
        out.append({"__key__": f"k{i:07d}", "png": encode_png16(image), "json": json.dumps(record).encode()})
    return out


def bare(out: Path, shards: list[list[dict]]) -> None:
    import webdataset as wds

    (out / "shards").mkdir(parents=True)
    for i, samples in enumerate(shards):
        with open(out / "shards" / f"{i:06d}.tar", "wb") as f, wds.TarWriter(f, encoder=False) as tar:
            for sample in samples:
                tar.write(sample)


def bare_durable(out: Path, shards: list[list[dict]]) -> None:
    import webdataset as wds

    (out / "shards").mkdir(parents=True)
    for i, samples in enumerate(shards):
        with open(out / "shards" / f"{i:06d}.tar", "wb") as f:
            with wds.TarWriter(f, encoder=False) as tar:
                for sample in samples:
                    tar.write(sample)
            f.flush()
            os.fsync(f.fileno())


def synthfair_writer(out: Path, shards: list[list[dict]]) -> None:
    (out / "shards").mkdir(parents=True)
    with shardjob.Committer() as committer:
        for i, samples in enumerate(shards):
            pairs = (({"key": s["__key__"], "status": "ok"}, s) for s in samples)
            committer.write(out, i, pairs, STATUS, lambda w: {"sha256": w.sha256})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    samples = encoded_samples(args.samples, args.size)
    nbytes = sum(len(s["png"]) + len(s["json"]) for s in samples)
    per = -(-len(samples) // args.shards)
    shards = [samples[i : i + per] for i in range(0, len(samples), per)]
    print(
        f"{len(samples)} samples ({args.size}² 16-bit PNG + JSON, {nbytes / 1e6:.0f} MB) "
        f"in {len(shards)} shards"
    )
    runs = {
        "bare webdataset.TarWriter": bare,
        "synthfair shard job": synthfair_writer,
        "bare TarWriter + fsync": bare_durable,
    }
    with tempfile.TemporaryDirectory(prefix="bench-shards-", dir=".") as tmp:
        out = Path(tmp) / "out"
        times = sidebyside.alternate(
            {label: functools.partial(run, out, shards) for label, run in runs.items()},
            args.repeats,
            before=os.sync,  # untimed: no run pays for the write-back of the one before it
            after=lambda: shutil.rmtree(out),
        )
    sidebyside.report(
        times,
        "written",
        rate=lambda seconds: f"{len(samples) / seconds:8.0f} samples/s  {nbytes / 1e6 / seconds:6.0f} MB/s",
    )
    for peer in ("bare webdataset.TarWriter", "bare TarWriter + fsync"):
        speed = sidebyside.ratio(times, "synthfair shard job", peer)
        print(f"  synthfair's samples/s relative to the {peer}: {speed:.2f}x")


if __name__ == "__main__":
    main()
