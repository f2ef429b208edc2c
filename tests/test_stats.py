"""Bootstrap intervals: seeded, ordered, NaN-aware."""

import math

import numpy as np

from synthfair.stats import interval, mean_interval, percentile_interval, resample


def test_resamples_are_seeded_rows_with_replacement():
    a, b = resample(np.random.default_rng(3), 50), resample(np.random.default_rng(3), 50)
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() < 50 and len(np.unique(a)) < 50


def test_the_mean_interval_covers_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=20), rng.normal(size=2000)
    lo_s, hi_s = mean_interval(small, np.random.default_rng(1))
    lo_l, hi_l = mean_interval(large, np.random.default_rng(1))
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l and hi_l - lo_l < hi_s - lo_s
    assert mean_interval(np.array([4.0]), np.random.default_rng(1)) == (4.0, 4.0)


def test_percentile_intervals_ignore_resamples_without_a_statistic():
    boot = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    lo, hi = percentile_interval(boot)
    assert 1.0 <= lo[0] < hi[0] <= 3.0 and math.isnan(lo[1]) and math.isnan(hi[1])
    assert interval(boot[:, 0]) == (lo[0], hi[0])
    assert all(math.isnan(v) for v in interval(np.array([np.nan])))
    empty_lo, _ = percentile_interval(np.zeros((0, 2)))
    assert np.isnan(empty_lo).all()
