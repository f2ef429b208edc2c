"""Fairness metrics: representation of groups, group metrics of a classifier, counterfactual fairness on
factual-counterfactual pairs, and the causal TV decomposition. Pure pandas/numpy/scikit-learn/fairlearn.

    rep = representation(sample, index, by=["age", "sex", "race"], target="findings.cardiomegaly")
    report = group_metrics(y_true, y_score, test[["sex", "race"]], threshold="f1")
    cf = counterfactual_fairness(pairs, "score", "score_cf", by=["sex"])
    dec = tv_decomposition(data, x="race", x0="white", x1="black", y="pred", z=["age_bin"], w=["finding"])

Studies: `run_study(load_study_spec("study.yaml"), "release/", "study/")`. Definitions: docs/fairness.md.
"""

from synthfair.fairness.causal import (
    Estimate,
    TrueTVDecomposition,
    TVDecomposition,
    true_tv_decomposition,
    tv_decomposition,
)
from synthfair.fairness.classifier import Classifier, ClassifierConfig, train_classifier
from synthfair.fairness.counterfactual import CounterfactualFairness, counterfactual_fairness
from synthfair.fairness.groups import GroupReport, f1_threshold, group_metrics
from synthfair.fairness.rebalance import RebalanceSpec, training_set
from synthfair.fairness.representation import Representation, log_disparity, representation, smoothed_edf
from synthfair.fairness.study import CausalSpec, StudyResult, StudySpec, load_study_spec, run_study

__all__ = [
    "CausalSpec",
    "Classifier",
    "ClassifierConfig",
    "RebalanceSpec",
    "StudyResult",
    "StudySpec",
    "load_study_spec",
    "run_study",
    "train_classifier",
    "training_set",
    "CounterfactualFairness",
    "Estimate",
    "GroupReport",
    "Representation",
    "TVDecomposition",
    "TrueTVDecomposition",
    "counterfactual_fairness",
    "f1_threshold",
    "group_metrics",
    "log_disparity",
    "representation",
    "smoothed_edf",
    "true_tv_decomposition",
    "tv_decomposition",
]
