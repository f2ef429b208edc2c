"""Group metrics of a binary classifier over (intersectional) groups, with bootstrap intervals.

    report = group_metrics(y_true, y_score, index[["sex", "race"]], threshold="f1", n_boot=100, seed=0)
    report.by_group        # one row per observed intersection: metric, metric_lo, metric_hi, count
    report.aggregates["worst_group_auroc"]   # {"value": ..., "lo": ..., "hi": ...}

Per-group metrics come from fairlearn's ``MetricFrame`` (several group columns = intersections; empty
intersections, NaN rows in fairlearn, are dropped). Aggregates follow MEDFAIR (worst-group AUROC, AUROC gap)
and fairlearn (``demographic_parity_difference``, ``equalized_odds_difference(agg="worst_case")``); see
reference/metrics.md B1-B3. A prediction is positive when ``score >= threshold``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import roc_auc_score

from synthfair.errors import ConfigError
from synthfair.fileio import jsonable
from synthfair.stats import percentile_interval


def count(y_true, y_pred) -> float:
    return float(len(y_true))


def positives(y_true, y_pred) -> float:
    """Number of rows with ``y_true == 1`` (sick patients, for a finding classifier)."""
    return float(np.sum(y_true))


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else math.nan


def f1(y_true, y_pred) -> float:
    """``2 TP / (2 TP + FP + FN)``; NaN when there is neither a positive label nor a positive prediction."""
    tp, fp, fn, _ = _confusion(y_true, y_pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def auroc(y_true, y_pred, y_score) -> float:
    """ROC AUC of the scores; NaN when the group holds only one class (sklearn would warn or raise)."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return math.nan
    return float(roc_auc_score(y_true, np.asarray(y_score)))


def tpr(y_true, y_pred) -> float:
    """True positive rate ``P(ŷ=1 | y=1)``; NaN without positives."""
    tp, _, fn, _ = _confusion(y_true, y_pred)
    return _ratio(tp, tp + fn)


def fpr(y_true, y_pred) -> float:
    """False positive rate ``P(ŷ=1 | y=0)``; NaN without negatives."""
    _, fp, _, tn = _confusion(y_true, y_pred)
    return _ratio(fp, fp + tn)


def fnr(y_true, y_pred) -> float:
    """False negative rate ``P(ŷ=0 | y=1)``; NaN without positives."""
    tp, _, fn, _ = _confusion(y_true, y_pred)
    return _ratio(fn, tp + fn)


def selection_rate(y_true, y_pred) -> float:
    """``P(ŷ=1)``, the quantity demographic parity compares."""
    return float(np.mean(y_pred)) if len(y_pred) else math.nan


def underdiagnosis_rate(y_true, y_pred) -> float:
    """Share of sick patients (``y_true = 1``) predicted healthy: the FNR of the finding classifier.

    This is Seyyed-Kalantari et al.'s (Nat Med 2021) underdiagnosis rate expressed for a *finding*
    classifier: their FPR of "No Finding" (predicted no finding, truly has one) is our FNR of "any finding".
    """
    return fnr(y_true, y_pred)


METRICS: dict[str, Callable] = {
    "count": count,
    "positives": positives,
    "accuracy": accuracy,
    "f1": f1,
    "auroc": auroc,
    "tpr": tpr,
    "fpr": fpr,
    "fnr": fnr,
    "selection_rate": selection_rate,
    "underdiagnosis_rate": underdiagnosis_rate,
}
AGGREGATES = (
    "worst_group_auroc",  # min over groups of AUROC (MEDFAIR)
    "auroc_gap",  # max - min group AUROC (MEDFAIR)
    "demographic_parity_difference",  # fairlearn, between groups
    "equalized_odds_difference",  # fairlearn, agg="worst_case": max(TPR gap, FPR gap)
    "accuracy_gap",  # max - min group accuracy
    "worst_group_accuracy",  # min group accuracy
)


