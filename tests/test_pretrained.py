import pytest

from synthfair.counterfactual import CounterfactualEngine
from synthfair.errors import SynthfairError
from synthfair.model.train import load_train_config
from synthfair.pretrained import TRAIN_CONFIG, pretrained_path


def test_the_shipped_model_loads_with_its_scm_and_config():
    path = pretrained_path("phantom-64")
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size <= 15 * 2**20, f"{size / 2**20:.1f} MB"
    engine = CounterfactualEngine.load(path)
    assert engine.size == 64 and engine.scm is not None
    config = load_train_config(path / TRAIN_CONFIG)
    assert config.model == engine.model.config
    assert (path / "PROVENANCE.md").read_text().count("synthfair") >= 2


def test_unknown_pretrained_name():
    with pytest.raises(SynthfairError, match="did you mean 'phantom-64'"):
        pretrained_path("phantom-46")
