"""`synthfair oracles train --data CACHE --out oracles/`: the pseudo-oracles the evaluator measures with."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from synthfair.cli.progress import bar
from synthfair.evaluate.oracles import OracleConfig, train_oracles

app = typer.Typer(no_args_is_help=True, help="Pseudo-oracles: one small CNN per covariate.")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="A preprocessed cache (from `synthfair preprocess`).")],
    out: Annotated[Path, typer.Option(help="The oracles directory to write.")],
    covariates: Annotated[
        str, typer.Option(help="Comma-separated covariates (default: every varying one).")
    ] = "",
    epochs: Annotated[int, typer.Option(help="Passes over the decorrelated training resample.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    arch: Annotated[str, typer.Option(help="torchvision architecture (built without weights).")] = (
        "mobilenet_v3_small"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the resample, initialization and batches.")] = 0,
) -> None:
    """Train one oracle per covariate on decorrelated training images; print their held-out scores."""
    names = tuple(c.strip() for c in covariates.split(",") if c.strip())
    config = OracleConfig(covariates=names, epochs=epochs, batch_size=batch_size, arch=arch, seed=seed)
    with ExitStack() as stack:
        current: dict[str, object] = {}

        def on_step(name: str, step: int, total: int) -> None:  # one bar per oracle, closed at the next
            if name not in current:
                stack.close()
                current.clear()
                current[name] = stack.enter_context(bar(total, f"oracle {name}", unit="step"))
            current[name]()

        oracles = train_oracles(config, data, out, on_step=on_step)
    report = oracles.report
    typer.echo(
        f"decorrelation: largest Cramer's V {report['largest_association_before']} -> "
        f"{report['largest_association_after']} ({report['unique_resampled']} of {report['train_images']} "
        "training images drawn)"
    )
    for oracle in oracles:
        typer.echo(f"{oracle.covariate}: {json.dumps(oracle.metrics)} on {report['held_out_split']}")
    typer.echo(f"oracles: {out.resolve()}")
