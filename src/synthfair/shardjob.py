"""One resumable shard job, shared by `synthfair.index.preprocess` (training caches) and `synthfair.generate`
(releases), in the manner of img2dataset: numbered shards, each finished or redone whole.

    OUT/<request>.json             what the job makes; written by the first run, checked by every later one
    OUT/shards/000000.tar          the samples: WebDataset members <key>.<ext>, fixed mtime, hashed as written
    OUT/shards/000000.parquet      one status row per planned sample, failures included (never dropped)
    OUT/shards/000000_stats.json   written last: its existence marks the shard as done

    claim(out / "release.json", request, "release")          # first run records, later runs must match
    with Committer() as committer:          # each shard committed while the next one is written
        for shard in (s for s in shards if not is_done(out, s)):
            committer.write(out, shard, samples(shard), STATUS_SCHEMA, summarize)
    # or one shard, committed before it returns: stats = write_shard(out, shard, samples, ...)

Each file is written under a temporary name, made durable and renamed (`synthfair.fileio.staged_write`), so a
killed run leaves only temporaries, which the next write of that shard removes before redoing it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthfair.errors import SynthfairError
from synthfair.fileio import HashingWriter, Staged, atomic_write, staged_write, write_json

TAR_MTIME = 0.0  # fixed member mtime: byte-identical tars


def shard_name(shard: int) -> str:
    return f"{shard:06d}"


def tar_path(out: str | Path, shard: int) -> Path:
    return Path(out) / "shards" / f"{shard_name(shard)}.tar"


def status_path(out: str | Path, shard: int) -> Path:
    return Path(out) / "shards" / f"{shard_name(shard)}.parquet"


def stats_path(out: str | Path, shard: int) -> Path:
    return Path(out) / "shards" / f"{shard_name(shard)}_stats.json"


def is_done(out: str | Path, shard: int) -> bool:
    return stats_path(out, shard).exists()


def claim(path: Path, request: dict[str, Any], what: str) -> None:
    """Record ``request`` at ``path`` (the first run), or refuse a request that differs from the recorded one
    in any of its keys, naming them: a job's output never mixes two requests."""
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in request if old.get(k) != request[k])
        if diff:
            raise SynthfairError(
                f"{path.parent} holds a {what} made with another {', '.join(diff)} ({path})",
                f"use a new output directory, or the settings recorded in {path.name}",
            )
        return
    write_json(path, request, sort_keys=True)


@dataclass(frozen=True)
class Written:
    """A shard's tar as written: its digests and size, and the status row of every planned sample."""

    shard: int
    path: Path
    sha256: str
    filesize: int
    statuses: list[dict[str, Any]]
    seconds: float


def write_shard(
    out: str | Path,
    shard: int,
    samples: Iterable[tuple[dict[str, Any], dict[str, Any] | None]],
    status_schema: pa.Schema,
    summarize: Callable[[Written], dict[str, Any]],
) -> dict[str, Any]:
    """Write shard ``shard`` of ``out`` from ``samples``, pairs (status row, WebDataset sample with
    ``__key__`` or None for a failed one), in order; then its status table; then ``summarize(written)`` as
    its ``_stats.json``, last. The tar is hashed as it is written, never read back. Returns the stats."""
    return _commit(*_write(out, shard, samples), status_schema, summarize)


class Committer:
    """Writes shards as `write_shard` does, but commits each one (fsync, rename, status table, stats) in a
    background thread while the next one is written: the wait for the disk overlaps the work. At most one
    shard waits for its commit; leaving the ``with`` block waits for the last one. A crash before a commit
    leaves only temporaries, which the next run removes before it redoes the shard.

        with Committer() as committer:
            for shard in todo:
                committer.write(out, shard, samples, STATUS_SCHEMA, summarize)
        committer.stats  # one dict per shard, in order
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shard-commit")
        self._pending: Future | None = None
        self.stats: list[dict[str, Any]] = []

    def write(
        self,
        out: str | Path,
        shard: int,
        samples: Iterable[tuple[dict[str, Any], dict[str, Any] | None]],
        status_schema: pa.Schema,
        summarize: Callable[[Written], dict[str, Any]],
    ) -> None:
        written = _write(out, shard, samples)
        try:
            self._wait()  # the previous shard's commit: its error stops the job here
        except BaseException:
            written[2].discard()
            raise
        self._pending = self._pool.submit(_commit, *written, status_schema, summarize)

    def __enter__(self) -> Committer:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self._wait()
        finally:
            self._pool.shutdown(wait=True)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.stats.append(pending.result())


def _write(out, shard, samples) -> tuple[Path, int, Staged, str, list[dict[str, Any]], float]:
    """The shard's tar under a temporary name, hashed as written, and the status rows."""
    import webdataset as wds  # lazy: worker processes import the modules that use this one

    start = time.time()
    out = Path(out)
    _remove_leftovers(out, shard)
    statuses: list[dict[str, Any]] = []
    digests: dict[str, str] = {}

    def write(f) -> None:
        with HashingWriter(f, "sha256") as hashed:
            with wds.TarWriter(hashed, mtime=TAR_MTIME, encoder=False) as writer:
                for status, sample in samples:
                    if sample is not None:
                        writer.write(sample)
                    statuses.append(status)
            digests.update(hashed.hexdigests())

    staged = staged_write(tar_path(out, shard), write)
    return out, shard, staged, digests["sha256"], statuses, start


def _commit(out, shard, staged, sha256, statuses, start, status_schema, summarize) -> dict[str, Any]:
    """The tar in place (durable first), then its status table, then its stats, last."""
    staged.commit()
    table = pa.Table.from_pylist(statuses, schema=status_schema)
    atomic_write(status_path(out, shard), lambda f: pq.write_table(table, f))
    tar = tar_path(out, shard)
    stats = summarize(Written(shard, tar, sha256, tar.stat().st_size, statuses, time.time() - start))
    write_json(stats_path(out, shard), stats)
    return stats


def _remove_leftovers(out: Path, shard: int) -> None:
    """A killed run's temporaries and unfinished files of ``shard`` (its stats were never written)."""
    for leftover in (out / "shards").glob(f".{shard_name(shard)}*.tmp"):
        leftover.unlink()
    for partial in (tar_path(out, shard), status_path(out, shard)):
        partial.unlink(missing_ok=True)
