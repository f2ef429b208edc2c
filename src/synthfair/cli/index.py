"""`synthfair index stats INDEX_DIR`: counts per source and per intersection of the patient covariates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from synthfair.index import read_index
from synthfair.index.stats import index_stats

app = typer.Typer(no_args_is_help=True, help="Inspect a harmonized index.")


@app.command()
def stats(
    index_dir: Annotated[Path, typer.Argument(help="The index directory (from `synthfair ingest`).")],
    min_count: Annotated[int, typer.Option(help="Flag intersections with fewer images than this.")] = 10,
    axes: Annotated[
        str, typer.Option(help="Comma-separated covariates to intersect (default: the patient covariates).")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print counts per source and per intersection (small ones flagged), and finding positives."""
    chosen = tuple(a.strip() for a in axes.split(",") if a.strip())
    result = index_stats(read_index(index_dir), axes=chosen or None, min_count=min_count)
    if as_json:
        tables = {"by_source": result.by_source, "intersections": result.intersections}
        tables["findings"] = result.findings
        typer.echo(json.dumps({k: v.to_dict("records") for k, v in tables.items()}, indent=1, default=str))
        return
    with pd.option_context("display.width", 160, "display.max_rows", 500, "display.max_columns", 30):
        typer.echo("per source and split:\n" + result.by_source.to_string(index=False))
        inter = result.intersections.assign(few=result.intersections["few"].map({True: "FEW", False: ""}))
        typer.echo(f"\nper intersection ({' x '.join(result.axes)}; FEW: < {min_count} images):")
        typer.echo(inter.to_string(index=False))
        wide = result.findings.pivot_table(
            index=list(result.axes), columns="finding", values="positives", sort=False
        )
        typer.echo("\nfinding positives per intersection:\n" + wide.to_string())
    typer.echo(
        f"\n{len(result.flagged)} of {len(result.intersections)} intersections have fewer than "
        f"{min_count} images"
    )
