"""Download speed of `synthfair download` against curl, from a release served on loopback.

Writes ``--shards`` random shards of ``--size-mb`` MB (and a manifest) into a temporary directory, serves it
with `synthfair.release.serve` (the byte-range server) and times, each into an empty directory:

1. ``download(url, dest, workers=1)`` and ``workers=4`` (streamed GETs, sha256 of every shard, fsync, rename);
2. ``curl -s -o`` per file, one after the other, and ``curl --parallel`` (4 at a time) when curl has it;
3. resuming shards that are half there (HTTP range requests for the second half);
4. end to end, as a user runs them, side by side and ``--repeats`` times each (medians, and their ratio):
   the ``synthfair download URL --dest DIR`` command against its peer, ``curl`` fetching every file the
   release lists (4 in parallel) followed by ``sha256sum -c SHA256SUMS`` (the check synthfair does).

    python bench/download.py [--shards 20] [--size-mb 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fsspec

import sidebyside  # bench/: this script's own folder
from synthfair.release import download, serve

BLOCK = 8 << 20
METADATA = ("samples.parquet", "shardindex.json", "DATASET_CARD.md")
PARALLEL = "--parallel" in subprocess.run(["curl", "--help", "all"], capture_output=True, text=True).stdout


def make_release(root: Path, shards: int, size: int) -> int:
    """``shards`` files of ``size`` random bytes, a manifest and SHA256SUMS; returns the shards' bytes."""
    (root / "shards").mkdir(parents=True)
    entries = []
    for s in range(shards):
        path, digest = root / "shards" / f"{s:06d}.tar", hashlib.sha256()
        with open(path, "wb") as f:
            for start in range(0, size, BLOCK):
                block = os.urandom(min(BLOCK, size - start))
                digest.update(block)
                f.write(block)
        entries.append({"url": f"shards/{s:06d}.tar", "sha256": digest.hexdigest(), "filesize": size})
    manifest = json.dumps({"schema": "synthfair.release/1", "shards": entries}, indent=2).encode()
    (root / "manifest.json").write_bytes(manifest)
    lines = [f"{hashlib.sha256(manifest).hexdigest()}  manifest.json"]
    for name in METADATA:  # a release's small files, as finalize writes them (contents do not matter here)
        data = f"{name} of a benchmark release\n".encode()
        (root / name).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
    lines += [f"{e['sha256']}  {e['url']}" for e in entries]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return shards * size


def timed(label: str, nbytes: int, run: Callable[[], object]) -> None:
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"{label:<44} {seconds:6.2f} s  {nbytes / 1e6 / seconds:8.1f} MB/s")


def curl_sequential(url: str, files: list[str], dest: Path) -> None:
    for name in files:
        subprocess.run(
            ["curl", "-s", "-f", "--create-dirs", "-o", str(dest / name), f"{url}/{name}"], check=True
        )


def curl_parallel(url: str, files: list[str], dest: Path) -> None:
    args = ["curl", "-s", "-f", "--no-progress-meter", "--create-dirs", "--parallel", "--parallel-max", "4"]
    for name in files:
        args += ["-o", str(dest / name), f"{url}/{name}"]
    subprocess.run(args, check=True, stderr=subprocess.DEVNULL)


def curl_has_parallel() -> bool:
    done = subprocess.run(["curl", "--help", "all"], capture_output=True, text=True)
    return "--parallel" in done.stdout


def synthfair_command(url: str, dest: Path) -> None:
    command = [sys.executable, "-m", "synthfair", "download", url, "--dest", str(dest), "--workers", "4"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"synthfair download failed: {done.stderr[-2000:]}")


def curl_and_sha256sum(url: str, files: list[str], dest: Path) -> None:
    """The peer: every file the release lists (curl, 4 at a time), then ``sha256sum -c`` over them all."""
    names = ["manifest.json", "SHA256SUMS", *METADATA, *files]
    args = ["curl", "-s", "-f", "--create-dirs"] + (["--parallel", "--parallel-max", "4"] if PARALLEL else [])
    for name in names:
        args += ["-o", str(dest / name), f"{url}/{name}"]
    subprocess.run(args, check=True, stderr=subprocess.DEVNULL)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dest, check=True)


def end_to_end(url: str, files: list[str], tmp: Path, nbytes: int, repeats: int) -> None:
    """The command and its peer, alternating, ``repeats`` times each into an empty directory."""
    dest = tmp / "dest-e2e"
    runs = {
        "synthfair download": lambda: synthfair_command(url, dest),
        "curl + sha256sum -c": lambda: curl_and_sha256sum(url, files, dest),
    }
    times = sidebyside.alternate(runs, repeats, after=lambda: shutil.rmtree(dest))
    sidebyside.report(times, "end to end", rate=lambda seconds: f"{nbytes / 1e6 / seconds:8.1f} MB/s")
    speed = sidebyside.ratio(times, "synthfair download", "curl + sha256sum -c")
    print(f"  synthfair download speed relative to curl + sha256sum -c: {speed:.2f}x")


def half_done(release: Path, dest: Path, files: list[str]) -> None:
    """A first, interrupted run: every shard half downloaded (``.part``), the metadata already there."""
    (dest / "shards").mkdir(parents=True)
    for name in files:
        data = (release / name).read_bytes()
        (dest / f"{name}.part").write_bytes(data[: len(data) // 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[:2]
    print(f"python {platform.python_version()}, fsspec {fsspec.__version__}, {' '.join(curl)}")
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        tmp = Path(tmp)
        nbytes = make_release(tmp / "release", args.shards, args.size_mb * 1_000_000)
        files = [f"shards/{s:06d}.tar" for s in range(args.shards)]
        print(f"{args.shards} shards x {args.size_mb} MB = {nbytes / 1e9:.2f} GB, served on loopback")
        with serve(tmp / "release") as server:
            runs = [
                ("synthfair download, workers=1", lambda d: download(server.url, d, workers=1)),
                ("synthfair download, workers=4", lambda d: download(server.url, d, workers=4)),
                ("curl -s -o, one file after the other", lambda d: curl_sequential(server.url, files, d)),
            ]
            if curl_has_parallel():
                runs.append(
                    ("curl --parallel --parallel-max 4", lambda d: curl_parallel(server.url, files, d))
                )
            for label, run in runs:
                dest = tmp / "dest"
                timed(label, nbytes, lambda run=run, dest=dest: run(dest))
                shutil.rmtree(dest)
            dest = tmp / "dest"
            half_done(tmp / "release", dest, files)
            server.wait_idle()
            server.served.clear()
            timed(
                "synthfair download, workers=4, resume 50%", nbytes // 2, lambda: download(server.url, dest)
            )
            ranged = sum(s.sent for s in server.wait_idle() if s.status == 206)
            print(f"  (range requests served {ranged / 1e6:.0f} MB for the missing halves)")
            shutil.rmtree(dest)
            end_to_end(server.url, files, tmp, nbytes, args.repeats)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
