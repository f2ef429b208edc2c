"""`synthfair study --spec study.yaml --release RELEASE --out STUDY_DIR`: a downstream bias study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.fairness.study import load_study_spec, run_study


def study(
    spec: Annotated[Path, typer.Option(help="The study spec (YAML; see docs/fairness.md).")],
    release: Annotated[str, typer.Option(help="A finalized release: a directory (or URL prefix).")],
    out: Annotated[Path, typer.Option(help="The study directory to write.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="The generator, for rebalancing by generation.")
    ] = None,
    truth: Annotated[
        str | None,
        typer.Option(help="The exact release of the same plan (--engine phantom): also measure fidelity."),
    ] = None,
) -> None:
    """Train a classifier per bias cell (and its baseline); report fairness per subgroup against the bias."""
    echo = lambda text: typer.echo(text, err=True)  # noqa: E731
    result = run_study(load_study_spec(spec), release, out, on_cell=echo, checkpoint=checkpoint, truth=truth)
    for r in result.results:
        agg = r["groups"]["aggregates"]
        cell = ", ".join(f"{k}={v}" for k, v in r["cell"].items()) or "-"
        typer.echo(
            f"{cell} {r['variant']} seed {r['seed']}: AUROC {_n(r['groups']['overall']['auroc'])}, "
            f"worst-group AUROC {_n(agg['worst_group_auroc']['value'])}, equalized-odds difference "
            f"{_n(agg['equalized_odds_difference']['value'])}"
        )
    if result.fidelity is not None:
        for name, row in result.fidelity["summary"].items():
            held = row["intervals_holding_zero"]
            typer.echo(
                f"fidelity {name}: mean |model - truth| {row['mean_abs_difference']:.3f}, {held:.0%} hold 0"
            )
    typer.echo(f"results: {(out / 'results.json').resolve()}")
    typer.echo(f"report: {(out / 'report.html').resolve()}")


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
