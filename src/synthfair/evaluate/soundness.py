"""Axiomatic soundness of a release's counterfactuals, measured with pseudo-oracles (and the generator).

Per-sample tables (one row per counterfactual and covariate), summarized per intervention and per
intersectional subgroup with bootstrap intervals (`summarize`):

- effectiveness: did the intervened covariate change as intended? The oracle's prediction on the
  counterfactual against the intended value: ``correct`` (categorical, findings) or ``abs_error`` (age).
  ``baseline_*`` is the same score of the *factual* image (what doing nothing scores); an effective
  generator moves from the baseline towards the oracle's own held-out accuracy.
- amplification: covariates that did not change should not move: ``delta`` = oracle confidence in the
  factual value on the counterfactual minus on the factual image (age: predicted years), ``abs_delta``.
- composition (needs the generator): the null intervention applied 1 and 10 times; L1 and oracle-feature
  distance to the original.
- reversibility (needs the generator): intervene, then intervene back to the factual values; distances.

Definitions follow Monteiro et al. (ICLR 2023) and Xia et al. (MICCAI 2024); see docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthfair.counterfactual import CounterfactualEngine
from synthfair.evaluate.oracles import Oracles, auc
from synthfair.evaluate.samples import ReleaseSamples
from synthfair.stats import mean_interval
from synthfair.taxonomy import Taxonomy


def _with_factual(samples: ReleaseSamples):
    """(row, record, factual row) of every counterfactual whose factual sample the release holds."""
    for i in samples.of_kind("counterfactual"):
        f = samples.factual_of(i)
        if f is not None:
            yield i, samples.records[i], f


# -- effectiveness ------------------------------------------------------------------------------------------
def effectiveness(
    samples: ReleaseSamples, predictions: dict[str, np.ndarray], oracles: Oracles
) -> pd.DataFrame:
    """One row per (counterfactual, intervened covariate or finding label) the oracles can judge."""
    rows = []
    for i, record, f in _with_factual(samples):
        for name, value in record["intervention"].items():
            if name not in oracles:
                continue
            oracle = oracles[name]
            base = {"key": record["key"], "label": record["label"], "covariate": name, "row": i}
            if oracle.kind == "continuous":
                intended = float(record["covariates"][name])
                rows.append(
                    {
                        **base,
                        "target": name,
                        "intended": intended,
                        "abs_error": abs(float(predictions[name][i]) - intended),
                        "baseline_abs_error": abs(float(predictions[name][f]) - intended),
                    }
                )
            elif oracle.kind == "categorical":
                if value not in oracle.targets:
                    continue
                j = oracle.targets.index(value)
                rows.append(
                    {
                        **base,
                        "target": value,
                        "intended": j,
                        "p": float(predictions[name][i, j]),
                        "correct": float(predictions[name][i].argmax() == j),
                        "baseline_correct": float(predictions[name][f].argmax() == j),
                    }
                )
            else:
                for label, v in value.items():
                    if label not in oracle.targets:
                        continue
                    j = oracle.targets.index(label)
                    p, p0 = float(predictions[name][i, j]), float(predictions[name][f, j])
                    rows.append(
                        {
                            **base,
                            "covariate": f"{name}.{label}",
                            "target": label,
                            "intended": int(v),
                            "p": p,
                            "correct": float((p > 0.5) == bool(v)),
                            "baseline_correct": float((p0 > 0.5) == bool(v)),
                        }
                    )
    return pd.DataFrame(rows)


def effectiveness_auc(
    table: pd.DataFrame, predictions: dict[str, np.ndarray], oracles: Oracles
) -> pd.DataFrame:
    """Per categorical covariate or finding label: ROC AUC of the oracle on the counterfactuals against the
    intended values, over all counterfactuals intervening on it (one-vs-rest macro for several values)."""
    rows = []
    if table.empty or "intended" not in table:
        return pd.DataFrame(rows)
    for covariate, group in table.groupby("covariate"):
        name = covariate.split(".")[0]
        if oracles[name].kind == "continuous":
            continue
        y = group["intended"].to_numpy(dtype=int)
        if "." in covariate:
            value = auc(y, group["p"].to_numpy(), 1)
        else:
            value = auc(y, predictions[name][group["row"].to_numpy()], len(oracles[name].targets))
        rows.append({"covariate": covariate, "n": len(group), "auc": value})
    return pd.DataFrame(rows)


# -- amplification ------------------------------------------------------------------------------------------
def amplification(
    samples: ReleaseSamples, predictions: dict[str, np.ndarray], oracles: Oracles
) -> pd.DataFrame:
    """One row per (counterfactual, covariate it did not change) the oracles can judge."""
    rows = []
    for i, record, f in _with_factual(samples):
        changed = set(record["changed"])
        for oracle in oracles:
            name = oracle.covariate
            factual_value = record["factual"].get(name)
            if name in changed or factual_value is None:
                continue
            base = {"key": record["key"], "label": record["label"], "row": i}
            if oracle.kind == "continuous":
                delta = float(predictions[name][i] - predictions[name][f])
                rows.append({**base, "covariate": name, "delta": delta, "abs_delta": abs(delta)})
            elif oracle.kind == "categorical":
                if factual_value not in oracle.targets:
                    continue
                j = oracle.targets.index(factual_value)
                delta = float(predictions[name][i, j] - predictions[name][f, j])
                rows.append({**base, "covariate": name, "delta": delta, "abs_delta": abs(delta)})
            else:
                for j, label in enumerate(oracle.targets):
                    v = factual_value.get(label)
                    if v is None:
                        continue
                    sign = 1.0 if v == 1 else -1.0  # confidence in the factual value
                    delta = sign * float(predictions[name][i, j] - predictions[name][f, j])
                    rows.append(
                        {**base, "covariate": f"{name}.{label}", "delta": delta, "abs_delta": abs(delta)}
                    )
    return pd.DataFrame(rows)


# -- composition and reversibility (the generator) ----------------------------------------------------------
def composition(
    samples: ReleaseSamples,
    engine: CounterfactualEngine,
    oracles: Oracles,
    rows: Sequence[int],
    cycles: int = 10,
) -> pd.DataFrame:
    """The null intervention applied ``cycles`` times to factual samples: distance to the original after
    1 and ``cycles`` applications (L1 in [0, 1] intensities; oracle-feature L2)."""
    images = [samples.images[i] for i in rows]
    factuals = [samples.records[i]["covariates"] for i in rows]
    seeds = [samples.records[i]["seed"] for i in rows]
    current = list(images)
    out = {i: {} for i in rows}
    for cycle in range(1, cycles + 1):
        current = [r.image for r in engine(current, factuals, [{}] * len(rows), seeds)]
        if cycle in (1, cycles):
            for i, original, image in zip(rows, images, current, strict=True):
                out[i][f"l1_{cycle}"] = float(np.abs(image - original).mean())
                out[i][f"feature_{cycle}"] = feature_distance(oracles, original, image)
    return pd.DataFrame([{"key": samples.keys[i], "row": i, **v} for i, v in out.items()])


def reversibility(
    samples: ReleaseSamples, engine: CounterfactualEngine, oracles: Oracles, rows: Sequence[int]
) -> pd.DataFrame:
    """Counterfactuals intervened back to their factual values: distance to the factual image."""
    records, out = [samples.records[i] for i in rows], []
    back = [{name: r["factual"][name] for name in r["intervention"]} for r in records]
    results = engine(
        [samples.images[i] for i in rows],
        [r["covariates"] for r in records],
        back,
        [r["seed"] for r in records],
    )
    for i, record, result in zip(rows, records, results, strict=True):
        f = samples.factual_of(i)
        if f is None:
            continue
        original = samples.images[f]
        out.append(
            {
                "key": record["key"],
                "label": record["label"],
                "row": i,
                "l1": float(np.abs(result.image - original).mean()),
                "feature": feature_distance(oracles, original, result.image),
            }
        )
    return pd.DataFrame(out)


def feature_distance(oracles: Oracles, a: np.ndarray, b: np.ndarray) -> float:
    """L2 distance of two images in the oracles' feature space (`Oracles.features`)."""
    features = oracles.features(np.stack([a, b]))
    return float(np.linalg.norm(features[0] - features[1]))


# -- summaries ----------------------------------------------------------------------------------------------
def subgroups(
    samples: ReleaseSamples, rows: Sequence[int], taxonomy: Taxonomy, axes: Sequence[str]
) -> list[str]:
    """Each row's intersectional subgroup of its factual covariates, e.g. ``female x white x [40, 60)``."""
    factual = pd.DataFrame([samples.records[i]["factual"] for i in rows], columns=list(axes))
    labels = taxonomy.group_labels(factual, axes)
    return [" x ".join(str(v) for v in row) for row in labels.itertuples(index=False)]


def summarize(
    table: pd.DataFrame, by: Sequence[str], columns: Sequence[str], seed: int = 0, resamples: int = 200
) -> pd.DataFrame:
    """Mean of ``columns`` per group of ``by``, with n and a 95% bootstrap interval per column."""
    if table.empty:
        return pd.DataFrame()
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in table.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key, strict=True)) | {"n": len(group)}
        for column in columns:
            values = group[column].dropna().to_numpy(dtype=float)
            if not len(values):
                continue
            row[column] = float(values.mean())
            lo, hi = mean_interval(values, rng, resamples)
            row[f"{column}_lo"], row[f"{column}_hi"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
