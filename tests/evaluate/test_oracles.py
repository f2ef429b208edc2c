import numpy as np
import pytest
from PIL import Image

from source_files import phantom_row, write_phantom_source
from synthfair.errors import ConfigError, SynthfairError
from synthfair.evaluate.oracles import OracleConfig, Oracles, decorrelation_weights, train_oracles
from synthfair.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def sex_cache(tmp_path_factory):
    """60 images whose brightness shows the sex (and nothing else), 16 px, splits by row."""
    from synthfair.index.ingest import ingest
    from synthfair.index.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("oracle-data")
    rows = [
        phantom_row(i, split=("train", "train", "validate")[i % 3], sex=("female", "male")[(i // 3) % 2])
        for i in range(60)
    ]
    write_phantom_source(root / "src", rows, images=False)
    rng = np.random.default_rng(0)
    for row in rows:
        level = 15000 if row["sex"] == "female" else 45000
        pixels = np.clip(rng.normal(level, 6000, (24, 24)), 0, 65535).astype(np.uint16)
        Image.fromarray(pixels).save(root / "src" / row["image"])
    ingest("phantom", root / "src", root / "index")
    preprocess(root / "index", root / "cache", PreprocessConfig(size=16))
    return root / "cache"


def test_an_oracle_learns_a_visible_covariate_and_round_trips(sex_cache, tmp_path):
    config = OracleConfig(covariates=("sex", "age"), epochs=6, batch_size=8, learning_rate=3e-3)
    oracles = train_oracles(config, sex_cache, tmp_path / "oracles")
    assert oracles["sex"].metrics["accuracy"] >= 0.9 and oracles["sex"].metrics["n"] == 20
    assert "mae" in oracles["age"].metrics and oracles.report["held_out_split"] == "validate"
    loaded = Oracles.load(tmp_path / "oracles")
    images = np.random.default_rng(1).random((5, 16, 16)).astype(np.float32)
    for name in ("sex", "age"):
        np.testing.assert_allclose(loaded.predict(images)[name], oracles.predict(images)[name], rtol=1e-5)
    assert loaded["sex"].targets == ("female", "male") and loaded.predict(images)["sex"].shape == (5, 2)
    assert loaded["sex"].features(__import__("torch").from_numpy(images)[:, None]).shape[0] == 5
    with pytest.raises(SynthfairError, match="no oracle for 'race'"):
        loaded["race"]


def test_decorrelation_weights_remove_a_planted_association():
    taxonomy = load_taxonomy()
    rng = np.random.default_rng(0)
    sex = rng.choice(["female", "male"], 2000)
    view = np.where(
        rng.random(2000) < 0.85, np.where(sex == "female", "PA", "AP"), rng.choice(["PA", "AP"], 2000)
    )
    records = [{"sex": s, "view": v} for s, v in zip(sex, view, strict=True)]
    weights, before, after = decorrelation_weights(records, taxonomy, ["sex", "view"], OracleConfig(), rng)
    assert before["pair"] == ["sex", "view"] and before["v"] > 0.7
    assert after["v"] < 0.1 and abs(weights.sum() - 1) < 1e-9


def test_bad_oracle_settings_are_errors(sex_cache):
    with pytest.raises(ConfigError, match="epochs >= 1"):
        OracleConfig(epochs=0)
    with pytest.raises(ConfigError, match="'sax' is not in the taxonomy"):
        train_oracles(OracleConfig(covariates=("sax",), epochs=1), sex_cache)
    with pytest.raises(ConfigError, match="arch 'nonet'"):
        train_oracles(OracleConfig(covariates=("sex",), epochs=1, arch="nonet"), sex_cache)


def test_auc_over_the_classes_present():
    from synthfair.evaluate.oracles import auc

    truth = np.array([0, 0, 2, 2])  # class 1 of 3 never occurs: a binary AUC of class 2 against class 0
    prob = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.2, 0.1, 0.7], [0.3, 0.3, 0.4]])
    assert auc(truth, prob, 3) == 1.0
    assert auc(np.array([0, 1, 2]), np.eye(3), 3) == 1.0 and auc(np.array([1, 1]), np.eye(2), 2) is None
    assert auc(np.array([0, 1]), np.array([0.2, 0.9]), 1) == 1.0
