"""Representation of intersectional groups in a dataset (or subset) against a reference, and the smoothed
empirical differential fairness of a 0/1 target over those groups.

    rep = representation(sample, index, by=["age", "sex", "race"], target="findings.cardiomegaly")
    rep.table          # one row per intersection: counts, shares, log disparity, flags, prevalence
    rep.edf, rep.edf_reference

Definitions (docs: reference/metrics.md):
- B5 log disparity ``LD(g) = logit(p_S(g)) - logit(p_R(g))``: 0 = equal representation, < 0 under-,
  > 0 over-represented; ``-inf`` for a group absent from the data, ``+inf`` for one absent from the reference.
- B4 smoothed EDF (Foulds et al. 2020, AIF360): ``r_s = (N_pos,s + c/K) / (N_s + c)`` with ``K = 2``;
  ``eps = max over pairs (i, j) of max(|log r_i - log r_j|, |log(1 - r_i) - log(1 - r_j)|)`` over the
  observed intersections only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from synthfair.errors import ConfigError, did_you_mean
from synthfair.taxonomy import MISSING, Taxonomy, load_taxonomy

K_CLASSES = 2  # smoothed EDF of a binary outcome


@dataclass(frozen=True)
class Representation:
    """Per-intersection representation of ``data`` against ``reference``.

    ``table`` columns: the ``by`` columns (binned labels for continuous covariates), ``count``, ``share``,
    ``count_reference``, ``share_reference``, ``log_disparity``, flags ``missing`` (in the reference, not in
    the data), ``implausible`` (in the data, not in the reference), ``small`` (in the data with
    ``0 < count < min_count``) and, with a target, ``prevalence`` and ``prevalence_reference``.
    """

    table: pd.DataFrame
    by: tuple[str, ...]
    n: int  # rows of data
    n_reference: int
    n_groups: int  # intersections seen in data or reference
    n_missing: int
    n_implausible: int
    n_small: int
    max_abs_log_disparity: float  # over intersections present in both (finite LD); NaN if none
    min_count: int
    target: str | None = None
    edf: float | None = None  # smoothed EDF of the target over the data's observed intersections
    edf_reference: float | None = None
    concentration: float = 1.0

    def to_dict(self) -> dict:
        """JSON-ready summary and table (NaN -> None, +-inf -> "inf"/"-inf")."""
        out = {k: v for k, v in asdict(self).items() if k != "table"}
        out = {k: _json_value(v) for k, v in out.items()}
        out["by"] = list(self.by)
        out["table"] = [{k: _json_value(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        return out


def representation(
    data: pd.DataFrame,
    reference: pd.DataFrame,
    by: Sequence[str],
    target: str | None = None,
    taxonomy: Taxonomy | None = None,
    min_count: int = 10,
    concentration: float = 1.0,
) -> Representation:
    """Count, share and log disparity of every intersection of ``by`` in ``data`` vs ``reference``.

    Continuous covariates (e.g. ``age``) are binned by the taxonomy's ``bins``; other columns are used as
    they are. Missing values form their own level ``(missing)``. With ``target`` (a 0/1 column; missing
    target values are left out), the table gets the prevalence per group and the result the smoothed EDF
    of the target in the data and in the reference.
    """
    by = _check_by(by, data, reference)
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    groups = group_labels(data, by, taxonomy)
    groups_ref = group_labels(reference, by, taxonomy)
    table = _counts(groups, groups_ref, min_count)
    edf = edf_ref = None
    if target is not None:
        y, y_ref = _target(data, target, "data"), _target(reference, target, "reference")
        table = _add_prevalence(table, groups, y, groups_ref, y_ref, list(by))
        edf = _edf_or_none(y, groups, concentration)
        edf_ref = _edf_or_none(y_ref, groups_ref, concentration)
    both = table["log_disparity"][np.isfinite(table["log_disparity"])]
    return Representation(
        table=table,
        by=tuple(by),
        n=len(data),
        n_reference=len(reference),
        n_groups=len(table),
        n_missing=int(table["missing"].sum()),
        n_implausible=int(table["implausible"].sum()),
        n_small=int(table["small"].sum()),
        max_abs_log_disparity=float(both.abs().max()) if len(both) else math.nan,
        min_count=min_count,
        target=target,
        edf=edf,
        edf_reference=edf_ref,
        concentration=concentration,
    )


def smoothed_edf(y, groups, concentration: float = 1.0) -> float:
    """Smoothed empirical differential fairness ε of a 0/1 outcome over the observed groups (B4).

    ``y`` holds labels or thresholded predictions (0/1); ``groups`` is one label per row (array or Series)
    or a DataFrame with one column per attribute (intersections). Returns 0.0 for fewer than two groups.
    """
    y = _binary(pd.Series(np.asarray(y)).reset_index(drop=True), "y")
    frame = groups.reset_index(drop=True) if isinstance(groups, pd.DataFrame) else None
    frame = frame if frame is not None else pd.DataFrame({"group": np.asarray(groups)})
    if len(frame) != len(y):
        raise ConfigError(
            f"smoothed_edf: y has {len(y)} rows but groups has {len(frame)}", "pass one group per row"
        )
    if concentration < 0:
        raise ConfigError(f"smoothed_edf: concentration={concentration!r} is negative", "use c >= 0, e.g. 1")
    stats = y.groupby([frame[c].fillna(MISSING) for c in frame.columns]).agg(["sum", "size"])
    r = (stats["sum"].to_numpy(float) + concentration / K_CLASSES) / (stats["size"] + concentration)
    if len(r) < 2:
        return 0.0
    with np.errstate(divide="ignore"):
        log_r, log_not_r = np.log(r), np.log1p(-r)
    return float(max(np.ptp(log_r), np.ptp(log_not_r)))


def group_labels(frame: pd.DataFrame, by: Sequence[str], taxonomy: Taxonomy) -> pd.DataFrame:
    """One text label per row and ``by`` column (`synthfair.taxonomy.Taxonomy.group_labels`)."""
    return taxonomy.group_labels(frame, by)


def log_disparity(share: np.ndarray, share_reference: np.ndarray) -> np.ndarray:
    """``logit(p_S) - logit(p_R)`` elementwise; equal shares give 0 (also at 0 and 1), else +-inf at 0, 1."""
    p, q = np.asarray(share, float), np.asarray(share_reference, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ld = (np.log(p) - np.log1p(-p)) - (np.log(q) - np.log1p(-q))
    return np.where(p == q, 0.0, ld)


def _counts(groups: pd.DataFrame, groups_ref: pd.DataFrame, min_count: int) -> pd.DataFrame:
    count = groups.value_counts(sort=False).rename("count")
    count_ref = groups_ref.value_counts(sort=False).rename("count_reference")
    table = pd.concat([count, count_ref], axis=1).fillna(0).astype(int)
    table = table.sort_index(key=lambda level: level.astype(str))
    table["share"] = table["count"] / max(len(groups), 1)
    table["share_reference"] = table["count_reference"] / max(len(groups_ref), 1)
    table["log_disparity"] = log_disparity(table["share"].to_numpy(), table["share_reference"].to_numpy())
    table["missing"] = (table["count"] == 0) & (table["count_reference"] > 0)
    table["implausible"] = (table["count"] > 0) & (table["count_reference"] == 0)
    table["small"] = (table["count"] > 0) & (table["count"] < min_count)
    table = table[["count", "share", "count_reference", "share_reference", *table.columns[4:]]]
    return table.reset_index()


def _add_prevalence(table, groups, y, groups_ref, y_ref, by: list[str]) -> pd.DataFrame:
    prev = y.groupby([groups[c] for c in by]).mean().rename("prevalence")
    prev_ref = y_ref.groupby([groups_ref[c] for c in by]).mean().rename("prevalence_reference")
    both = pd.concat([prev, prev_ref], axis=1).reset_index()
    both.columns = [*by, "prevalence", "prevalence_reference"]
    return table.merge(both, on=by, how="left")


def _edf_or_none(y: pd.Series, groups: pd.DataFrame, concentration: float) -> float | None:
    keep = y.notna().to_numpy()
    return smoothed_edf(y[keep].astype(int), groups[keep], concentration) if keep.any() else None


def _target(frame: pd.DataFrame, target: str, where: str) -> pd.Series:
    if target not in frame:
        raise ConfigError(
            f"target {target!r} is not a column of the {where}{did_you_mean(target, frame.columns)}",
            "pass a 0/1 column, e.g. findings.cardiomegaly",
        )
    return _binary(frame[target], f"{where} column {target!r}", allow_missing=True)


def _binary(values: pd.Series, what: str, allow_missing: bool = False) -> pd.Series:
    x = pd.to_numeric(values, errors="coerce").astype(float)
    bad = (x.isna() & values.notna()) | ~(x.isin([0.0, 1.0]) | x.isna()) | (x.isna() & (not allow_missing))
    if bad.any():
        raise ConfigError(
            f"{what} holds {values[bad].iloc[0]!r} at row {values.index[bad][0]!r}, not 0 or 1",
            "threshold scores first, or drop rows with missing values",
        )
    return x


def _check_by(by: Sequence[str], data: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    if isinstance(by, str):
        by = [by]
    if not by:
        raise ConfigError("by is empty", "name at least one covariate, e.g. by=['sex', 'race']")
    for name in by:
        for where, frame in (("data", data), ("reference", reference)):
            if name not in frame:
                raise ConfigError(
                    f"by column {name!r} is not in the {where}{did_you_mean(name, frame.columns)}",
                    f"columns: {', '.join(map(str, frame.columns))}",
                )
    return list(by)


def _json_value(v):
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return v
