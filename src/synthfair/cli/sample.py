"""`synthfair sample RELEASE --spec bias.yaml --out SUBSET_DIR`: a biased subset and its baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.sampling import load_bias_spec, sample_with_baseline, write_subset
from synthfair.sampling import sample as draw
from synthfair.sampling.sampler import Subset

BASELINE_DIR = "baseline"


def sample(
    release: Annotated[str, typer.Argument(help="A finalized release: a directory or a URL prefix.")],
    spec: Annotated[Path, typer.Option(help="The bias spec (YAML; see docs/sampling.md).")],
    out: Annotated[
        Path, typer.Option(help="The subset directory to write (the baseline goes in baseline/).")
    ],
    baseline: Annotated[bool, typer.Option(help="Also write the matched no-bias baseline.")] = True,
) -> None:
    """Draw the subset of RELEASE that the bias spec asks for; print achieved statistics next to targets."""
    bias = load_bias_spec(spec)
    if baseline:
        biased, matched = sample_with_baseline(release, bias)
    else:  # only the biased subset: the baseline's draw is not computed at all
        biased = draw(release, bias)
    _report(biased, write_subset(biased, out))
    if baseline:
        _report(matched, write_subset(matched, out / BASELINE_DIR))
    typer.echo(f"fetch only these shards: synthfair download {release} --dest DIR --subset {out}")


def _report(subset: Subset, where: Path) -> None:
    typer.echo(f"{subset.summary()} -> {where.resolve()}")
    for split, stats in subset.stats.items():
        lines = []
        if "correlation" in stats:
            c = stats["correlation"]
            lines.append(f"correlation {c['achieved_strength']:+.3f} (target {c['target_strength']:+.3f})")
        for name in ("shares", "prevalence"):
            for group, value in stats.get(name, {}).items():
                if len(stats[name]) > 1 or name == "prevalence":
                    lines.append(f"{name} {group} {value['achieved']:.3f} (target {value['target']:.3f})")
        typer.echo(f"  {split}: {stats['size']['achieved']} samples; " + "; ".join(lines[:8]))
