"""Reading WebDataset shards that may come from anyone: every member checked, every decode bounded.

A downloaded release is untrusted input. Its tar members must be regular files with a plain ``key.ext``
name, each once, of bounded size; its PNGs must be images of bounded size and its JSON records JSON objects.
Anything else is a `ShardError` naming the shard, the member and the fix, never a skipped sample or a raw
``AttributeError``/``KeyError``/``UnidentifiedImageError`` from deep inside a library.

    for key, parts in shard_samples(stream, "shards/000000.tar"):   # parts: {"png": bytes, "json": bytes}
        image = decode_png(parts["png"], where)                      # float32 (H, W) in [0, 1]
        record = decode_record(parts["json"], where)
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

from synthfair.errors import SynthfairError
from synthfair.images.decoded import ImageReadError
from synthfair.images.png16 import decode_png16

MAX_MEMBER_BYTES = 256 << 20  # a 4096² 16-bit PNG is at most ~34 MB; a record a few kB
FIX = "re-download the shard (`synthfair download` verifies sha256), or regenerate it"


class ShardError(SynthfairError):
    """A shard member that is not what a release holds (its shard and member named)."""


def check_member(info: tarfile.TarInfo, shard: str) -> None:
    """Raise `ShardError` unless ``info`` is a regular file named ``key.ext`` (no directory part) of bounded
    size: links, directories, FIFOs and devices are refused, not skipped."""
    where = f"{shard}: member {info.name[:200]!r}"
    if not info.isreg():
        kind = _kind(info)
        raise ShardError(f"{where} is a {kind}, not a file: a release holds files only", FIX)
    key, dot, ext = info.name.partition(".")
    if not dot or not key or not ext or "/" in info.name or "\\" in info.name:
        raise ShardError(f"{where} is not named key.ext (no folders)", FIX)
    if info.size > MAX_MEMBER_BYTES:
        raise ShardError(f"{where} is {info.size} bytes, more than a sample's file ({MAX_MEMBER_BYTES})", FIX)


def shard_samples(
    stream: IO[bytes], shard: str, wanted: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample of a tar ``stream`` in order (a sample's members are consecutive, as
    WebDataset writes them), members checked (`check_member`); only the members of keys ``wanted`` accepts
    are read. A member seen twice, or a sample split by another, is an error."""
    seen: set[str] = set()
    key, parts = None, {}
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
        for info in tar:
            check_member(info, shard)
            name, _, ext = info.name.partition(".")
            if name != key:
                if key is not None and parts:
                    yield key, parts
                if name in seen:
                    raise ShardError(f"{shard}: member {info.name!r} is apart from its sample's others", FIX)
                seen.add(name)
                key, parts = name, {}
            if ext in parts:
                raise ShardError(f"{shard}: member {info.name!r} appears twice", FIX)
            if wanted is None or wanted(name):
                file = tar.extractfile(info)
                parts[ext] = file.read() if file is not None else b""
            tar.members = []  # streaming: keep no member list
    except (tarfile.TarError, EOFError, OSError) as err:
        detail = f"{type(err).__name__}: {str(err)[:200]}"
        raise ShardError(f"{shard}: not a readable tar ({detail})", FIX) from None
    if key is not None and parts:
        yield key, parts


def decode_png(data: bytes, where: str) -> np.ndarray:
    """A sample's PNG as float32 (H, W) in [0, 1] (`synthfair.images.png16.decode_png16`: size checked
    from the header first); a `ShardError` when it is not a bounded grayscale PNG."""
    try:
        return decode_png16(data, where, FIX)
    except ImageReadError as err:
        raise ShardError(err.message, err.hint) from None


def decode_record(data: bytes, where: str) -> dict[str, Any]:
    """A sample's JSON record (a JSON object)."""
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ShardError(f"{where}: not a JSON record ({type(err).__name__})", FIX) from None
    if not isinstance(record, dict):
        raise ShardError(f"{where}: the record is a JSON {type(record).__name__}, not an object", FIX)
    return record


def sample_parts(key: str, parts: dict[str, bytes], shard: str, needed=("png", "json")) -> dict[str, bytes]:
    """``parts`` if it holds every ``needed`` extension, else a `ShardError` naming what is missing."""
    missing = [ext for ext in needed if ext not in parts]
    if missing:
        raise ShardError(f"{shard}: sample {key!r} has no {', '.join(missing)} member", FIX)
    return parts


def _kind(info: tarfile.TarInfo) -> str:
    for test, name in (
        (info.issym, "symlink"),
        (info.islnk, "hard link"),
        (info.isdir, "directory"),
        (info.isfifo, "FIFO"),
        (info.ischr, "character device"),
        (info.isblk, "block device"),
    ):
        if test():
            return name
    return f"member of type {info.type!r}"
