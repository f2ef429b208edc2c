"""Crash-safe file writing: a file is either absent or complete, never half-written; and file hashing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

HASH_BLOCK = 1 << 20  # bytes read at a time when hashing


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(fileobj)`` to a temporary file beside ``path``, then rename it into place."""
    staged_write(path, write).commit()


class Staged:
    """A file written under a temporary name beside ``path`` and not yet in place (`staged_write`).

    `commit` makes it durable (fsync) and renames it into place; `discard` removes it. Between the two, the
    writer can go on with other work while the data reaches the disk: a shard job commits one shard while it
    writes the next."""

    def __init__(self, path: Path, tmp: str):
        self.path, self.tmp = path, tmp

    def commit(self) -> None:
        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # on disk before the rename: a machine crash leaves the old file or the new
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def staged_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Staged:
    """Write through ``write(fileobj)`` to a temporary file beside ``path``, to be put in place by
    `Staged.commit`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would honour the umask
        with os.fdopen(fd, "wb") as f:
            write(f)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return Staged(path, tmp)


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_write's mkstemp names look like


def remove_temporaries(directory: str | Path, recursive: bool = False) -> int:
    """Delete the temporary files that a killed `atomic_write` left in ``directory`` (and below, with
    ``recursive``); the number removed. Only for directories with a single writer at a time (an index, a
    cache, a download): another writer's file in flight would be removed too."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    found = directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp")
    removed = 0
    for path in found:
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def honour_umask(directory: str | Path) -> None:
    """Give the files under ``directory`` the permissions a plain ``open()`` would (libraries that write
    through private temporary files, such as safetensors, leave them 0600)."""
    mode = 0o666 & ~_umask()
    for path in Path(directory).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def _umask() -> int:
    """The process umask: from /proc (no race with other threads creating files), else by setting it and
    restoring it at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def jsonable(data: Any) -> Any:
    """``data`` as plain JSON values: mappings (keys as text) and sequences recursively, numpy scalars as
    Python numbers, NaN and infinities as None."""
    if isinstance(data, dict):
        return {str(k): jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [jsonable(v) for v in data]
    if hasattr(data, "item") and getattr(data, "shape", None) == ():  # numpy scalars
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """``data`` as indented JSON (non-JSON values as text), written atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in `HASH_BLOCK`-sized pieces."""
    return file_digests(path, "sha256")["sha256"]


class HashingWriter:
    """A write-only file that writes and hashes behind the caller: a shard's digests without reading it back.

    Writes are gathered into blocks of ``block`` bytes, which one background thread writes to ``f`` and
    hashes (file writes and hashlib release the GIL on large buffers): the caller's thread only gathers, so
    hashing costs it less than the writes it no longer makes. `hexdigests` (or leaving the ``with`` block)
    writes what is left and waits; after it, ``f`` holds everything. An error of the background writes (a
    full disk) is raised by the next `write` or by `hexdigests`. Use it as a context manager so that the
    thread ends on errors too.
    """

    def __init__(self, f: BinaryIO, *algorithms: str, block: int = HASH_BLOCK):
        self.f = f
        self.block = block
        self._chunks: list[bytes] = []
        self._size = 0
        self._digests = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self._hexdigests: dict[str, str] | None = None

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        if self._hexdigests is not None:
            raise ValueError("write after hexdigests(): the digests are final")
        self._chunks.append(bytes(data))  # a copy only of a mutable buffer; bytes pass as they are
        self._size += len(data)
        if self._size >= self.block:
            self._submit()
        return len(data)

    def flush(self) -> None:
        """Nothing to do before `hexdigests`: the background thread writes whole blocks."""

    def hexdigests(self) -> dict[str, str]:
        """The digests of everything written, once it is all in ``f`` (no writes after it)."""
        if self._hexdigests is None:
            self._submit()
            self._stop()
            if self._error is not None:
                raise self._error
            self._hexdigests = {name: digest.hexdigest() for name, digest in self._digests.items()}
        return self._hexdigests

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _submit(self) -> None:
        if self._chunks:
            block = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            self._queue.put(block)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _drain(self) -> None:
        while (block := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking blocks, so the writer never waits on a full queue
            try:
                self.f.write(block)
                for digest in self._digests.values():
                    digest.update(block)
            except BaseException as err:  # raised in the caller's thread
                self._error = err


def open_location(location: str) -> IO[bytes]:
    """A local path, or any fsspec URL (``file://``, ``http(s)://``, ``s3://``, ``hf://``), opened for reading
    (seekable: remote files are read with range requests). The caller closes it."""
    if "://" not in location:
        return open(location, "rb")  # noqa: SIM115 - the caller closes it
    import fsspec  # lazy: local reads need no fsspec

    return fsspec.open(location, "rb").open()


def join_location(root: str | Path, relpath: str) -> str:
    """``relpath`` (POSIX) under ``root``, a directory or a URL prefix."""
    text = str(root)
    return f"{text.rstrip('/')}/{relpath}" if "://" in text else str(Path(text) / relpath)


def inside_root(relpath: str) -> bool:
    """Whether ``relpath``, read from untrusted metadata (a manifest, a shard index), names a file under its
    root: relative, no ``..``, no backslash, no ``:`` (no URL, no drive)."""
    parts = PurePosixPath(relpath).parts
    escapes = relpath.startswith("/") or ".." in parts or "\\" in relpath or ":" in relpath
    return bool(parts) and not escapes


def file_digests(path: str | Path, *algorithms: str) -> dict[str, str]:
    """Hex digests of a file by several ``hashlib`` algorithms, in one read."""
    digests = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}
