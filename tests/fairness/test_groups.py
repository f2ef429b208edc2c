import json
import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from synthfair.errors import ConfigError
from synthfair.fairness import f1_threshold, group_metrics
from synthfair.fairness.groups import _fairlearn_differences

# 10 rows, two groups. At threshold 0.5:
#   A: y 1 1 0 0 0, score .9 .4 .6 .2 .1 -> pred 1 0 1 0 0: TP 1, FN 1, FP 1, TN 2
#   B: y 1 1 1 0 0, score .8 .7 .15 .6 .2 -> pred 1 1 0 1 0: TP 2, FN 1, FP 1, TN 1
Y = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0, 0])
SCORE = np.array([0.9, 0.4, 0.6, 0.2, 0.1, 0.8, 0.7, 0.15, 0.6, 0.2])
GROUPS = pd.DataFrame({"sex": ["A"] * 5 + ["B"] * 5})


@pytest.fixture(scope="module")
def report():
    return group_metrics(Y, SCORE, GROUPS, threshold=0.5, n_boot=30, seed=0)


def test_per_group_metrics_by_hand(report):
    a, b = report.by_group.loc["A"], report.by_group.loc["B"]
    assert (a["count"], a["positives"], b["count"], b["positives"]) == (5, 2, 5, 3)
    assert (a["tpr"], a["fpr"], a["fnr"]) == pytest.approx((1 / 2, 1 / 3, 1 / 2))
    assert (b["tpr"], b["fpr"], b["fnr"]) == pytest.approx((2 / 3, 1 / 2, 1 / 3))
    assert (a["selection_rate"], b["selection_rate"]) == pytest.approx((2 / 5, 3 / 5))
    assert (a["accuracy"], b["accuracy"]) == pytest.approx((3 / 5, 3 / 5))
    assert (a["f1"], b["f1"]) == pytest.approx((2 / 4, 4 / 6))  # 2TP / (2TP + FP + FN)
    # AUROC = share of (positive, negative) pairs ranked correctly: A 5 of 6, B 4 of 6
    assert (a["auroc"], b["auroc"]) == pytest.approx((5 / 6, 4 / 6))
    assert a["underdiagnosis_rate"] == a["fnr"] and b["underdiagnosis_rate"] == b["fnr"]


def test_overall_and_aggregates_by_hand(report):
    overall = report.overall
    assert (overall["tpr"], overall["fpr"], overall["accuracy"]) == pytest.approx((3 / 5, 2 / 5, 6 / 10))
    assert overall["auroc"] == pytest.approx(19 / 25)
    agg = {k: v["value"] for k, v in report.aggregates.items()}
    assert agg["demographic_parity_difference"] == pytest.approx(0.2)  # |2/5 - 3/5|
    assert agg["equalized_odds_difference"] == pytest.approx(1 / 6)  # max(|1/2-2/3|, |1/3-1/2|)
    assert agg["worst_group_auroc"] == pytest.approx(4 / 6)
    assert agg["auroc_gap"] == pytest.approx(1 / 6)
    assert (agg["accuracy_gap"], agg["worst_group_accuracy"]) == pytest.approx((0.0, 0.6))


def test_bootstrap_intervals_are_seeded_and_ordered(report):
    table = report.by_group
    for metric in ("accuracy", "auroc", "tpr", "selection_rate"):
        assert (table[f"{metric}_lo"] <= table[f"{metric}_hi"]).all()
    for value in report.aggregates.values():
        assert value["lo"] <= value["hi"]
    again = group_metrics(Y, SCORE, GROUPS, threshold=0.5, n_boot=30, seed=0)
    pd.testing.assert_frame_equal(again.by_group, table)
    other = group_metrics(Y, SCORE, GROUPS, threshold=0.5, n_boot=30, seed=1)
    assert not other.by_group.equals(table)


def test_constant_group_has_a_degenerate_interval():
    y = np.array([1, 1, 1, 0, 1, 0])
    score = np.array([0.9, 0.9, 0.9, 0.2, 0.8, 0.6])
    groups = pd.DataFrame({"g": list("aaabbb")})
    table = group_metrics(y, score, groups, n_boot=20).by_group
    assert table.loc["a", ["tpr", "tpr_lo", "tpr_hi"]].tolist() == [1.0, 1.0, 1.0]


def test_f1_threshold_by_hand():
    # scores descending: .9p .8p .7p .6n .6n .4p .2n .2n .15p .1n; F1 = 2TP / (predicted + 5)
    # t=.9: 2/6, .8: 4/7, .7: 6/8 (best), .6: 6/10, .4: 8/11, .2: 8/13, .15: 10/14, .1: 10/15
    assert f1_threshold(Y, SCORE) == 0.7
    report = group_metrics(Y, SCORE, GROUPS, threshold="f1", n_boot=0)
    assert report.threshold == 0.7 and report.overall["f1"] == pytest.approx(0.75)


@pytest.mark.filterwarnings("error")
def test_intersections_one_class_groups_and_empty_cells():
    groups = pd.DataFrame({"sex": list("ffffmmmm"), "race": list("aabbaaaa")})  # (m, b) is empty
    y = np.array([1, 0, 1, 1, 0, 1, 1, 0])
    score = np.array([0.8, 0.3, 0.6, 0.4, 0.2, 0.9, 0.7, 0.6])
    report = group_metrics(y, score, groups, n_boot=10)
    assert list(report.by_group.index) == [("f", "a"), ("f", "b"), ("m", "a")]
    fb = report.by_group.loc[("f", "b")]
    assert np.isnan(fb["auroc"]) and np.isnan(fb["fpr"]) and fb["tpr"] == 0.5
    assert report.aggregates["worst_group_auroc"]["value"] == pytest.approx(1.0)
    json.dumps(report.to_dict(), allow_nan=False)


def test_resample_aggregates_match_fairlearn():
    rng = np.random.default_rng(0)
    groups = pd.DataFrame({"sex": rng.choice(["f", "m"], 200), "race": rng.choice(["a", "b", "c"], 200)})
    y = rng.integers(0, 2, 200)
    y[(groups["race"] == "c").to_numpy()] = 0  # a group without positives: fairlearn counts TPR as 0
    score = rng.random(200)
    report = group_metrics(y, score, groups, n_boot=0)
    pred = (score >= 0.5).astype(int)
    dp, eo = _fairlearn_differences(report.by_group)
    assert dp == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=groups))
    assert eo == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=groups))
    assert math.isnan(report.aggregates["auroc_gap"]["lo"])  # no resamples, no interval


@pytest.mark.parametrize(
    ("y", "score", "groups", "match"),
    [
        ([0, 2], [0.1, 0.2], pd.DataFrame({"g": ["a", "b"]}), "not 0 or 1"),
        ([0, 1], [0.1], pd.DataFrame({"g": ["a", "b"]}), "rows"),
        ([0, 1], [0.1, 0.2], pd.DataFrame({"g": ["a", None]}), "missing values"),
    ],
)
def test_bad_inputs_are_named(y, score, groups, match):
    with pytest.raises(ConfigError, match=match):
        group_metrics(y, score, groups)


def test_bad_threshold():
    with pytest.raises(ConfigError, match="'best'"):
        group_metrics(Y, SCORE, GROUPS, threshold="best")
