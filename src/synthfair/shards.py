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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from synthfair.errors import SynthfairError
from synthfair.fileio import inside_root, join_location, open_location
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


# -- random access -------------------------------------------------------------------------------------------
Span = tuple[int, int]  # (offset, size) of a member's bytes in its tar


class ShardReader:
    """Random access to the samples of a list of shards (a release's or a training cache's), as wids'
    ``ShardListDataset``: the shard list with each shard's sample count (a release's ``shardindex.json``,
    a cache's manifest) gives every sample a global position; a shard's members are indexed on its first use
    (every header checked, `check_member`), then a sample is read with one seek per member.

        reader = ShardReader.from_shard_index("release/shardindex.json")
        key, image, record = reader[i]          # image float32 (H, W) in [0, 1]; record the sample JSON
        key, image, record = reader.sample(3, "k000012_c02")     # by shard number and key

    Shards are local paths or fsspec URLs (read with range requests). A shard holding another number of
    samples than its list says, or a sample without its PNG or JSON, is a `ShardError`.
    """

    def __init__(self, shards: Sequence[tuple[str | Path, int | None]]):
        self.shards = [str(location) for location, _ in shards]
        self._counts = [None if n is None else int(n) for _, n in shards]
        self._members: dict[int, list[tuple[str, dict[str, Span]]]] = {}
        self._keys: dict[int, dict[str, int]] = {}
        self._starts: np.ndarray | None = None

    @classmethod
    def from_shard_index(cls, path: str | Path) -> ShardReader:
        """The shards a wids shard index (``wids-shard-index-v1``) lists, URLs relative to its location."""
        where = str(path)
        try:
            with open_location(where) as f:
                index = json.loads(f.read())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ShardError(f"{where}: not a readable shard index ({type(err).__name__})", FIX) from None
        if not isinstance(index, dict) or index.get("__kind__") != "wids-shard-index-v1":
            raise ShardError(f"{where}: not a wids shard index (__kind__ wids-shard-index-v1)", FIX)
        base = where.rsplit("/", 1)[0] if "/" in where else "."
        shards = []
        for i, entry in enumerate(index.get("shardlist") or []):
            url, n = (entry.get("url"), entry.get("nsamples")) if isinstance(entry, dict) else (None, None)
            if not isinstance(url, str) or not inside_root(url) or not isinstance(n, int) or n < 0:
                raise ShardError(f"{where}: shardlist entry {i} needs a relative url and nsamples >= 0", FIX)
            shards.append((join_location(base, url), n))
        return cls(shards)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def starts(self) -> np.ndarray:
        """The global position of each shard's first sample, and the total last."""
        if self._starts is None:
            counts = [len(self._index(s)) if n is None else n for s, n in enumerate(self._counts)]
            self._starts = np.cumsum([0, *counts])
        return self._starts

    def locate(self, i: int) -> tuple[int, int]:
        """(shard number, position in the shard) of global position ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} is outside 0..{len(self) - 1}")
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return shard, i - int(self.starts[shard])

    def keys(self, shard: int) -> list[str]:
        return [key for key, _ in self._index(shard)]

    def parts(self, shard: int, position: int, needed=("png", "json")) -> tuple[str, dict[str, bytes]]:
        """(key, {ext: bytes}) of the sample at ``position`` of ``shard``, the ``needed`` members read."""
        key, spans = self._index(shard)[position]
        sample_parts(key, spans, self.shards[shard], needed)  # type: ignore[arg-type]
        with open_location(self.shards[shard]) as f:
            data = {}
            for ext in needed:
                f.seek(spans[ext][0])
                data[ext] = f.read(spans[ext][1])
        return key, data

    def read(self, shard: int, position: int) -> tuple[str, np.ndarray, dict[str, Any]]:
        key, parts = self.parts(shard, position)
        where = f"{self.shards[shard]}: sample {key!r}"
        return key, decode_png(parts["png"], where), decode_record(parts["json"], where)

    def sample(self, shard: int, key: str) -> tuple[str, np.ndarray, dict[str, Any]]:
        """The sample ``key`` of shard ``shard``; a `ShardError` if the shard does not hold it."""
        self._index(shard)
        if key not in self._keys[shard]:
            raise ShardError(
                f"{self.shards[shard]}: sample {key!r} is missing",
                "check that the release and the subset or samples table belong together; " + FIX,
            )
        return self.read(shard, self._keys[shard][key])

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, dict[str, Any]]:
        return self.read(*self.locate(i))

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
        for shard in range(len(self.shards)):
            for position in range(len(self._index(shard))):
                yield self.read(shard, position)

    def _index(self, shard: int) -> list[tuple[str, dict[str, Span]]]:
        if shard not in self._members:
            location = self.shards[shard]
            members = _member_spans(location)
            expected = self._counts[shard]
            if expected is not None and len(members) != expected:
                raise ShardError(f"{location}: holds {len(members)} samples, its list says {expected}", FIX)
            self._members[shard] = members
            self._keys[shard] = {key: p for p, (key, _) in enumerate(members)}
        return self._members[shard]


def _member_spans(location: str) -> list[tuple[str, dict[str, Span]]]:
    """(key, {ext: span}) per sample of one tar, in order; every member's header checked."""
    samples: dict[str, dict[str, Span]] = {}
    last = None
    try:
        with open_location(location) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                check_member(info, location)
                key, _, ext = info.name.partition(".")
                if key != last and key in samples:
                    where = f"{location}: member {info.name!r}"
                    raise ShardError(f"{where} is apart from its sample's others", FIX)
                if ext in samples.get(key, {}):
                    raise ShardError(f"{location}: member {info.name!r} appears twice", FIX)
                samples.setdefault(key, {})[ext] = (info.offset_data, info.size)
                last = key
    except (tarfile.TarError, EOFError, OSError) as err:
        detail = f"{type(err).__name__}: {str(err)[:200]}"
        raise ShardError(f"{location}: not a readable tar ({detail})", FIX) from None
    return list(samples.items())
