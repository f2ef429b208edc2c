import json

import pandas as pd

from synthfair.demo import DemoConfig, run_demo


def test_demo_writes_source_grid_and_report(tmp_path):
    config = DemoConfig(
        n=4,
        size=32,
        workers=1,
        grid_rows=1,
        grid_size=32,
        anatomy="procedural",
        truth_subjects=1,
        cf_steps=2,
        privacy_n=6,
        study_families=4,
        bias_size=1,
        study=False,  # two classifiers need more than 4 families: tests/fairness/test_study.py
    )
    result = run_demo(tmp_path / "demo", config)
    assert len(pd.read_csv(result.source / "metadata.csv")) == 4
    assert result.grid.exists()
    report = result.report.read_text()
    assert "## Covariates" in report and "race mix by site" in report and str(result.grid) in report
    assert (result.index / "index.parquet").is_file() and (result.cache / "manifest.json").is_file()
    assert "## Index and training cache" in report
    assert result.truth_grid.is_file() and "## Model counterfactuals vs the phantom's exact" in report
    assert "| age=85 |" in report and "captured_direct" in report
    assert "## A generated release" in report and "sha256sum -c" in report
    assert (result.release / "manifest.json").is_file() and (result.release / "DATASET_CARD.md").is_file()
    assert (result.evaluation / "report.html").is_file() and "## Soundness of the demo release" in report
    assert "Privacy: " in report and "generated images are closer" in report
    assert "## A biased subset and its matched baseline" in report
    assert (result.subset / "subset.json").is_file() and (
        result.subset / "baseline" / "subset.json"
    ).is_file()
    request = json.loads((result.study_release / "release.json").read_text())
    assert request["generator"] == "phantom" and request["checkpoint_sha256"] is None  # the exact engine


def test_demo_training_chains_the_shipped_stages(cache, tmp_path, monkeypatch):
    """`--train` runs train-base.yaml, train-findings.yaml then train.yaml, each from the model of the one
    before, then the routes' stages (the HVAE, its classifiers, its fine-tuning) and routes the shipped keys
    to them (tiny stand-ins)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from conftest import TINY_HVAE, TINY_MODEL
    from synthfair import demo
    from synthfair.counterfactual import CounterfactualEngine, EngineConfig
    from synthfair.model.diffusion import ModelConfig
    from synthfair.model.hvae import HVAEConfig
    from synthfair.model.train import load_train_config

    def tiny(path):
        config = replace(load_train_config(path), steps=2, batch_size=4, checkpoint_every=1)
        if config.hvae is not None:
            return replace(config, hvae=HVAEConfig(**TINY_HVAE))
        return replace(config, model=ModelConfig(**TINY_MODEL))

    monkeypatch.setattr(demo, "load_train_config", tiny)
    monkeypatch.setattr(demo, "GUIDE_EPOCHS", 1)
    model = tmp_path / "runs" / "phantom-64"
    demo._train(SimpleNamespace(result=SimpleNamespace(train_caches=[cache] * 3, model=model)))
    shipped = EngineConfig.recommended(demo.pretrained_path("phantom-64")).routes
    engine = CounterfactualEngine.load(model)
    assert shipped and engine.config.routes == shipped and set(engine.routes) == set(demo.ROUTE_STAGES)
    stages = {
        p.name: json.loads((p / "train.json").read_text())["config"] for p in model.parent.glob("*-route-*")
    }
    assert len(stages) == 4  # the HVAE both HVAE routes start from is trained once
    starts = sorted(str(c["init_from"]) for c in stages.values())
    assert starts.count(str(model)) == 1 and starts.count("None") == 1  # F15 from phantom-64; the HVAE
    tuned = [c for c in stages.values() if c["tuning"]["classifiers"]]
    assert len(tuned) == 2 and {c["tuning"]["classifiers"] for c in tuned} == {
        str(model.parent / "phantom-64-guides")
    }
    first, second = (tmp_path / "runs" / f"phantom-64-stage{i}" for i in (1, 2))
    for run in (first, second, model):
        assert (run / "model" / "synthfair_model.json").is_file()
    middle = json.loads((second / "train.json").read_text())["config"]
    final = json.loads((model / "train.json").read_text())["config"]
    assert middle["init_from"] == str(first) and final["init_from"] == str(second)
    assert final["oversample"]["findings.cardiomegaly"] == 3


def test_demo_renders_each_count_of_training_subjects_once(tmp_path, monkeypatch):
    """Stages 2 and 3 learn from the same 10,000 subjects: rendered once, shared."""
    from types import SimpleNamespace

    from synthfair import demo

    rendered = []
    monkeypatch.setattr(demo, "_training_cache", lambda result, c, pc, on_image, n: rendered.append(n) or n)
    run = SimpleNamespace(
        config=DemoConfig(train=True), result=SimpleNamespace(), phantom_config=None, on_image=None
    )
    demo._training_subjects(run)
    assert rendered == [3000, 10000]
    assert run.result.train_caches == [3000, 10000, 10000] and run.result.train_cache == 10000


def test_demo_training_needs_one_subject_count_per_stage():
    import pytest

    from synthfair.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train_n=\(3000,\).*give one count"):
        DemoConfig(train=True, train_n=(3000,))
