"""`synthfair evaluate RELEASE_DIR --oracles DIR --out REPORT_DIR`: the soundness report of a release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.evaluate.evaluate import EvaluateConfig
from synthfair.evaluate.evaluate import evaluate as evaluate_release


def evaluate(
    release: Annotated[Path, typer.Argument(help="A release directory (from `synthfair generate`).")],
    oracles: Annotated[Path, typer.Option(help="Pseudo-oracles (from `synthfair oracles train`).")],
    out: Annotated[Path, typer.Option(help="The report directory to write.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="The generator, for composition and reversibility.")
    ] = None,
    train_data: Annotated[
        Path | None, typer.Option(help="The model's training cache, for the privacy check.")
    ] = None,
    composition_samples: Annotated[int, typer.Option(help="Factual images for composition.")] = 8,
    reversibility_samples: Annotated[int, typer.Option(help="Counterfactuals for reversibility.")] = 16,
) -> None:
    """Effectiveness, amplification, phantom truth, realism, privacy (and with the generator: composition,
    reversibility), per intervention and per intersectional subgroup."""
    config = EvaluateConfig(
        composition_samples=composition_samples, reversibility_samples=reversibility_samples
    )
    result = evaluate_release(release, oracles, out, config, checkpoint, train_data)
    for name in ("composition", "reversibility", "privacy"):
        if "note" in result.metrics[name]:
            typer.echo(f"{name}: {result.metrics[name]['note']}")
    typer.echo(f"metrics: {(out / 'metrics.json').resolve()}")
    typer.echo(f"report: {(out / 'report.html').resolve()}")