@dataclass(frozen=True)
class GroupReport:
    """Per-group and overall metrics, fairness aggregates and their bootstrap intervals."""

    by_group: pd.DataFrame  # index: the group columns; columns: <metric>, <metric>_lo, <metric>_hi, count
    overall: dict[str, float]
    aggregates: dict[str, dict[str, float]]  # name -> {"value", "lo", "hi"}
    threshold: float
    n_boot: int
    seed: int
    group_columns: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        """JSON-ready: groups as records (group columns first), NaN -> None."""
        records = self.by_group.reset_index().to_dict("records")
        return {
            "threshold": jsonable(self.threshold),
            "n_boot": self.n_boot,
            "seed": self.seed,
            "group_columns": list(self.group_columns),
            "overall": {k: jsonable(v) for k, v in self.overall.items()},
            "aggregates": {k: {s: jsonable(v) for s, v in d.items()} for k, d in self.aggregates.items()},
            "by_group": [{str(k): jsonable(v) for k, v in row.items()} for row in records],
        }


def group_metrics(
    y_true,
    y_score,
    groups: pd.DataFrame,
    threshold: float | str = 0.5,
    n_boot: int = 100,
    seed: int = 0,
) -> GroupReport:
    """Metrics of ``y_score >= threshold`` against ``y_true`` (0/1) per intersection of ``groups``' columns.

    ``threshold`` is a number or ``"f1"``: the threshold maximising the overall F1 (MEDFAIR convention),
    chosen once on all rows and kept fixed in the bootstrap. Intervals are percentile (2.5, 97.5) intervals
    over ``n_boot`` resamples of rows drawn with replacement within each group (group sizes are kept, so
    ``count`` has no interval), from ``numpy.random.default_rng(seed)``.
    """
    y, score, groups = _check_inputs(y_true, y_score, groups)
    cut = f1_threshold(y, score) if threshold == "f1" else _check_threshold(threshold)
    pred = (score >= cut).astype(int)
    by_group, overall, aggregates = _evaluate(y, pred, score, groups)
    boot_groups, boot_aggs = _bootstrap(y, pred, score, groups, by_group.index, n_boot, seed)
    return GroupReport(
        by_group=_with_intervals(by_group, boot_groups),
        overall=overall,
        aggregates={k: {"value": v, **_interval(boot_aggs[k])} for k, v in aggregates.items()},
        threshold=float(cut),
        n_boot=n_boot,
        seed=seed,
        group_columns=tuple(groups.columns),
    )


def f1_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The score threshold (predict ``score >= t``) maximising F1; the highest such threshold on ties."""
    order = np.argsort(-y_score, kind="stable")
    s, y = y_score[order], y_true[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    tp, predicted = np.cumsum(y)[last], np.arange(1, len(y) + 1)[last]
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.nan_to_num(2 * tp / (predicted + y.sum()))
    return float(s[last][int(np.argmax(scores))])


def _evaluate(y, pred, score, groups: pd.DataFrame):
    """(by_group DataFrame without empty intersections, overall dict, aggregates dict), via fairlearn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn/fairlearn warn on one-class or empty groups; NaN stands in
        frame = MetricFrame(
            metrics=METRICS,
            y_true=y,
            y_pred=pred,
            sensitive_features=groups,
            sample_params={"auroc": {"y_score": score}},
        )
        dp = demographic_parity_difference(y, pred, sensitive_features=groups)
        eo = equalized_odds_difference(y, pred, sensitive_features=groups, agg="worst_case")
    by_group = frame.by_group.dropna(subset=["count"]).astype(float)
    overall = {k: float(v) for k, v in frame.overall.items()}
    return by_group, overall, _aggregates(by_group, float(dp), float(eo))


def _aggregates(by_group: pd.DataFrame, dp: float, eo: float) -> dict[str, float]:
    return {
        "worst_group_auroc": _nan_min(by_group["auroc"]),
        "auroc_gap": _nan_max(by_group["auroc"]) - _nan_min(by_group["auroc"]),
        "demographic_parity_difference": dp,
        "equalized_odds_difference": eo,
        "accuracy_gap": _nan_max(by_group["accuracy"]) - _nan_min(by_group["accuracy"]),
        "worst_group_accuracy": _nan_min(by_group["accuracy"]),
    }


def _fairlearn_differences(by_group: pd.DataFrame) -> tuple[float, float]:
    """fairlearn's DP and worst-case EO differences from a by-group table (fairlearn counts an undefined
    TPR or FPR as 0), so that resamples need no second MetricFrame."""
    dp = np.ptp(by_group["selection_rate"])
    eo = max(np.ptp(by_group["tpr"].fillna(0.0)), np.ptp(by_group["fpr"].fillna(0.0)))
    return float(dp), float(eo)


