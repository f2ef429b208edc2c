import json

import numpy as np
import pandas as pd
import pytest

from synthfair.errors import ConfigError
from synthfair.fairness import counterfactual_fairness


def _pairs(score_fn, n=200, seed=0) -> pd.DataFrame:
    """Pairs that differ only in the protected attribute `a`, scored by `score_fn(feature, a)`."""
    rng = np.random.default_rng(seed)
    feature, a = rng.normal(size=n), rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "score": score_fn(feature, a),
            "score_cf": score_fn(feature, 1 - a),
        }
    )


def ignores_attribute(feature, a):
    return 1 / (1 + np.exp(-feature))


def uses_only_attribute(feature, a):
    return a.astype(float)


def test_classifier_ignoring_the_attribute_never_flips():
    cf = counterfactual_fairness(_pairs(ignores_attribute), "score", "score_cf", by=["sex"], n_boot=20)
    assert (cf.table["flip_rate"] == 0).all() and (cf.table["mean_abs_change"] == 0).all()
    assert (cf.table["flip_rate_hi"] == 0).all()


def test_classifier_using_only_the_attribute_always_flips():
    pairs = _pairs(uses_only_attribute)
    cf = counterfactual_fairness(pairs, "score", "score_cf", by=["sex"], n_boot=20)
    assert (cf.table["flip_rate"] == 1).all() and (cf.table["mean_abs_change"] == 1).all()
    assert cf.overall["mean_change"] == pytest.approx((pairs["score_cf"] - pairs["score"]).mean())


def test_flip_rate_and_changes_by_hand():
    pairs = pd.DataFrame(
        {
            "sex": ["f", "f", "m", "m"],
            "s": [0.2, 0.6, 0.7, 0.4],
            "s_cf": [0.3, 0.4, 0.8, 0.4],  # decisions at 0.5: 0->0, 1->0 (flip), 1->1, 0->0
        }
    )
    cf = counterfactual_fairness(pairs, "s", "s_cf", threshold=0.5, by=["sex"], n_boot=50, seed=3)
    table = cf.table.set_index("sex")
    assert table.loc["(all)", ["count", "flip_rate"]].tolist() == [4, 0.25]
    assert table.loc["(all)", "mean_change"] == pytest.approx(0.0)  # (0.1 - 0.2 + 0.1 + 0) / 4
    assert table.loc["(all)", "mean_abs_change"] == pytest.approx(0.1)
    assert table.loc["f", ["flip_rate", "mean_change", "mean_abs_change"]].tolist() == pytest.approx(
        [0.5, -0.05, 0.15]
    )
    assert table.loc["m", ["flip_rate", "mean_change", "mean_abs_change"]].tolist() == pytest.approx(
        [0.0, 0.05, 0.05]
    )
    assert 0 <= table.loc["f", "flip_rate_lo"] <= 0.5 <= table.loc["f", "flip_rate_hi"] <= 1
    out = cf.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["overall"]["flip_rate"] == 0.25 and len(out["table"]) == 3


def test_same_seed_same_intervals():
    pairs = _pairs(lambda f, a: 1 / (1 + np.exp(-(f + a))))
    one = counterfactual_fairness(pairs, "score", "score_cf", n_boot=30, seed=5)
    two = counterfactual_fairness(pairs, "score", "score_cf", n_boot=30, seed=5)
    pd.testing.assert_frame_equal(one.table, two.table)
    assert list(one.table.columns[:3]) == ["count", "flip_rate", "flip_rate_lo"]


def test_errors_name_the_column():
    pairs = pd.DataFrame({"score": [0.1], "score_cf": [None]})
    with pytest.raises(ConfigError, match="did you mean 'score_cf'"):
        counterfactual_fairness(pairs, "score", "score_cff")
    with pytest.raises(ConfigError, match="no numeric score"):
        counterfactual_fairness(pairs, "score", "score_cf")
