"""`synthfair plan --index INDEX_DIR --spec plan.yaml --out plan.parquet`: one row per sample to generate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.generate.plan import load_plan_spec, make_plan, write_plan
from synthfair.index import read_index


def plan(
    index: Annotated[Path, typer.Option(help="The index directory (from `synthfair ingest`).")],
    spec: Annotated[Path, typer.Option(help="The plan spec YAML (see docs/generation.md).")],
    out: Annotated[Path, typer.Option(help="The plan Parquet file to write.")],
) -> None:
    """Choose factual images and interventions; assign every output sample a key, shard and seed."""
    result = make_plan(read_index(index), load_plan_spec(spec))
    typer.echo(result.summary())
    write_plan(result, out, index)
    typer.echo(f"plan: {out.resolve()}")
