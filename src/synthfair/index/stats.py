"""Counts of an index: per source, and per intersection of the patient covariates (x finding).

By default the intersected axes are the taxonomy's patient covariates that are not multi-label (age, sex and
race: age in its taxonomy bins), and each finding is counted within each intersection.

Intersections with fewer than ``min_count`` images are flagged: they are where a model (or a bias study) has
too little data to say anything, and where generated counterfactuals matter most.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from synthfair.errors import SynthfairError, did_you_mean
from synthfair.index import finding_columns
from synthfair.taxonomy import MISSING, Taxonomy, load_taxonomy

NO_FINDING = "no_finding"


@dataclass(frozen=True)
class IndexStats:
    """The result of `index_stats`; every table is a DataFrame with a ``few`` flag column where relevant."""

    by_source: pd.DataFrame  # dataset x split counts, plus covariate coverage (share non-missing)
    intersections: pd.DataFrame  # one row per intersection of the axes' domains (empty ones too), n and few
    findings: pd.DataFrame  # one row per (intersection, finding): positives n and few
    min_count: int
    axes: tuple[str, ...]

    @property
    def flagged(self) -> pd.DataFrame:
        """The intersections with fewer than ``min_count`` images."""
        return self.intersections[self.intersections["few"]]


def index_stats(
    index: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    axes: tuple[str, ...] | None = None,
    min_count: int = 10,
) -> IndexStats:
    """Count ``index`` (a DataFrame from `read_index`) per source and per intersection of ``axes``.

    A continuous axis (age) is binned by its taxonomy bins; missing values form their own group, shown as
    ``(missing)``, so that every image is counted once."""
    taxonomy = taxonomy or load_taxonomy()
    allowed = [c.name for c in taxonomy if c.kind != "multilabel"]
    if not axes:
        axes = tuple(n for n in taxonomy.by_group("patient") if n in allowed)
    for axis in axes:
        if axis not in allowed:
            raise SynthfairError(
                f"cannot intersect on {axis!r}{did_you_mean(axis, allowed)} (findings are counted within "
                "each intersection)",
                f"choose axes among {', '.join(allowed)}",
            )
    groups = taxonomy.group_labels(index, axes)
    full = pd.MultiIndex.from_product([_levels(taxonomy[a], groups[a]) for a in axes], names=list(axes))
    counts = groups.value_counts(dropna=False).reindex(full, fill_value=0)
    inter = counts.rename("n").reset_index()
    inter["few"] = inter["n"] < min_count
    return IndexStats(
        by_source=_by_source(index, taxonomy),
        intersections=inter,
        findings=_findings(index, groups, taxonomy, list(axes), min_count),
        min_count=min_count,
        axes=tuple(axes),
    )


def _levels(spec, observed: pd.Series) -> list[str]:
    """Every value of the axis in domain order (empty intersections are shown too), then (missing)."""
    levels = list(spec.bin_labels if spec.kind == "continuous" else spec.values)
    return levels + ([MISSING] if (observed == MISSING).any() else [])


def _by_source(index: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    counts = index.groupby(["dataset", "split"]).size().unstack(fill_value=0)
    counts["total"] = counts.sum(axis=1)
    for spec in taxonomy:
        covered = index[list(taxonomy.columns(spec.name))].notna().any(axis=1)
        counts[f"has_{spec.name}"] = covered.groupby(index["dataset"]).mean().round(3)
    return counts.reset_index()


def _findings(
    index: pd.DataFrame, groups: pd.DataFrame, taxonomy: Taxonomy, axes: list[str], min_count: int
) -> pd.DataFrame:
    cols = finding_columns(taxonomy)
    flags = index[cols].astype("Float64")
    positive = flags.fillna(0).astype(int)
    positive.columns = [c.split(".", 1)[1] for c in cols]
    labelled = flags.notna().any(axis=1)
    positive[NO_FINDING] = ((positive.sum(axis=1) == 0) & labelled).astype(int)
    table = pd.concat([groups, positive], axis=1).groupby(axes, dropna=False).sum()
    long = table.stack().rename("positives").reset_index().rename(columns={f"level_{len(axes)}": "finding"})
    long["few"] = long["positives"] < min_count
    return long
