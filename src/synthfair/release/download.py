"""Download a released dataset: metadata and all shards, or only those a subset needs; resumable, verified.

The release is read through fsspec, so ``URL`` may be a local path, ``file://``, ``http(s)://``, ``s3://``
(with s3fs) or ``hf://datasets/ORG/NAME`` (huggingface_hub). ``manifest.json`` is the root of trust: it gives
each shard's size and sha256, and ``SHA256SUMS`` (whose own entry for ``manifest.json`` must match) gives the
metadata files' digests.

1. Read ``URL/manifest.json``; pick the shards (all, or those listed by the subset).
2. Fetch ``SHA256SUMS``, then the other metadata files and the shards in a thread pool. Each file is written
   to ``DEST/<path>.part``; an existing ``.part`` is continued (a byte-range read) when the file's size is
   known, and started over when the source cannot seek (e.g. an HTTP server that ignores ``Range``).
3. Check the ``.part``'s size and sha256; rename it into place only if they match. A mismatch is fetched once
   more from scratch; if it is still wrong it is deleted and reported in `DownloadResult.failed`.
4. Write ``DEST/manifest.json`` last. A final file is trusted on later runs when ``DEST/manifest.json`` is
   byte-identical to the remote one (every file was verified before it was renamed); otherwise, or with
   ``verify_existing``, present files are hashed and bad ones fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import HASH_BLOCK, atomic_write, remove_temporaries, sha256_file
from synthfair.release.layout import CARD_FILE, MANIFEST_FILE, SAMPLES_FILE, SHARD_INDEX_FILE, SUMS_FILE
from synthfair.release.source import (
    Source,
    check_known,
    open_source,
    parse_sums,
    read_manifest,
    read_subset,
    shard_number,
)

logger = logging.getLogger(__name__)

METADATA = (MANIFEST_FILE, SUMS_FILE, SAMPLES_FILE, SHARD_INDEX_FILE, CARD_FILE)
MAX_SUMS_BYTES = 64 << 20  # a SHA256SUMS of a million files is ~80 MB: beyond any synthfair release
CHUNK = 8 << 20  # bytes per read from the source (and per HTTP range request when resuming)
MIN_CHUNK = 64 << 10  # the smallest range request, after connections dropped mid-read
STREAM_READ = 1 << 20  # bytes per read of a streamed (non-range) transfer: kept if the connection drops


@dataclass(frozen=True)
class PlannedFile:
    """A file of the release and what ``DEST`` already holds of it."""

    path: str  # relative to the release root, and to DEST
    size: int | None  # bytes (from the manifest); None for metadata files other than manifest.json
    sha256: str | None  # expected digest (manifest, or SHA256SUMS once fetched); None: nothing to check
    state: str = "missing"  # "present" (final file), "partial" (a .part to continue) or "missing"
    have: int = 0  # bytes already in DEST (final file or .part)

    @property
    def remaining(self) -> int | None:
        """Bytes left to fetch (None: unknown size)."""
        if self.state == "present":
            return 0
        return None if self.size is None else self.size - self.have


@dataclass(frozen=True)
class DownloadPlan:
    """What a download of ``url`` into ``dest`` involves; ``plan_download`` reads only the manifest."""

    source: Source
    dest: Path
    manifest: dict = field(repr=False)
    manifest_bytes: bytes = field(repr=False)
    shards: tuple[int, ...]  # shard numbers to fetch
    files: tuple[PlannedFile, ...]  # metadata files first, then shards
    trusted: bool  # DEST/manifest.json equals the remote one: present files were verified against it

    @property
    def to_fetch(self) -> tuple[PlannedFile, ...]:
        return tuple(f for f in self.files if f.state != "present")

    @property
    def bytes_to_fetch(self) -> int:
        """Bytes left to fetch, for the files whose size is known (all but some small metadata files)."""
        return sum(f.remaining or 0 for f in self.to_fetch)

    @property
    def unknown_sizes(self) -> int:
        return sum(f.remaining is None for f in self.to_fetch)


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str
    expected_sha256: str | None = None
    got_sha256: str | None = None


@dataclass(frozen=True)
class DownloadResult:
    url: str
    dest: Path
    dry_run: bool
    fetched: tuple[str, ...]  # files written by this run
    bytes_fetched: int  # bytes read from the source (a re-fetch counts twice)
    skipped: tuple[str, ...]  # already present (and trusted or verified)
    absent: tuple[str, ...]  # optional metadata files the release does not have
    failed: tuple[FailedFile, ...]
    planned: tuple[PlannedFile, ...]  # what the run set out to fetch (for a dry run: would fetch)
    plan: DownloadPlan = field(repr=False)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_for_failures(self) -> None:
        """A `SynthfairError` listing the failed files, if any."""
        if self.failed:
            listed = "; ".join(f"{f.path}: {f.reason}" for f in self.failed)
            raise SynthfairError(
                f"{len(self.failed)} file(s) of {self.url} could not be downloaded: {listed}",
                "re-run the same `synthfair download` command (it resumes and skips verified files); if a "
                "checksum keeps failing, the copy at the source is damaged: tell the release's maintainers",
            )


@dataclass(frozen=True)
class _Outcome:
    path: str
    status: str  # "fetched", "skipped", "absent" or "failed"
    bytes: int = 0
    failure: FailedFile | None = None


# --- planning -----------------------------------------------------------------------------------------------


def plan_download(url: str, dest: str | Path, subset: str | Path | None = None) -> DownloadPlan:
    """Read ``URL/manifest.json`` and list the files to fetch into ``dest`` (nothing is written)."""
    source = open_source(url)
    manifest_bytes, manifest = read_manifest(source)
    dest = Path(dest)
    numbers = {shard_number(s["url"]): s for s in manifest["shards"]}
    shards = sorted(numbers) if subset is None else check_known(read_subset(subset), numbers, subset)
    local_manifest = dest / MANIFEST_FILE
    trusted = local_manifest.is_file() and local_manifest.read_bytes() == manifest_bytes
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    manifest_file = PlannedFile(MANIFEST_FILE, len(manifest_bytes), digest)
    files = [replace(manifest_file, state="present", have=len(manifest_bytes)) if trusted else manifest_file]
    files += [_local_state(dest, PlannedFile(name, None, None)) for name in METADATA[1:]]
    for n in shards:
        entry = numbers[n]
        files.append(_local_state(dest, PlannedFile(entry["url"], entry["filesize"], entry["sha256"])))
    return DownloadPlan(source, dest, manifest, manifest_bytes, tuple(shards), tuple(files), trusted)


def _local_state(dest: Path, item: PlannedFile) -> PlannedFile:
    final, part = dest / item.path, _part(dest / item.path)
    if final.is_file() and item.size in (None, final.stat().st_size):
        return replace(item, state="present", have=final.stat().st_size)
    if part.is_file() and item.size is not None and part.stat().st_size <= item.size:
        return replace(item, state="partial", have=part.stat().st_size)
    return item


def _part(final: Path) -> Path:
    return final.with_name(final.name + ".part")


# --- downloading --------------------------------------------------------------------------------------------


def download(
    url: str | Path,
    dest: str | Path,
    subset: str | Path | None = None,
    workers: int = 4,
    dry_run: bool = False,
    verify_existing: bool = False,
    on_bytes: Callable[[int], object] | None = None,
) -> DownloadResult:
    """Fetch the release at ``url`` (all shards, or those ``subset`` needs) into ``dest``; see the module doc.

    ``on_bytes(n)`` is called (under a lock) as bytes arrive; without it, a progress bar is shown when stderr
    is a terminal. Failed files are listed in the result (``.raise_for_failures()`` turns them into an error).
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}", "use e.g. --workers 4")
    start = time.monotonic()
    plan = plan_download(url, dest, subset)
    if dry_run:
        return _result(plan, [], True, start)
    plan.dest.mkdir(parents=True, exist_ok=True)
    remove_temporaries(plan.dest, recursive=True)  # a killed run's half-written metadata (.part files stay)
    files = {f.path: f for f in plan.files}
    # the manifest is already read
    total = sum(f.remaining or 0 for f in plan.to_fetch if f.path != MANIFEST_FILE)
    with _progress(total, on_bytes) as tick:
        fetch = _Fetcher(plan.source, plan.dest, plan.trusted, verify_existing, tick)
        sums_outcome, sums = _read_sums(plan, files[SUMS_FILE])
        tick(sums_outcome.bytes)
        outcomes = [sums_outcome]
        jobs = [
            replace(f, sha256=f.sha256 or sums.get(f.path)) for f in plan.files if f.path not in METADATA[:2]
        ]
        if sums_outcome.status != "absent":  # metadata files are fetched only if SHA256SUMS vouches for them
            reason = f"not fetched: {SUMS_FILE} does not list it, so it cannot be verified"
            if sums_outcome.status == "failed":
                reason = f"not fetched: {SUMS_FILE}, which holds its sha256, could not be fetched"
            outcomes += [
                _Outcome(f.path, "failed", 0, FailedFile(f.path, reason))
                for f in jobs
                if f.size is None and f.sha256 is None
            ]
            jobs = [f for f in jobs if f.size is not None or f.sha256 is not None]
        with ThreadPoolExecutor(workers, thread_name_prefix="download") as pool:
            try:
                outcomes += list(pool.map(fetch, jobs))
            except BaseException:  # Ctrl-C: workers stop at their next block and keep their .part
                fetch.stop.set()
                pool.shutdown(cancel_futures=True)
                raise
    if not any(o.status == "failed" for o in outcomes):  # a run that failed somewhere commits nothing
        if sums:  # the sums of what DEST holds: `sha256sum -c SHA256SUMS` passes there, without flags
            held = [(p, d) for p, d in sums.items() if (plan.dest / p).is_file() or p == MANIFEST_FILE]
            text = "".join(f"{d}  {p}\n" for p, d in held)
            if not (plan.dest / SUMS_FILE).is_file() or (plan.dest / SUMS_FILE).read_text() != text:
                atomic_write(plan.dest / SUMS_FILE, lambda f: f.write(text.encode()))
        if not plan.trusted:  # last: from now on, present files are trusted
            atomic_write(plan.dest / MANIFEST_FILE, lambda f: f.write(plan.manifest_bytes))
            outcomes.append(_Outcome(MANIFEST_FILE, "fetched", len(plan.manifest_bytes)))
    return _result(plan, outcomes, False, start)


