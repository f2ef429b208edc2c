"""`synthfair demo`: run the whole pipeline on the built-in phantom and say where everything went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.cli.progress import bar
from synthfair.demo import DemoConfig, run_demo


def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo"),
    n: Annotated[int, typer.Option(help="Phantom subjects.")] = DemoConfig.n,
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = DemoConfig.size,
    seed: Annotated[int, typer.Option(help="Run seed.")] = DemoConfig.seed,
    workers: Annotated[
        int, typer.Option(help="Rendering processes (0: every usable core).")
    ] = DemoConfig.workers,
    train: Annotated[
        bool,
        typer.Option(
            "--train",
            help="Retrain the phantom-64 model (three stages, ~3.5 h on 2 cores) instead of the shipped one.",
        ),
    ] = False,
) -> None:
    """Run the whole pipeline on the built-in phantom (minutes on a laptop CPU)."""
    config = DemoConfig(n=n, size=size, seed=seed, workers=workers, train=train)
    with bar(None, "phantom images") as tick:  # the source, then the subjects the demo re-renders
        result = run_demo(out, config, on_image=tick, on_stage=lambda line: typer.echo(line, err=True))
    typer.echo(f"outputs: {result.out.resolve()}")
    typer.echo(f"  phantom source:      {result.source.resolve()}")
    typer.echo(f"  counterfactual grid: {result.grid.resolve()}")
    typer.echo(f"  harmonized index:    {result.index.resolve()}")
    typer.echo(f"  training shards:     {result.cache.resolve()}")
    typer.echo(f"  image model:         {result.model.resolve()}")
    typer.echo(f"  model vs truth grid: {result.truth_grid.resolve()}")
    typer.echo(f"  generated release:   {result.release.resolve()} (dataset card: DATASET_CARD.md)")
    typer.echo(f"  soundness report:    {(result.evaluation / 'report.html').resolve()}")
    typer.echo(f"  exact study release: {result.study_release.resolve()}")
    typer.echo(f"  biased subset:       {result.subset.resolve()} (matched baseline: baseline/)")
    typer.echo(f"  fairness study:      {(result.study / 'report.html').resolve()}")
    if config.study:
        typer.echo(f"  model study release: {result.fidelity_release.resolve()}")
        typer.echo(f"  study fidelity:      {(result.fidelity / 'report.html').resolve()}")
    typer.echo(f"report: {result.report.resolve()}")
