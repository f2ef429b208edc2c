import numpy as np

from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.evaluate.phantom_truth import compare_with_truth
from synthfair.model.diffusion import DiffusionModel


def test_comparison_table_and_grid(trained_run, procedural_phantom):
    model = DiffusionModel.load(trained_run / "model")
    engine = CounterfactualEngine(model, None, EngineConfig(steps=3, batch_size=4))
    subjects = procedural_phantom.sample_subjects(2, seed=5)
    columns = [("factual", {}), ("sex=female", {"sex": "female"}), ("age=85", {"age": 85.0})]
    result = compare_with_truth(engine, procedural_phantom, subjects, columns)
    table = result.table.set_index("intervention")
    assert list(table.index) == ["factual", "sex=female", "age=85"] and (table["n"] == 2).all()
    assert table.loc["factual", "mae_unchanged"] == 0 and table.loc["factual", "mae_model"] < 1e-5
    assert np.isnan(table.loc["factual", "captured"])
    assert table.loc["age=85", "mae_unchanged"] > 0  # the phantom really changes the image
    assert result.model.shape == result.truth.shape == (2, 3, 16, 16)
    picture = result.grid(rows=2)
    assert picture.size == (3 * 16, 18 + 2 * 2 * 16)
