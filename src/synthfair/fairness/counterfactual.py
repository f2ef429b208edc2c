"""Counterfactual fairness of a classifier on factual-counterfactual pairs that differ only in a protected
attribute (e.g. the same radiograph under do(race=black) and do(race=white)).

    cf = counterfactual_fairness(pairs, "score", "score_cf", threshold=0.5, by=["sex"], n_boot=100)
    cf.table   # rows: overall, then per subgroup; count, flip_rate, mean_change, mean_abs_change (+ lo, hi)

A decision is ``score >= threshold``. The flip rate is the share of pairs whose decision differs: 0 for a
classifier that ignores the attribute, 1 for one that decides on the attribute alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthfair.errors import ConfigError, did_you_mean
from synthfair.fileio import jsonable
from synthfair.stats import percentile_interval, resample

STATISTICS = ("flip_rate", "mean_change", "mean_abs_change")
OVERALL = "(all)"  # the value of the `by` columns in the overall row


@dataclass(frozen=True)
class CounterfactualFairness:
    """Flip rate and score changes, overall (first row, ``by`` columns = ``(all)``) and per subgroup.

    ``table`` columns: the ``by`` columns, ``count``, then ``<stat>``, ``<stat>_lo``, ``<stat>_hi`` for
    ``flip_rate`` (decision differs), ``mean_change`` (mean of counterfactual - factual score) and
    ``mean_abs_change``.
    """

    table: pd.DataFrame
    threshold: float
    by: tuple[str, ...]
    n_boot: int
    seed: int

    @property
    def overall(self) -> dict[str, float]:
        """The overall row as a dict."""
        return {k: v for k, v in self.table.iloc[0].items() if k not in self.by}

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None)."""
        rows = [{k: jsonable(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        head = {"threshold": self.threshold, "by": list(self.by), "n_boot": self.n_boot, "seed": self.seed}
        return {**head, "overall": rows[0], "table": rows}


def counterfactual_fairness(
    pairs: pd.DataFrame,
    score_factual: str,
    score_counterfactual: str,
    threshold: float = 0.5,
    by: Sequence[str] = (),
    n_boot: int = 100,
    seed: int = 0,
) -> CounterfactualFairness:
    """Decision flip rate and mean (signed, absolute) score change between the two columns of ``pairs``.

    One row per pair. Intervals are percentile (2.5, 97.5) intervals over ``n_boot`` resamples of the
    pairs (within each subgroup for subgroup rows) drawn from ``numpy.random.default_rng(seed)``.
    """
    by = [by] if isinstance(by, str) else list(by)
    _check_columns(pairs, [score_factual, score_counterfactual, *by])
    s0 = _scores(pairs, score_factual)
    s1 = _scores(pairs, score_counterfactual)
    flip = ((s0 >= threshold) != (s1 >= threshold)).astype(float)
    change = s1 - s0
    values = np.stack([flip, change, np.abs(change)], axis=1)  # (pairs, 3)
    rng = np.random.default_rng(seed)
    rows = [{**{c: OVERALL for c in by}, **_summary(values, n_boot, rng)}]
    if by:
        for key, idx in pairs.reset_index(drop=True).groupby(by, sort=True, dropna=False).indices.items():
            key = key if isinstance(key, tuple) else (key,)
            rows.append({**dict(zip(by, key, strict=True)), **_summary(values[idx], n_boot, rng)})
    return CounterfactualFairness(
        table=pd.DataFrame(rows), threshold=float(threshold), by=tuple(by), n_boot=n_boot, seed=seed
    )


def _summary(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    """count, the statistics (column means of ``values``) and their bootstrap intervals."""
    n = len(values)
    point = values.mean(axis=0)
    lo = hi = np.full(len(STATISTICS), np.nan)
    if n_boot:
        boot = np.stack([values[resample(rng, n)].mean(axis=0) for _ in range(n_boot)])
        lo, hi = percentile_interval(boot)
    out: dict[str, float] = {"count": n}
    for j, name in enumerate(STATISTICS):
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = float(point[j]), float(lo[j]), float(hi[j])
    return out


def _scores(pairs: pd.DataFrame, column: str) -> np.ndarray:
    x = pd.to_numeric(pairs[column], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(np.isnan(x))
    if len(bad):
        raise ConfigError(
            f"pairs column {column!r} has no numeric score at row {pairs.index[bad[0]]!r} ({len(bad)} rows)",
            "drop pairs without a score for both the factual and the counterfactual",
        )
    return x


def _check_columns(pairs: pd.DataFrame, columns: list[str]) -> None:
    if len(pairs) == 0:
        raise ConfigError("pairs is empty", "pass one row per factual-counterfactual pair")
    for name in columns:
        if name not in pairs:
            raise ConfigError(
                f"pairs has no column {name!r}{did_you_mean(name, pairs.columns)}",
                f"columns: {', '.join(map(str, pairs.columns))}",
            )
