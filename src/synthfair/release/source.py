"""Reading a release: where it lives (an fsspec filesystem), its manifest and SHA256SUMS, its samples table
(`read_samples`), and subset files.

``manifest.json`` must have schema ``synthfair.release/1`` and one entry per shard with a ``url`` inside the
release (``shards/NNNNNN.tar``; the shard number is the integer in the name), a ``filesize`` and a ``sha256``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import inside_root, join_location, open_location

if TYPE_CHECKING:
    import pandas as pd

from synthfair.release.layout import MANIFEST_FILE, RELEASE_SCHEMA, SAMPLES_FILE, SUMS_FILE

STREAMING_PROTOCOLS = {"http", "https", "hf"}  # fsspec opens these as one streamed GET with block_size=0
INSTALL_HINTS = {
    **dict.fromkeys(("s3", "s3a"), "pip install s3fs (or: pip install 'synthfair[s3]')"),
    **dict.fromkeys(("http", "https"), "pip install aiohttp (or: pip install 'fsspec[http]')"),
    **dict.fromkeys(("gs", "gcs"), "pip install gcsfs"),
    "hf": "pip install huggingface_hub",
}
SHARD_FILE = re.compile(r"(\d+)\.tar")
HEX64 = re.compile(r"[0-9a-f]{64}")
SUMS_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](\S(?:.*\S)?)")  # sha256sum's text and binary modes


@dataclass(frozen=True)
class Source:
    """Where a release is read from: an fsspec filesystem and the release root's path in it."""

    url: str
    fs: Any = field(repr=False)
    root: str

    def path(self, relpath: str) -> str:
        return f"{self.root}/{relpath}"

    @property
    def streams(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return bool(STREAMING_PROTOCOLS.intersection(protocols))


def open_source(url: str | Path) -> Source:
    """The fsspec filesystem and root path of a release URL (``.../manifest.json`` is accepted too)."""
    import fsspec
    from fsspec.utils import get_protocol

    url = str(url).rstrip("/")
    url = url.removesuffix(f"/{MANIFEST_FILE}")
    protocol = get_protocol(url)
    try:
        options = _storage_options(protocol)
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as err:
        hint = INSTALL_HINTS.get(protocol, f"install the fsspec implementation of {protocol}://")
        raise SynthfairError(f"cannot read {url}: {err}", hint) from None
    except ValueError as err:
        raise SynthfairError(
            f"cannot read {url}: {err}", "give a local path or a file://, http(s)://, s3:// or hf:// URL"
        ) from None
    return Source(url, fs, root.rstrip("/"))


def _storage_options(protocol: str) -> dict[str, Any]:
    if protocol not in ("http", "https"):
        return {}
    import aiohttp

    # aiohttp's default gives up on any request after 5 minutes, which a large shard can take
    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)}}


def read_manifest(source: Source) -> tuple[bytes, dict]:
    """The remote manifest's bytes and parsed content, checked; errors name the URL."""
    where = f"{source.url}/{MANIFEST_FILE}"
    hint = "point at a release directory written by `synthfair finalize` (the one holding manifest.json)"
    try:
        data = source.fs.cat_file(source.path(MANIFEST_FILE))
    except FileNotFoundError:
        raise SynthfairError(f"no {MANIFEST_FILE} at {source.url}", hint) from None
    except Exception as err:  # network and permission errors of any fsspec backend
        raise SynthfairError(
            f"cannot read {where}: {type(err).__name__}: {err}", "check the URL and the network, then re-run"
        ) from err
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SynthfairError(f"{where} is not JSON ({err})", hint) from None
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if schema != RELEASE_SCHEMA:
        raise SynthfairError(
            f"{where} has schema {schema!r}, expected {RELEASE_SCHEMA!r}",
            f"{hint}; a newer schema needs a newer synthfair (pip install -U synthfair)",
        )
    _check_shards(manifest.get("shards"), where)
    return bytes(data), manifest


def _check_shards(shards: Any, where: str) -> None:
    if not isinstance(shards, list):
        raise SynthfairError(f"{where}: 'shards' is not a list", "re-run `synthfair finalize` on the release")
    for i, entry in enumerate(shards):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("url"), str)
            and isinstance(entry.get("filesize"), int)
            and not isinstance(entry["filesize"], bool)
            and entry["filesize"] >= 0
            and isinstance(entry.get("sha256"), str)
            and HEX64.fullmatch(entry["sha256"])
        )
        if not ok:
            raise SynthfairError(
                f"{where}: shards[{i}] lacks a url, a filesize >= 0 or a sha256: {str(entry)[:300]}",
                "re-run `synthfair finalize` on the release",
            )
        safe_relpath(entry["url"], f"{where}: shards[{i}].url")
        shard_number(entry["url"])


