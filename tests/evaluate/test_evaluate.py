"""The evaluator end to end on a small generated phantom release, and its building blocks."""

import json

import numpy as np
import pandas as pd
import pytest

from synthfair.counterfactual import EngineConfig
from synthfair.evaluate.evaluate import NOT_MEASURED_GENERATOR, EvaluateConfig, evaluate
from synthfair.evaluate.oracles import OracleConfig, train_oracles
from synthfair.evaluate.samples import read_release
from synthfair.evaluate.soundness import summarize
from synthfair.generate.runner import GenerateConfig, generate
from synthfair.stats import mean_interval


@pytest.fixture(scope="module")
def release(small_plan, trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "release"
    generate(small_plan, trained_run, out, GenerateConfig(engine=EngineConfig(steps=3, batch_size=4)))
    return out


@pytest.fixture(scope="module")
def oracles(cache, tmp_path_factory):
    config = OracleConfig(covariates=("age", "sex", "findings"), epochs=1, batch_size=4)
    return train_oracles(config, cache, tmp_path_factory.mktemp("oracles") / "oracles")


def test_read_release_pairs_every_sample_with_its_factual(release):
    samples = read_release(release)
    assert len(samples.keys) == 24 and samples.images.shape == (24, 16, 16)
    for i in samples.of_kind("counterfactual"):
        f = samples.factual_of(i)
        assert samples.records[f]["kind"] == "factual"
        assert samples.records[f]["family"] == samples.records[i]["family"]


def test_the_report_has_every_section_and_says_what_it_could_not_measure(release, oracles, tmp_path):
    result = evaluate(release, oracles, tmp_path / "report", EvaluateConfig(bootstrap=20))
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["samples"] == 24 and metrics["kinds"]["counterfactual"] == 16
    labels = {row["label"] for row in metrics["effectiveness"]["by_intervention"]}
    assert {"age=25", "age=85"} <= labels and any(lbl.startswith("sex=") for lbl in labels)
    assert metrics["amplification"]["by_subgroup"] and metrics["phantom_truth"]["by_intervention"]
    assert metrics["composition"]["note"] == NOT_MEASURED_GENERATOR and "note" in metrics["privacy"]
    html = (tmp_path / "report" / "report.html").read_text()
    for heading in ("Effectiveness", "Amplification", "Phantom truth", "Realism", "Privacy", "Composition"):
        assert heading in html
    assert html.count("data:image/png;base64,") >= 8  # grids inline their images
    truth = result.tables["phantom_truth"]
    assert (truth["mae_model"] >= 0).all() and set(truth["kind"]) == {"reconstruction", "counterfactual"}


def test_the_generator_and_training_data_turn_on_composition_reversibility_and_privacy(
    release, oracles, trained_run, cache, tmp_path
):
    config = EvaluateConfig(composition_samples=2, cycles=2, reversibility_samples=3, bootstrap=20)
    result = evaluate(release, oracles, tmp_path / "r", config, checkpoint=trained_run, train_data=cache)
    overall = result.metrics["composition"]["overall"][0]
    assert overall["n"] == 2 and overall["l1_1"] < 0.01 and "l1_2" in overall  # the residual: near-exact
    assert len(result.tables["reversibility"]) == 3
    assert (
        result.metrics["privacy"]["train_images"] > 0
        and 0 <= result.metrics["privacy"]["memorized_share"] <= 1
    )


def test_summaries_and_bootstrap_intervals():
    table = pd.DataFrame({"g": ["a"] * 50 + ["b"] * 50, "x": np.r_[np.zeros(50), np.ones(50)]})
    out = summarize(table, ["g"], ["x"], resamples=50)
    assert out["x"].tolist() == [0.0, 1.0] and out["n"].tolist() == [50, 50]
    lo, hi = mean_interval(np.arange(100.0), np.random.default_rng(0))
    assert 40 < lo < 49.5 < hi < 59


def _phantom_generators(samples):
    """Images of three generators for the release's rows: the phantom's exact counterfactuals (perfect),
    the factual image (identity) and the exact counterfactual with the sex flipped as well (amplifying)."""
    from synthfair.phantom.engine import PhantomEngine, PhantomEngineConfig

    generation = samples.records[0]["generation"]
    engine = PhantomEngine(PhantomEngineConfig(size=generation["size"]), generation["fit"])
    out = {"perfect": [], "identity": [], "amplifying": []}
    for i, record in enumerate(samples.records):
        noise, do = record["phantom"], record["intervention"]
        exact = engine.counterfactual(noise, do).image
        out["perfect"].append(exact)
        out["identity"].append(samples.images[samples.factual_of(i)])
        flipped = {**do, "sex": "male" if record["covariates"]["sex"] == "female" else "female"}
        out["amplifying"].append(exact if "sex" in do else engine.counterfactual(noise, flipped).image)
    return {name: np.stack(images) for name, images in out.items()}


def test_phantom_truth_scores_an_exact_generator_perfectly_and_tells_bad_ones_apart(release, oracles):
    from dataclasses import replace

    from synthfair.evaluate.release_truth import phantom_truth

    samples = read_release(release)
    tables = {
        name: phantom_truth(replace(samples, images=images), oracles)
        for name, images in _phantom_generators(samples).items()
    }
    perfect, identity, amplifying = tables["perfect"], tables["identity"], tables["amplifying"]
    assert perfect["mae_model"].max() < 1e-4  # 16-bit PNG rounding only
    changed = perfect.dropna(subset=["effectiveness"])
    assert len(changed) >= 8 and np.allclose(changed["effectiveness"], 1, atol=1e-3)
    assert perfect["amplification"].max() < 1e-3
    assert np.allclose(identity["mae_model"], identity["mae_unchanged"], atol=1e-4)
    assert np.allclose(identity.dropna(subset=["effectiveness"])["effectiveness"], 0, atol=1e-6)
    not_sex = ~amplifying["label"].str.startswith("sex=")
    assert (amplifying.loc[not_sex, "mae_model"] > perfect.loc[not_sex, "mae_model"] + 1e-3).all()
    assert amplifying.loc[not_sex, "amplification"].mean() > 10 * perfect["amplification"].mean() + 1e-4