def _read_sums(plan: DownloadPlan, item: PlannedFile) -> tuple[_Outcome, dict[str, str]]:
    """(outcome, ``SHA256SUMS`` as {path: sha256}): DEST's own copy when DEST trusts the manifest, else the
    release's, read into memory (bounded) and checked: every line well-formed, and its line for
    manifest.json matching the manifest read. Nothing in DEST changes here."""
    local = plan.dest / SUMS_FILE
    if plan.trusted and item.state == "present":
        return _Outcome(SUMS_FILE, "skipped"), parse_sums(local.read_text(), str(local))
    where = f"{plan.source.url}/{SUMS_FILE}"
    try:
        with plan.source.fs.open(plan.source.path(SUMS_FILE), "rb") as f:
            data = f.read(MAX_SUMS_BYTES + 1)
    except FileNotFoundError:
        logger.warning("%s has no %s: its metadata files cannot be verified", plan.source.url, SUMS_FILE)
        return _Outcome(SUMS_FILE, "absent"), {}
    except Exception as err:  # network errors of any backend
        return _Outcome(SUMS_FILE, "failed", 0, FailedFile(SUMS_FILE, f"{type(err).__name__}: {err}")), {}
    if len(data) > MAX_SUMS_BYTES:
        hint = "check the URL: it should be a release written by `synthfair finalize`"
        raise SynthfairError(f"{where} is larger than {MAX_SUMS_BYTES} bytes: not a checksum list", hint)
    try:
        sums = parse_sums(data.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise SynthfairError(f"{where} is not UTF-8 text", "the release's checksum list is damaged") from None
    expected = hashlib.sha256(plan.manifest_bytes).hexdigest()
    if sums.get(MANIFEST_FILE, expected) != expected:
        raise SynthfairError(
            f"{where} lists {MANIFEST_FILE} with sha256 {sums[MANIFEST_FILE]}, but the manifest read "
            f"has {expected}: the two files are from different versions of the release",
            "the release may be being updated: re-run `synthfair download` in a few minutes",
        )
    return _Outcome(SUMS_FILE, "fetched", len(data)), sums


class _Fetcher:
    """Fetch one file into DEST: skip it if present and good, else resume or start a .part, verify, rename."""

    def __init__(
        self, source: Source, dest: Path, trusted: bool, verify: bool, tick: Callable[[int], object]
    ):
        self.source, self.dest, self.trusted, self.verify, self.tick = source, dest, trusted, verify, tick
        self.stop = threading.Event()  # set: stop transfers at the next block

    def __call__(self, item: PlannedFile) -> _Outcome:
        final = self.dest / item.path
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_file():
            if self._keep(final, item):
                return _Outcome(item.path, "skipped")
            if item.sha256 is None:
                logger.info("%s: nothing vouches for the copy in %s; fetching it again", item.path, self.dest)
            else:
                logger.warning(
                    "%s: the copy in %s does not match the release; fetching it again", item.path, self.dest
                )
        try:
            return self._fetch(item, final)
        except FileNotFoundError:
            if item.path in METADATA:
                return _Outcome(item.path, "absent")
            return _Outcome(item.path, "failed", 0, FailedFile(item.path, f"not found at {self.source.url}"))
        except Exception as err:  # network errors of any backend: recorded; the .part is kept for a re-run
            logger.debug("%s failed", item.path, exc_info=True)
            return _Outcome(item.path, "failed", 0, FailedFile(item.path, f"{type(err).__name__}: {err}"))

    def _fetch(self, item: PlannedFile, final: Path) -> _Outcome:
        part, fetched, fresh, had, block = _part(final), 0, 0, -1, CHUNK
        resume = item.size is not None
        while True:
            try:
                n, digest = self._transfer(item, part, resume, block)
            except (InterruptedError, FileNotFoundError):
                raise
            except Exception:  # a dropped connection: go on from what arrived, in smaller reads if none did
                size = part.stat().st_size if part.is_file() else 0
                if not resume or (size <= had and block <= MIN_CHUNK):
                    raise
                block = block if size > had else max(block // 4, MIN_CHUNK)
                had = size
                continue
            fetched += n
            size = part.stat().st_size
            if (item.size is None or size == item.size) and (item.sha256 is None or digest == item.sha256):
                os.replace(part, final)  # verified: only now does the file get its name
                return _Outcome(item.path, "fetched", fetched)
            if item.size is not None and size < item.size:  # the source stopped early: keep what came
                if size <= had:  # no progress (or a source that cannot resume and stops early)
                    reason = f"the source stopped at byte {size} of {item.size}; those are kept: re-run"
                    return _Outcome(item.path, "failed", fetched, FailedFile(item.path, reason))
                had = size
                continue  # progress: ask for the rest
            logger.warning(
                "%s: got %d bytes with sha256 %s, expected %s bytes with sha256 %s",
                item.path,
                size,
                digest,
                item.size,
                item.sha256,
            )
            part.unlink()
            fresh += 1
            resume = False
            if fresh == 2:  # wrong twice from the start: the source's copy is damaged
                break
        reason = (
            f"checksum mismatch twice: expected sha256 {item.sha256} ({item.size} bytes), "
            f"got {digest} ({size} bytes)"
        )
        return _Outcome(item.path, "failed", fetched, FailedFile(item.path, reason, item.sha256, digest))

    def _keep(self, final: Path, item: PlannedFile) -> bool:
        if item.size is not None and final.stat().st_size != item.size:
            return False
        if self.trusted and not self.verify:
            return True  # renamed into place only after it was verified against this same manifest
        if item.sha256 is None:
            return self.trusted  # nothing to check it against: keep it only if this manifest vouches for it
        return sha256_file(final) == item.sha256

    def _transfer(self, item: PlannedFile, part: Path, resume: bool, block: int = 0) -> tuple[int, str]:
        """Fill ``part`` from the source; (bytes read from the source, sha256 of the whole part)."""
        offset = part.stat().st_size if resume and part.is_file() else 0
        if item.size is not None and offset > item.size:
            logger.info(
                "%s: the .part is larger than the file (%d > %d bytes); starting over",
                item.path,
                offset,
                item.size,
            )
            offset = 0
        if offset:
            try:
                return self._copy(item, part, offset, block or CHUNK)
            except ValueError as err:  # fsspec: "The HTTP server doesn't appear to support range requests"
                logger.info("%s: cannot resume at byte %d (%s); starting over", item.path, offset, err)
        return self._copy(item, part, 0, block or CHUNK)

    def _copy(self, item: PlannedFile, part: Path, offset: int, size: int) -> tuple[int, str]:
        """Read the source from ``offset`` in reads of ``size`` bytes (each its own range request when
        resuming; what arrived is flushed after every read, so a dropped connection keeps it)."""
        digest, fetched = hashlib.sha256(), 0
        remote_cm = _open_remote(self.source, item, offset, size)
        with remote_cm as remote, open(part, "r+b" if offset else "wb") as out:
            _hash_prefix(out, digest, offset)
            while block := remote.read(min(size, STREAM_READ) if offset == 0 and size >= CHUNK else size):
                if self.stop.is_set():  # interrupted: keep the .part as it is, for the next run
                    raise InterruptedError(f"{item.path}: stopped")
                out.write(block)
                digest.update(block)
                fetched += len(block)
                self.tick(len(block))
                out.flush()
                if item.size is not None and offset + fetched > item.size:
                    break  # more than the manifest says: stop here, verification will reject it
            out.flush()
            os.fsync(out.fileno())
        return fetched, digest.hexdigest()


def _hash_prefix(f, digest, nbytes: int) -> None:
    """Feed the first ``nbytes`` of ``f`` to ``digest``; leave ``f`` positioned (and truncated) there."""
    left = nbytes
    while left > 0 and (block := f.read(min(HASH_BLOCK, left))):
        digest.update(block)
        left -= len(block)
    f.seek(nbytes)
    f.truncate()


def _open_remote(source: Source, item: PlannedFile, offset: int, block: int):
    """A readable file at ``offset``: one streamed GET from the start, or range reads of ``block`` bytes."""
    path = source.path(item.path)
    size = {"size": item.size} if item.size is not None else {}  # known size: no HEAD request over HTTP
    if offset == 0 and block >= CHUNK:  # after a dropped read (smaller blocks): range requests from byte 0
        return source.fs.open(path, "rb", **({"block_size": 0} if source.streams else {}), **size)
    remote = source.fs.open(path, "rb", block_size=block or CHUNK, cache_type="none", **size)
    remote.seek(offset)
    return remote


@contextmanager
def _progress(total: int, on_bytes: Callable[[int], object] | None) -> Iterator[Callable[[int], object]]:
    """A thread-safe ``tick(n)``: ``on_bytes``, else a tqdm bar in bytes on a terminal, else nothing."""
    lock = threading.Lock()
    if on_bytes is None and sys.stderr.isatty():
        from tqdm.auto import tqdm

        with tqdm(total=total, desc="download", unit="B", unit_scale=True, dynamic_ncols=True) as bar:
            yield lambda n: _locked(lock, bar.update, n)
        return
    callback = on_bytes or (lambda n: None)
    yield lambda n: _locked(lock, callback, n)


def _locked(lock: threading.Lock, function: Callable[[int], object], n: int) -> None:
    with lock:
        function(n)


def _result(plan: DownloadPlan, outcomes: list[_Outcome], dry_run: bool, start: float) -> DownloadResult:
    def paths(status: str) -> tuple[str, ...]:
        return tuple(o.path for o in outcomes if o.status == status)

    return DownloadResult(
        url=plan.source.url,
        dest=plan.dest,
        dry_run=dry_run,
        fetched=paths("fetched"),
        bytes_fetched=sum(o.bytes for o in outcomes),
        skipped=paths("skipped") + ((MANIFEST_FILE,) if plan.trusted and not dry_run else ()),
        absent=paths("absent"),
        failed=tuple(o.failure for o in outcomes if o.failure is not None),
        planned=plan.to_fetch,
        plan=plan,
        seconds=time.monotonic() - start,
    )
