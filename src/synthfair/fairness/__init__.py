"""Fairness metrics: representation of groups, group metrics of a classifier, counterfactual fairness on
factual-counterfactual pairs, and the causal TV decomposition. Pure pandas/numpy/scikit-learn/fairlearn.

    rep = representation(sample, index, by=["age", "sex", "race"], target="findings.cardiomegaly")
    report = group_metrics(y_true, y_score, test[["sex", "race"]], threshold="f1")
    cf = counterfactual_fairness(pairs, "score", "score_cf", by=["sex"])
    dec = tv_decomposition(data, x="race", x0="white", x1="black", y="pred", z=["age_bin"], w=["finding"])

Studies: `run_study(load_study_spec("study.yaml"), "release/", "study/")`. Definitions: docs/fairness.md.
"""

# eager: a function named like its submodule (importing the submodule would shadow a lazy one)
from synthfair.fairness.representation import Representation, log_disparity, representation, smoothed_edf
from synthfair.lazy import lazy_attributes

_LAZY = {  # name -> module: imported on first use, so that importing one light submodule (e.g.
    # its constants) does not pull in torch through its heavy siblings
    "Estimate": "synthfair.fairness.causal",
    "TrueTVDecomposition": "synthfair.fairness.causal",
    "TVDecomposition": "synthfair.fairness.causal",
    "true_tv_decomposition": "synthfair.fairness.causal",
    "tv_decomposition": "synthfair.fairness.causal",
    "Classifier": "synthfair.fairness.classifier",
    "ClassifierConfig": "synthfair.fairness.classifier",
    "train_classifier": "synthfair.fairness.classifier",
    "CounterfactualFairness": "synthfair.fairness.counterfactual",
    "counterfactual_fairness": "synthfair.fairness.counterfactual",
    "GroupReport": "synthfair.fairness.groups",
    "f1_threshold": "synthfair.fairness.groups",
    "group_metrics": "synthfair.fairness.groups",
    "RebalanceSpec": "synthfair.fairness.rebalance",
    "training_set": "synthfair.fairness.rebalance",
    "Representation": "synthfair.fairness.representation",
    "log_disparity": "synthfair.fairness.representation",
    "representation": "synthfair.fairness.representation",
    "smoothed_edf": "synthfair.fairness.representation",
    "CausalSpec": "synthfair.fairness.study",
    "StudyResult": "synthfair.fairness.study",
    "StudySpec": "synthfair.fairness.study",
    "load_study_spec": "synthfair.fairness.study",
    "run_study": "synthfair.fairness.study",
}

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

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
