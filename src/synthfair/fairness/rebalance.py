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
- ``exact``: the same members rendered by the phantom's exact counterfactual engine (phantom releases):
  what generation would give with a perfect image model, side by side with ``generate``.

The comparison is kept fair:

- every method trains on the same number of samples per epoch, ``len(rows) + budget``
  (``info["samples_per_epoch"]``, passed to `train_classifier`): none and reweighting cycle through their
  rows, oversampling and generation add ``budget`` members;
- generated members get the label noise of the minority's own training rows: their true labels are
  flipped at the rates measured there (positive to negative and back), by a seeded exact draw, so
  generation does not win by carrying cleaner labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthfair.errors import ConfigError, SynthfairError

METHODS = ("none", "reweight", "oversample", "generate", "exact")


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
        "samples_per_epoch": len(rows) + budget,
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
    pick = np.resize(order.permutation(np.flatnonzero(~minority)), budget)
    new, truth = _generated(method, rows["key"].to_numpy()[pick], images, spec, target, seed, engine)
    labels, flips = _noisy(truth, rows[minority], np.random.default_rng([seed, 1]))
    info |= {"generated_positive_rate": float(truth.mean()), "generated_label_flips": flips}
    return (
        np.concatenate([x, new]),
        np.concatenate([y, labels]),
        np.ones(len(y) + budget, np.float32),
        info,
    )


def _generated(method, keys, images, spec: RebalanceSpec, target: str, seed: int, engine):
    """(images, true labels) of the minority members made from the majority ``keys``: do(attribute =
    minority) by the model's engine (``generate``) or the phantom's exact one (``exact``)."""
    do = {spec.attribute: spec.minority}
    if method == "exact":
        from synthfair.phantom.engine import PhantomEngine, PhantomEngineConfig

        records = [images[k][1] for k in keys]
        generation = records[0]["generation"]
        exact = PhantomEngine(PhantomEngineConfig(size=generation["size"]), generation["fit"])
        made = exact([r.get("phantom") for r in records], [do] * len(keys))
        failed = [m for m in made if isinstance(m, SynthfairError)]
        if failed:
            raise SynthfairError(
                f"the exact engine cannot render {len(failed)} members: {failed[0].message}",
                "use method exact on phantom releases only",
            )
    else:
        if engine is None:
            raise SynthfairError(
                "rebalancing by generation needs the generator", "pass --checkpoint to the study"
            )
        seeds = [int(seed * 1_000_003 + i) for i in range(len(keys))]
        factual = [images[k][0] for k in keys]
        made = engine(factual, [images[k][1]["covariates"] for k in keys], [do] * len(keys), seeds)
    head, _, label = target.partition(".")
    truth = np.array([float(cf.covariates[head][label] if label else cf.covariates[head]) for cf in made])
    return np.stack([cf.image for cf in made]).astype(np.float32), truth.astype(np.float32)


def _noisy(truth: np.ndarray, group: pd.DataFrame, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``truth`` with the label noise ``group`` (the minority's training rows) carries: for each true class,
    round(rate x count) labels flipped, chosen by ``rng``."""
    labels, flips = truth.copy(), {}
    if "target_true" not in group:  # rows without label noise
        return labels, flips
    for value, name in ((1.0, "positive_to_negative"), (0.0, "negative_to_positive")):
        rows = group[group["target_true"] == value]
        rate = float((rows["target"] != rows["target_true"]).mean()) if len(rows) else 0.0
        idx = np.flatnonzero(truth == value)
        chosen = rng.permutation(idx)[: int(round(rate * len(idx)))]
        labels[chosen] = 1.0 - value
        flips[name] = {"rate": round(rate, 6), "flipped": len(chosen)}
    return labels, flips