def safe_relpath(relpath: str, where: str) -> str:
    """``relpath`` if it stays inside the release (no absolute path, no ``..``, no URL); else an error."""
    if not inside_root(relpath):
        raise SynthfairError(f"{where}: {relpath!r} is not a path inside the release", "fix the manifest")
    return relpath


def shard_number(relpath: str) -> int:
    """``shards/000012.tar`` -> 12."""
    match = SHARD_FILE.fullmatch(PurePosixPath(relpath).name)
    if not match:
        raise SynthfairError(f"manifest shard url {relpath!r} is not NNNNNN.tar", "fix the manifest")
    return int(match[1])


def read_subset(subset: str | Path) -> list[int]:
    """Shard numbers from a subset directory, its ``subset.json`` (``"shards"``) or a Parquet ``shard``
    column (e.g. ``subset.parquet``)."""
    path = Path(subset)
    if path.is_dir():
        found = [path / name for name in ("subset.json", "subset.parquet") if (path / name).is_file()]
        if not found:
            raise ConfigError(
                f"{path} holds neither subset.json nor subset.parquet", "give a subset directory"
            )
        path = found[0]
    if not path.is_file():
        raise ConfigError(
            f"subset {path} does not exist", "give a subset directory, subset.json or a Parquet"
        )
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if "shard" not in pq.read_schema(path).names:
            raise ConfigError(f"{path} has no 'shard' column", "give a Parquet file with a shard column")
        values = pq.read_table(path, columns=["shard"])["shard"].to_pylist()
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
        values = data.get("shards") if isinstance(data, dict) else None
        if not isinstance(values, list):
            raise ConfigError(f"{path} has no 'shards' list", 'write e.g. {"shards": [0, 3]}')
    else:
        raise ConfigError(
            f"subset {path} is neither .json nor .parquet", "give subset.json or a Parquet file"
        )
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
    if bad:
        raise ConfigError(f"{path}: shard numbers must be integers, got {bad[:5]}", "fix the subset file")
    return sorted(set(values))


def check_known(wanted: list[int], known: dict[int, Any], subset: str | Path) -> list[int]:
    """``wanted`` if the release has every one of those shards; else an error naming the missing ones."""
    unknown = [s for s in wanted if s not in known]
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise ConfigError(
            f"subset {subset} needs shards the release does not have: {shown} "
            f"(the release has {len(known)} shards, {min(known, default=0)}-{max(known, default=-1)})",
            "check that the subset was made from this release and version",
        )
    return wanted


def parse_sums(text: str, where: str = SUMS_FILE) -> dict[str, str]:
    """``SHA256SUMS`` (``<sha256>  <path>`` lines, as written by ``sha256sum``) as {path: sha256}. Every
    non-blank line must be one, with a relative path that stays in the release: a damaged list is an error,
    never a silent "nothing to verify"."""
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = SUMS_LINE.fullmatch(line.rstrip("\r"))
        name = match and match.group(2)
        if not match or not inside_root(name) or name in sums:
            shown = line[:120] + ("..." if len(line) > 120 else "")
            what = "a repeated path" if match and name in sums else "not `<sha256>  <relative path>`"
            raise SynthfairError(
                f"{where}, line {number}: {shown!r} is {what}",
                "the release's checksum list is damaged: re-run `synthfair finalize` on it, or tell its "
                "maintainers",
            )
        sums[name] = match.group(1).lower()
    if not sums:
        raise SynthfairError(f"{where} lists no file", "the release's checksum list is damaged or empty")
    return sums


def read_release_file(release: str | Path, name: str) -> tuple[bytes, str]:
    """(the bytes of file ``name`` of the release at ``release``, a directory or any fsspec URL; its
    location). A missing file raises `FileNotFoundError` with the location as its filename."""
    location = join_location(release, name)
    try:
        with open_location(location) as f:
            return f.read(), location
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such file", location) from None


def read_samples(release: str | Path, columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, str, str]:
    """(rows of ``release``'s samples.parquet with ``columns`` that exist (None: all), its location, its
    sha256)."""
    import pyarrow.parquet as pq  # lazy: downloading a release needs no Parquet

    try:
        data, location = read_release_file(release, SAMPLES_FILE)
    except FileNotFoundError as err:
        location = str(err.filename or SAMPLES_FILE)
        raise SynthfairError(
            f"{location} does not exist: {release} is not a finalized release",
            "point at a release directory or URL (run `synthfair finalize` on a generated release)",
        ) from None
    names = pq.read_schema(io.BytesIO(data)).names
    present = names if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    table = pq.read_table(io.BytesIO(data), columns=present)
    return table.to_pandas(), location, hashlib.sha256(data).hexdigest()
