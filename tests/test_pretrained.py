import hashlib
from pathlib import Path

import pytest

from synthfair.counterfactual import CounterfactualEngine
from synthfair.errors import SynthfairError
from synthfair.model.train import load_train_config
from synthfair.pretrained import TRAIN_CONFIG, TRAIN_STAGES, pretrained_path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_shipped_model_loads_with_its_scm_and_config():
    path = pretrained_path("phantom-64")
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"{size / 2**20:.1f} MB"  # four image models, each a few MB
    engine = CounterfactualEngine.load(path)
    assert engine.size == 64 and engine.scm is not None
    config = load_train_config(path / TRAIN_CONFIG)
    assert config.model == engine.model.config
    provenance = (path / "PROVENANCE.md").read_text()
    assert provenance.count("synthfair") >= 2
    for name in ("unet/diffusion_pytorch_model.safetensors", "scm/scm.json", "subjects.npy"):
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() in provenance, name


def test_the_shipped_training_stages_are_the_presets_and_chain():
    """train-base.yaml, train-findings.yaml, train.yaml: the same files as configs/phantom-base-64.yaml,
    phantom-findings-64.yaml and phantom-64.yaml; each later stage starts from the run of the one before."""
    path = pretrained_path("phantom-64")
    presets = ["phantom-base-64.yaml", "phantom-findings-64.yaml", "phantom-64.yaml"]
    assert [(path / s).read_text() for s in TRAIN_STAGES] == [(CONFIGS / p).read_text() for p in presets]
    base, findings, final = (load_train_config(path / s) for s in TRAIN_STAGES)
    assert base.init_from is None and findings.init_from == "runs/phantom-base-64"
    assert final.init_from == "runs/phantom-findings-64"
    assert base.model == findings.model == final.model


def test_the_shipped_routes_are_the_ladder_configs_and_load():
    """Each route of phantom-64 holds the ladder configs that made it (docs/benchmarks.md rows F15, H1, H6,
    H7), the keys bench/routes.py chose, and loads as one engine with the main model."""
    from synthfair.pretrained import ROUTE_STAGES

    path = pretrained_path("phantom-64")
    bench = CONFIGS.parent / "bench"
    made_by = {
        "diffusion-cft": {"train.yaml": "ladder-cft-f13.yaml"},
        "hvae-mediator-cft": {
            "train-base.yaml": "ladder-hvae.yaml",
            "train-mediator.yaml": "ladder-hvae-mediator.yaml",
            "train.yaml": "ladder-hvae-mediator-cft.yaml",
        },
    }
    assert set(made_by) == set(ROUTE_STAGES)
    for name, stages in ROUTE_STAGES.items():
        for config, _ in stages:
            assert (path / "routes" / name / config).read_text() == (
                bench / made_by[name][config]
            ).read_text()
    engine = CounterfactualEngine.load(path)
    assert set(engine.routes) == set(ROUTE_STAGES)
    assert engine.config.routes["view=LATERAL"] == "hvae-mediator-cft"
    provenance = (path / "PROVENANCE.md").read_text()
    for weights in (path / "routes").glob("*/*/*.safetensors"):
        assert hashlib.sha256(weights.read_bytes()).hexdigest() in provenance, weights


def test_no_shipped_record_names_a_path_of_the_machine_that_made_it():
    """Records that travel in the wheel give paths as the PROVENANCE commands do (relative), never the
    builder's absolute ones."""
    import json

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    package = Path(__file__).resolve().parents[1] / "src" / "synthfair" / "pretrained"
    absolute = [
        (str(path.relative_to(package)), text)
        for path in package.rglob("*.json")
        for text in strings(json.loads(path.read_text()))
        if text.startswith("/") and text.count("/") > 1
    ]
    assert not absolute


def test_unknown_pretrained_name():
    with pytest.raises(SynthfairError, match="did you mean 'phantom-64'"):
        pretrained_path("phantom-46")


def test_the_shipped_oracles_load_predict_and_match_their_provenance():
    import numpy as np

    from synthfair.evaluate.oracles import Oracles

    path = pretrained_path("oracles-phantom-64")
    oracles = Oracles.load(path)
    assert [o.covariate for o in oracles] == ["age", "sex", "findings", "view", "device"]
    assert oracles["sex"].metrics["accuracy"] > 0.9 and oracles["device"].metrics["accuracy"] > 0.9
    provenance = (path / "PROVENANCE.md").read_text()
    for weights in path.glob("*.safetensors"):
        assert hashlib.sha256(weights.read_bytes()).hexdigest() in provenance, weights.name
    predictions = oracles.predict(np.random.default_rng(0).random((3, 64, 64), np.float32))
    assert predictions["device"].shape == (3, 5) and predictions["age"].shape == (3,)


def test_every_shipped_file_is_package_data():
    """A wheel holds only what pyproject.toml's package-data names: every file of the shipped models (routes
    and their guidance classifiers included) must match one of its patterns."""
    import fnmatch

    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = root / "src" / "synthfair"
    shipped = [p for p in (package / "pretrained").rglob("*") if p.is_file() and p.suffix != ".py"]
    shipped = [p for p in shipped if "__pycache__" not in p.parts]
    assert shipped

    def matches(parts, pattern):  # setuptools' glob: "*" never crosses a "/"
        wanted = pattern.split("/")
        return len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted))

    relative = [p.relative_to(package).parts for p in shipped]
    missing = ["/".join(r) for r in relative if not any(matches(r, g) for g in patterns["synthfair"])]
    assert not missing, f"not in package-data: {missing}"
