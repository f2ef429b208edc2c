"""Bootstrap intervals in one place: every interval synthfair reports is a 95% percentile bootstrap interval.

    rng = np.random.default_rng(seed)
    lo, hi = mean_interval(values, rng, resamples=200)          # of the mean of values
    boot = np.stack([statistic(values[resample(rng, n)]) for _ in range(n_boot)])
    lo, hi = percentile_interval(boot)                          # per column; NaN where no resample counts

Resampling draws from the generator passed in, so the same seed gives the same intervals.
"""

from __future__ import annotations

import math

import numpy as np

QUANTILES = (2.5, 97.5)  # the percentile bootstrap interval's bounds


def resample(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` row positions drawn with replacement: one bootstrap resample of ``n`` rows."""
    return rng.integers(0, n, size=n)


def percentile_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interval along axis 0 of bootstrap statistics ``values`` (resamples, ...), ignoring NaN resamples
    (those without a statistic); NaN where every resample is NaN or there are none."""
    values = np.asarray(values, dtype=float)
    lo = np.full(values.shape[1:], np.nan)
    hi = lo.copy()
    ok = ~np.isnan(values).all(axis=0)
    if values.shape[0] and ok.any():
        lo[ok], hi[ok] = np.nanpercentile(values[:, ok], QUANTILES, axis=0)
    return lo, hi


def interval(values: np.ndarray) -> tuple[float, float]:
    """`percentile_interval` of one statistic's resamples, as floats (NaN, NaN without any)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    lo, hi = np.percentile(values, QUANTILES)
    return float(lo), float(hi)


def mean_interval(values: np.ndarray, rng: np.random.Generator, resamples: int = 200) -> tuple[float, float]:
    """The interval of the mean of ``values`` over ``resamples`` resamples (the mean itself for one value)."""
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, QUANTILES)
    return float(lo), float(hi)
