"""Study fidelity: the same study on a model's release and on the exact release of the same plan."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_study import STUDY

from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError
from synthfair.fairness.fidelity import fidelity, summary
from synthfair.fairness.study import StudySpec, run_study
from synthfair.generate import finalize
from synthfair.generate.runner import GenerateConfig, generate
from synthfair.phantom.engine import PhantomEngineConfig


def test_a_release_compared_with_itself_has_perfect_fidelity(finalized_release, tmp_path):
    spec = dataclass_from_dict(StudySpec, {**STUDY, "baseline": False})
    result = run_study(spec, finalized_release, tmp_path / "study", truth=finalized_release)
    assert result.truth_results is not None and len(result.fidelity["by_cell"]) == 1
    metrics = result.fidelity["by_cell"][0]["metrics"]
    assert {"auroc", "equalized_odds_difference", "flip_rate", "ctf_de"} <= set(metrics)
    assert all(d["difference"] == 0 for d in metrics.values())
    assert all(row["intervals_holding_zero"] == 1 for row in result.fidelity["summary"].values())
    saved = json.loads((tmp_path / "study" / "results.json").read_text())
    assert saved["fidelity"]["summary"] and saved["truth_results"]
    assert "Study fidelity" in (tmp_path / "study" / "report.html").read_text()


def test_the_model_release_against_the_exact_one_of_the_same_plan(finalized_release, small_plan, tmp_path):
    exact = tmp_path / "exact"
    generate(small_plan, None, exact, GenerateConfig(engine=PhantomEngineConfig(size=16)))
    finalize(exact)
    spec = dataclass_from_dict(StudySpec, {**STUDY, "baseline": False})
    result = run_study(spec, finalized_release, tmp_path / "study", truth=exact)
    metrics = result.fidelity["by_cell"][0]["metrics"]
    assert "auroc" in metrics and all(math.isfinite(d["difference"]) for d in metrics.values())
    truth, model = result.truth_results[0], result.results[0]
    assert truth["subset"] == model["subset"]  # one subset, drawn from the truth, read from both releases


def test_a_model_release_of_part_of_the_plan_is_compared_on_the_samples_it_holds(
    finalized_release, small_plan, tmp_path
):
    exact = tmp_path / "exact"
    generate(small_plan, None, exact, GenerateConfig(engine=PhantomEngineConfig(size=16)))
    finalize(exact)
    spec = dataclass_from_dict(StudySpec, {**STUDY, "baseline": False})
    part = _keep(finalized_release, tmp_path / "part", lambda s: s["kind"] != "factual")
    result = run_study(spec, part, tmp_path / "study", truth=exact)
    drawn = pd.read_parquet(Path(result.results[0]["subset"]) / "subset.parquet")
    assert len(drawn) and set(drawn["key"]) <= set(pd.read_parquet(part / "samples.parquet")["key"])
    assert result.fidelity["by_cell"]
    none = _keep(finalized_release, tmp_path / "none", lambda s: s["kind"] == "nothing")
    with pytest.raises(ConfigError, match="share no sample"):
        run_study(spec, none, tmp_path / "again", truth=exact)


def _keep(release, out, keep):
    shutil.copytree(release, out)
    samples = pd.read_parquet(out / "samples.parquet")
    samples[keep(samples)].to_parquet(out / "samples.parquet")
    return out


def test_fidelity_differences_and_intervals():
    def result(value, lo, hi):
        return {
            "cell": {},
            "variant": "biased",
            "seed": 0,
            "groups": {
                "overall": {"auroc": value},
                "aggregates": {"auroc_gap": {"value": value, "lo": lo, "hi": hi}},
            },
        }

    [record] = fidelity([result(0.9, 0.8, 1.0)], [result(0.7, 0.6, 0.8)])
    gap = record["metrics"]["auroc_gap"]
    assert gap["difference"] == pytest.approx(0.2) and gap["lo"] < 0.2 < gap["hi"]
    assert gap["hi"] - gap["lo"] == pytest.approx(2 * 1.96 * math.sqrt(2) * 0.2 / 3.92)
    assert summary([record])["auroc_gap"]["intervals_holding_zero"] == 0.0  # a real difference
    with pytest.raises(ValueError, match="same order"):
        fidelity([result(0.9, 0.8, 1.0)], [{**result(0.7, 0.6, 0.8), "seed": 1}])
