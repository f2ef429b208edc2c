"""`synthfair ingest SOURCE --root DIR --out INDEX_DIR`: add (or replace) one source in a harmonized index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.cli.progress import bar
from synthfair.index.ingest import IngestConfig
from synthfair.index.ingest import ingest as ingest_source
from synthfair.sources import SOURCES
from synthfair.sources.harmonize import FindingsPolicy


def ingest(
    source: Annotated[str, typer.Argument(help=f"One of: {', '.join(SOURCES)}.")],
    root: Annotated[
        Path, typer.Option(help="The source as downloaded from its publisher (see docs/sources.md).")
    ],
    out: Annotated[Path, typer.Option(help="The index directory (created; other sources in it are kept).")],
    on_error: Annotated[
        str, typer.Option(help="stop: the first bad row is an error; skip: quarantine bad rows and go on.")
    ] = "stop",
    uncertain: Annotated[str, typer.Option(help="Uncertain (-1) labels: negative, positive or missing.")] = (
        "negative"
    ),
    unmentioned: Annotated[str, typer.Option(help="Blank (not mentioned) labels: negative or missing.")] = (
        "negative"
    ),
    race_conflict: Annotated[
        str, typer.Option(help="MIMIC subjects with several races: drop (quarantine) or missing.")
    ] = "drop",
    check_images: Annotated[bool, typer.Option(help="Quarantine rows whose image file is missing.")] = True,
) -> None:
    """Ingest SOURCE into INDEX_DIR: a harmonized row per image; bad rows stop the run or are quarantined."""
    config = IngestConfig(
        on_error=on_error,
        findings=FindingsPolicy(uncertain=uncertain, unmentioned=unmentioned),
        race_conflict=race_conflict,
        check_images=check_images,
    )
    with bar(None, f"ingest {source}", unit="row") as tick:
        report = ingest_source(source, root, out, config, on_row=tick)
    typer.echo(
        f"{source}: read {report.read}, indexed {report.indexed}, quarantined {report.total_quarantined}"
    )
    for code, n in sorted(report.quarantined.items()):
        typer.echo(f"  quarantined ({code}): {n}")
    for value, n in report.defaulted.most_common(10):
        typer.echo(f"  raw value left to the taxonomy default: {value} ({n} rows)")
    typer.echo(f"index: {(out / 'index.parquet').resolve()}")
    if report.total_quarantined:
        typer.echo(f"quarantine: {(out / 'quarantine' / f'{source}.parquet').resolve()}")
    typer.echo(f"report: {(out / 'reports' / f'{source}.json').resolve()}")
