"""A study runs end to end on a tiny real release: cells, baselines, classifiers, fairness, report."""

import json

import pytest

from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError
from synthfair.fairness.study import StudySpec, load_study_spec, run_study

STUDY = {
    "base": {
        "size": 4,
        "seed": 0,
        "target": "findings.cardiomegaly",
        "prevalence": {"all": 0.5},
        "splits": {"train": 0.5, "test": 0.5},
    },
    "grid": {"prevalence.all": [0.5]},
    "groups": ["sex"],
    "classifier": {"epochs": 2, "batch_size": 2},
    "counterfactual": "sex",
    "causal": {"x": "sex", "x1": "female"},
    "n_boot": 10,
}


def test_a_study_cell_runs_end_to_end_and_writes_results_and_report(finalized_release, tmp_path):
    spec = dataclass_from_dict(StudySpec, STUDY)
    result = run_study(spec, finalized_release, tmp_path / "study")
    assert [(r["variant"], r["cell"]) for r in result.results] == [
        ("biased", {"prevalence.all": 0.5}),
        ("baseline", {"prevalence.all": 0.5}),
    ]
    first = result.results[0]
    assert first["groups"]["by_group"] and "auroc" in first["groups"]["overall"]
    assert "equalized_odds_difference" in first["groups"]["aggregates"]
    assert first["counterfactual"]["attribute"] == "sex" and first["counterfactual"]["pairs"] >= 1
    causal = first["causal"]
    assert set(causal) >= {"predictions", "training_labels", "z"}
    assert causal["predictions"]["w"][0] == "findings.cardiomegaly"  # the disease mediates predictions
    assert "findings.cardiomegaly" not in causal["training_labels"]["w"]  # ... but is the labels' outcome
    saved = json.loads((tmp_path / "study" / "results.json").read_text())
    assert saved["schema"] == "synthfair.study/1" and len(saved["results"]) == 2
    html = (tmp_path / "study" / "report.html").read_text()
    assert "data:image/png;base64," in html and "All cells" in html
    assert (tmp_path / "study" / "cells" / "00-biased" / "subset.json").is_file()
    assert not result.table("accuracy").empty


def test_study_specs_read_from_yaml_and_reject_bad_values(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "base: {size: 10, target: findings.cardiomegaly}\ngrid: {correlation.strength: [0.0, 0.5, 0.9]}\n"
        "threshold: f1\n"
    )
    spec = load_study_spec(path)
    assert [c["correlation.strength"] for c in spec.cells()] == [0.0, 0.5, 0.9]
    with pytest.raises(ConfigError, match="neither a number nor 'f1'"):
        dataclass_from_dict(StudySpec, {"base": {"size": 10, "target": "x"}, "threshold": "best"})
    with pytest.raises(ConfigError, match="has no values"):
        dataclass_from_dict(
            StudySpec, {"base": {"size": 10, "target": "x"}, "grid": {"correlation.strength": []}}
        )
    with pytest.raises(ConfigError, match="no target"):
        dataclass_from_dict(StudySpec, {"base": {"size": 10}})
    for n_boot in (0, -5):
        with pytest.raises(ConfigError, match="n_boot must be an integer >= 1"):
            dataclass_from_dict(StudySpec, {"base": {"size": 10, "target": "x"}, "n_boot": n_boot})


def test_rebalancing_methods_each_train_a_classifier(finalized_release, trained_run, tmp_path):
    base = {
        **STUDY["base"],
        "groups": ["sex"],
        "shares": {"female": 0.5},
        "prevalence": {"female": 1.0, "male": 0.0},
    }
    rebalance = {
        "attribute": "sex",
        "minority": "female",
        "methods": ["none", "reweight", "generate"],
        "steps": 2,
    }
    study = {**STUDY, "base": base, "grid": {}, "baseline": False, "rebalance": rebalance}
    spec = dataclass_from_dict(StudySpec, study)
    result = run_study(spec, finalized_release, tmp_path / "study", checkpoint=trained_run)
    variants = ["biased", "rebalance:none", "rebalance:reweight", "rebalance:generate"]
    assert [r["variant"] for r in result.results] == variants
    assert {r["rebalance"]["samples_per_epoch"] for r in result.results[1:]} == {
        result.results[1]["rebalance"]["samples_per_epoch"]
    }
    generated = result.results[-1]["rebalance"]
    assert generated["method"] == "generate" and generated["budget"] >= 1
    assert "Rebalancing the under-represented group" in (tmp_path / "study" / "report.html").read_text()
    with pytest.raises(ConfigError, match="no generator"):
        run_study(spec, finalized_release, tmp_path / "again")
