"""Study fidelity: would a bias study run on a model's counterfactuals reach the conclusions it reaches on
the truth?

The same study spec runs on two releases of the same plan: the phantom's exact counterfactuals (the truth,
``synthfair generate --engine phantom``) and the image model's. Every cell's subset is drawn once, from the
truth release, and the same samples (keys) are read from both, so the two runs differ only in the images.
Per cell, variant and seed, each study metric is compared:

    difference = metric(model release) - metric(truth release)

with a 95% interval from the two runs' bootstrap intervals, taken as independent normals (se = interval
width / 3.92; the paired difference is tighter, so this interval is conservative). Fidelity is perfect when
every difference is 0 (`tests/fairness/test_fidelity.py`: a release compared with itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

# name -> where the value, lo and hi of a metric sit in one study result (None: not measured there)
Getter = Callable[[dict[str, Any]], tuple[float, float, float] | None]


def _aggregate(name: str) -> Getter:
    def get(result):
        entry = (result.get("groups") or {}).get("aggregates", {}).get(name)
        return None if entry is None else (entry.get("value"), entry.get("lo"), entry.get("hi"))

    return get


def _overall_auroc(result):
    overall = (result.get("groups") or {}).get("overall", {})
    return None if "auroc" not in overall else (overall["auroc"], math.nan, math.nan)


def _flip_rate(result):
    overall = (result.get("counterfactual") or {}).get("overall")
    if not overall:
        return None
    return overall["flip_rate"], overall.get("flip_rate_lo"), overall.get("flip_rate_hi")


def _effect(name: str) -> Getter:
    def get(result):
        entry = ((result.get("causal") or {}).get("predictions") or {}).get(name)
        return None if entry is None else (entry.get("value"), entry.get("lo"), entry.get("hi"))

    return get


METRICS: dict[str, Getter] = {
    "auroc": _overall_auroc,
    "auroc_gap": _aggregate("auroc_gap"),
    "worst_group_auroc": _aggregate("worst_group_auroc"),
    "equalized_odds_difference": _aggregate("equalized_odds_difference"),
    "demographic_parity_difference": _aggregate("demographic_parity_difference"),
    "flip_rate": _flip_rate,
    "ctf_de": _effect("ctf_de"),
    "ctf_ie": _effect("ctf_ie"),
    "ctf_se": _effect("ctf_se"),
}


def fidelity(model: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (cell, variant, seed): per metric the truth's and the model's value and their
    difference with its interval. ``model`` and ``truth`` are the two runs' results, in the same order."""
    out = []
    for m, t in zip(model, truth, strict=True):
        if (m["cell"], m["variant"], m["seed"]) != (t["cell"], t["variant"], t["seed"]):
            raise ValueError("the two studies' results are not in the same order")
        metrics = {}
        for name, get in METRICS.items():
            a, b = get(m), get(t)
            if a is not None and b is not None and _finite(a[0]) and _finite(b[0]):
                metrics[name] = _difference(a, b)
        out.append({"cell": m["cell"], "variant": m["variant"], "seed": m["seed"], "metrics": metrics})
    return out


def summary(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric over every cell, variant and seed: mean absolute difference, largest, and how often the
    interval holds 0."""
    out = {}
    for name in METRICS:
        diffs = [r["metrics"][name] for r in records if name in r["metrics"]]
        if diffs:
            out[name] = {
                "n": len(diffs),
                "mean_abs_difference": sum(abs(d["difference"]) for d in diffs) / len(diffs),
                "max_abs_difference": max(abs(d["difference"]) for d in diffs),
                "intervals_holding_zero": sum(_holds_zero(d) for d in diffs) / len(diffs),
            }
    return out


def _difference(model: tuple, truth: tuple) -> dict[str, float]:
    diff = model[0] - truth[0]
    se = math.sqrt(_se(model) ** 2 + _se(truth) ** 2)
    half = 1.96 * se if _finite(se) else math.nan
    return {"truth": truth[0], "model": model[0], "difference": diff, "lo": diff - half, "hi": diff + half}


def _se(entry: tuple) -> float:
    _, lo, hi = entry
    return (hi - lo) / 3.92 if _finite(lo) and _finite(hi) else math.nan


def _holds_zero(d: dict[str, float]) -> bool:
    if not (_finite(d["lo"]) and _finite(d["hi"])):
        return d["difference"] == 0
    return d["lo"] <= 0 <= d["hi"]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
