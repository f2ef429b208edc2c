"""Rebalancing a training set where a group is under-represented: by generation (the MCRAGE idea),
reweighting or oversampling, with the same budget.

    spec = RebalanceSpec(attribute="sex", minority="female")          # budget: majority - minority count
    x, y, w, info = training_set("generate", rows, images, spec, "findings.cardiomegaly", 0, engine=engine)

- ``none``: the training split as drawn.
- ``oversample``: ``budget`` minority samples repeated (seeded order, cycling).
- ``reweight``: no new samples; loss weights inversely proportional to group size (the minority's total
  weight rises by the same ``budget`` samples' worth).
- ``generate``: ``budget`` majority training images turned into minority members by the causal model:
  do(attribute = minority) through the counterfactual engine; the label is the counterfactual's target
  (the attribute SCM propagates the intervention to findings that depend on it).

Generated members carry the counterfactual's labels, free of the spec's label noise: under annotation bias
in the minority group, generation also dilutes that noise. Oversampling and generation train on
``budget`` more samples (more optimizer steps per epoch) than none and reweighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthfair.errors import ConfigError, SynthfairError

METHODS = ("none", "reweight", "oversample", "generate")


@dataclass(frozen=True)
class RebalanceSpec:
    attribute: str  # the covariate whose group is under-represented, e.g. sex
    minority: str  # its under-represented value, e.g. female
    methods: tuple[str, ...] = METHODS
    budget: int | None = None  # samples added; None: majority count - minority count in the training split
    steps: int = 10  # counterfactual engine steps for ``generate``

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(
                f"rebalance methods {unknown} are not among {list(METHODS)}", "e.g. [none, generate]"
            )
        if self.budget is not None and self.budget < 1:
            raise ConfigError(f"rebalance budget must be >= 1, got {self.budget}", "or leave it out")


def training_set(
    method: str,
    rows: pd.DataFrame,
    images: dict[str, tuple[np.ndarray, dict[str, Any]]],
    spec: RebalanceSpec,
    target: str,
    seed: int,
    engine=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(images, labels, loss weights, what was done) of the training ``rows`` (a subset's train split) under
    ``method``; ``images`` maps keys to (image, record) as `synthfair.data.release_images` returns."""
    x = np.stack([images[k][0] for k in rows["key"]])
    y = rows["target"].to_numpy().astype(np.float32)
    groups = np.array([str(images[k][1]["covariates"].get(spec.attribute)) for k in rows["key"]])
    minority = groups == spec.minority
    if not minority.any() or minority.all():
        raise SynthfairError(
            f"the training split has {int(minority.sum())} of {len(rows)} samples with {spec.attribute} = "
            f"{spec.minority}: nothing to rebalance",
            "draw a subset in which that group is under-represented but present (shares in the bias spec)",
        )
    budget = spec.budget or max(int((~minority).sum() - minority.sum()), 1)
    info = {
        "method": method,
        "budget": budget,
        "minority": int(minority.sum()),
        "majority": int((~minority).sum()),
    }
    weights = np.ones(len(rows), np.float32)
    order = np.random.default_rng(seed)
    if method == "none":
        return x, y, weights, info
    if method == "reweight":
        weights[minority] = (minority.sum() + budget) / minority.sum()
        return x, y, weights, info
    if method == "oversample":
        pick = np.resize(order.permutation(np.flatnonzero(minority)), budget)
        return (
            np.concatenate([x, x[pick]]),
            np.concatenate([y, y[pick]]),
            np.ones(len(y) + budget, np.float32),
            info,
        )
    if engine is None:
        raise SynthfairError(
            "rebalancing by generation needs the generator", "pass --checkpoint to the study"
        )
    pick = np.resize(order.permutation(np.flatnonzero(~minority)), budget)
    keys = rows["key"].to_numpy()[pick]
    seeds = [int(seed * 1_000_003 + i) for i in range(budget)]
    made = engine([images[k][0] for k in keys], [images[k][1]["covariates"] for k in keys],
                  [{spec.attribute: spec.minority}] * budget, seeds)  # fmt: skip
    head, _, label = target.partition(".")
    labels = np.array([float(cf.covariates[head][label] if label else cf.covariates[head]) for cf in made])
    info["generated_positive_rate"] = float(labels.mean())
    info["generated_labels"] = "counterfactual covariates (no label noise)"
    new = np.stack([cf.image for cf in made]).astype(np.float32)
    return (
        np.concatenate([x, new]),
        np.concatenate([y, labels.astype(np.float32)]),
        np.ones(len(y) + budget, np.float32),
        info,
    )