def _bootstrap(y, pred, score, groups: pd.DataFrame, index: pd.Index, n_boot: int, seed: int):
    """Per-group metrics (n_boot, groups, metrics) and aggregates (name -> n_boot values) over resamples.

    Rows are resampled within each group; the metric functions are the ones MetricFrame applies, called
    per group directly (a MetricFrame per resample would be ~100x slower).
    """
    rng = np.random.default_rng(seed)
    strata = _strata(groups, index)
    by_group = np.full((n_boot, len(index), len(METRICS)), np.nan)
    aggregates = {k: np.full(n_boot, np.nan) for k in AGGREGATES}
    for b in range(n_boot):
        for g, rows in enumerate(strata):
            r = rng.choice(rows, size=len(rows), replace=True)
            by_group[b, g] = _metric_row(y[r], pred[r], score[r])
        table = pd.DataFrame(by_group[b], index=index, columns=list(METRICS))
        for k, v in _aggregates(table, *_fairlearn_differences(table)).items():
            aggregates[k][b] = v
    return by_group, aggregates


def _strata(groups: pd.DataFrame, index: pd.Index) -> list[np.ndarray]:
    """Row positions of each group, in the order of ``index`` (fairlearn's by_group index)."""
    indices = groups.groupby(list(groups.columns), sort=False).indices
    rows = {(k if isinstance(k, tuple) else (k,)): v for k, v in indices.items()}
    return [rows[k if isinstance(k, tuple) else (k,)] for k in index]


def _metric_row(y, pred, score) -> list[float]:
    return [fn(y, pred, y_score=score) if name == "auroc" else fn(y, pred) for name, fn in METRICS.items()]


def _with_intervals(table: pd.DataFrame, boot: np.ndarray) -> pd.DataFrame:
    out = {}
    for j, name in enumerate(table.columns):
        if name == "count":
            continue
        lo, hi = percentile_interval(boot[:, :, j])
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = table[name], lo, hi
    out["count"] = table["count"].astype(int)
    return pd.DataFrame(out, index=table.index)


def _interval(values: np.ndarray) -> dict[str, float]:
    lo, hi = percentile_interval(values[:, None])
    return {"lo": float(lo[0]), "hi": float(hi[0])}


def _check_inputs(y_true, y_score, groups):
    y = np.asarray(y_true, dtype=float).ravel()
    score = np.asarray(y_score, dtype=float).ravel()
    groups = groups.to_frame() if isinstance(groups, pd.Series) else groups
    if not isinstance(groups, pd.DataFrame):
        raise ConfigError(
            f"groups is a {type(groups).__name__}", "pass a DataFrame, one column per attribute"
        )
    if not (len(y) == len(score) == len(groups)):
        raise ConfigError(
            f"y_true, y_score and groups have {len(y)}, {len(score)} and {len(groups)} rows",
            "pass one label, score and group row per sample",
        )
    if len(y) == 0:
        raise ConfigError("no rows to evaluate", "pass at least one sample")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ConfigError(f"y_true holds {y[~np.isin(y, (0.0, 1.0))][0]!r}, not 0 or 1", "pass 0/1 labels")
    if np.isnan(score).any():
        raise ConfigError(
            f"y_score is NaN at row {int(np.flatnonzero(np.isnan(score))[0])}", "drop those rows"
        )
    missing = groups.isna().any()
    if missing.any():
        name = missing.index[missing][0]
        raise ConfigError(
            f"groups column {name!r} has {int(groups[name].isna().sum())} missing values",
            "fill them with a level of their own (groups.fillna('(missing)')) or drop those rows",
        )
    return y.astype(int), score, groups.reset_index(drop=True)


def _check_threshold(threshold) -> float:
    if isinstance(threshold, str) or not np.isfinite(threshold):
        raise ConfigError(f"threshold={threshold!r} is not a number nor 'f1'", "use e.g. 0.5 or 'f1'")
    return float(threshold)


def _confusion(y_true, y_pred) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) of 0/1 arrays."""
    y, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    return int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p)), int(np.sum(~y & ~p))


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else math.nan


def _nan_min(values: pd.Series) -> float:
    return float(values.min()) if values.notna().any() else math.nan


def _nan_max(values: pd.Series) -> float:
    return float(values.max()) if values.notna().any() else math.nan
