import numpy as np

from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.evaluate.phantom_truth import compare_with_truth, exact_counterfactuals, score
from synthfair.model.diffusion import DiffusionModel


def test_comparison_table_and_grid(trained_run, procedural_phantom):
    model = DiffusionModel.load(trained_run / "model")
    engine = CounterfactualEngine(model, None, EngineConfig(steps=3, batch_size=4))
    subjects = procedural_phantom.sample_subjects(2, seed=5)
    columns = [("factual", {}), ("sex=female", {"sex": "female"}), ("age=85", {"age": 85.0})]
    result = compare_with_truth(engine, procedural_phantom, subjects, columns)
    table = result.table.set_index("intervention")
    assert list(table.index) == ["factual", "sex=female", "age=85"] and table.loc["factual", "n"] == 0
    assert table.loc["age=85", "n"] == 2
    assert table.loc["factual", "mae_unchanged"] == 0 and table.loc["factual", "mae_model"] < 1e-5
    assert np.isnan(table.loc["factual", "captured"])
    assert table.loc["age=85", "mae_unchanged"] > 0  # the phantom really changes the image
    assert -1 <= table.loc["age=85", "cosine"] <= 1 and table.loc["age=85", "magnitude"] >= 0
    assert result.model.shape == result.truth.shape == (2, 3, 16, 16)
    assert result.grid(rows=2, edits=False).size == (3 * 16, 18 + 2 * 2 * 16)
    picture = np.asarray(result.grid(rows=2))  # truth, model, true edit, model edit per subject
    assert picture.shape == (18 + 2 * 4 * 16, 3 * 16)
    null_edits = picture[18 + 2 * 16 : 18 + 4 * 16, :16]  # the factual column: no edit, all grey
    assert np.all(np.abs(null_edits.astype(int) - 127) <= 1)


def test_scores_of_the_truth_of_doing_nothing_and_the_ceiling(procedural_phantom):
    ph = procedural_phantom
    subjects = [
        s for s in ph.sample_subjects(40, seed=2) if not ph.covariates(s)["findings"]["consolidation"]
    ][:4]
    columns = [("view=LATERAL", {"view": "LATERAL"}), ("+consolidation", {"findings": {"consolidation": 1}})]
    exact = exact_counterfactuals(ph, subjects, 32, columns, draws=6)
    perfect = score(exact, exact.truth).set_index("intervention")
    assert np.allclose(perfect["captured"], 1) and np.allclose(perfect["cosine"], 1)
    assert np.allclose(perfect["magnitude"], 1)
    nothing = score(exact, np.repeat(exact.factual[:, None], 2, axis=1)).set_index("intervention")
    assert np.allclose(nothing["captured"], 0) and np.allclose(nothing["magnitude"], 0)
    # the lateral view is identified by the factual image; where a consolidation appears is not
    assert perfect.loc["view=LATERAL", "captured_ceiling"] == 1.0
    assert perfect.loc["+consolidation", "captured_ceiling"] < 0.95
    assert perfect.loc["+consolidation", "cosine_ceiling"] < 0.999
    assert perfect.loc["view=LATERAL", "captured_draw"] == 1.0  # an exact sampler is exact when identified
    assert (
        perfect.loc["+consolidation", "captured_draw"]
        <= perfect.loc["+consolidation", "captured_ceiling"] + 0.05
    )


def test_captured_direct_leaves_out_subjects_whose_do_reaches_other_covariates():
    """+cardiomegaly: subject 0's counterfactual adds the finding alone (a small local edit); subject 1's also
    turns the view to AP through the SCM (a large global edit). A model that draws subject 0's heart exactly
    and leaves subject 1 alone captures little by the error over both, all of the direct edit."""
    from synthfair.evaluate.phantom_truth import ExactCounterfactuals

    factual = np.zeros((2, 8, 8), np.float32)
    truth = factual[:, None].copy()
    truth[0, 0, 3:5, 3:5] = 0.2  # the heart: 4 pixels
    truth[1, 0] = 0.5  # another view: every pixel
    no_findings = {"cardiomegaly": 0, "pleural_effusion": 0}
    covariates = [{"view": "PA", "findings": no_findings}] * 2
    changes = [
        [{"findings": {**no_findings, "cardiomegaly": 1}}],
        [{"findings": {**no_findings, "cardiomegaly": 1}, "view": "AP"}],
    ]
    exact = ExactCounterfactuals(("+cardiomegaly",), factual, truth, covariates, changes)
    model = np.stack([truth[0], factual[1][None]])
    row = score(exact, model).iloc[0]
    assert row["n"] == 2 and row["n_direct"] == 1
    assert row["captured_direct"] == 1.0 and row["captured"] < 0.05
