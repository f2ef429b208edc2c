"""`synthfair download URL --dest DIR`: fetch a release's metadata and shards (or a subset's), verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.release.download import DownloadResult
from synthfair.release.download import download as download_release


def download(
    url: Annotated[
        str, typer.Argument(help="The release: a local path, file://, http(s)://, s3:// or hf:// URL.")
    ],
    dest: Annotated[Path, typer.Option(help="The directory to download into (re-running resumes).")],
    subset: Annotated[
        Path | None,
        typer.Option(help="Only the shards this subset needs: its directory, subset.json or a Parquet file."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Files downloaded at the same time.")] = 4,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be fetched; write nothing.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash files already in DEST; fetch bad ones again.")
    ] = False,
) -> None:
    """Download a release's metadata and shards, checking each file's size and sha256 before keeping it."""
    result = download_release(url, dest, subset, workers, dry_run, verify)
    if dry_run:
        _print_plan(result)
        return
    for name in result.absent:
        typer.echo(f"note: {name} is not in the release; skipped")
    for failed in result.failed:
        typer.echo(f"failed: {failed.path}: {failed.reason}", err=True)
    mb = result.bytes_fetched / 1e6
    typer.echo(
        f"{_files(len(result.fetched))} fetched ({mb:.1f} MB in {result.seconds:.1f} s, "
        f"{mb / max(result.seconds, 1e-9):.1f} MB/s), {len(result.skipped)} already present, "
        f"{len(result.failed)} failed: {dest.resolve()}"
    )
    result.raise_for_failures()


def _print_plan(result: DownloadResult) -> None:
    plan = result.plan
    partial = [f for f in result.planned if f.state == "partial"]
    unknown = f" + {plan.unknown_sizes} small metadata files" if plan.unknown_sizes else ""
    typer.echo(
        f"would fetch {_files(len(result.planned))}, {plan.bytes_to_fetch / 1e6:.1f} MB{unknown} "
        f"({len(plan.shards)} shards; {len(partial)} partly downloaded; "
        f"{len(plan.files) - len(result.planned)} already present) from {result.url} into {result.dest}"
    )
    for f in result.planned:
        if f.remaining is None:
            size = "size unknown"
        elif f.state == "partial":
            size = f"{f.remaining / 1e6:.2f} of {f.size / 1e6:.2f} MB left (partial)"
        else:
            size = f"{f.remaining / 1e6:.2f} MB"
        typer.echo(f"  {f.path}  {size}")


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
