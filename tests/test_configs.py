"""The presets in configs/: every file loads as a TrainConfig; each model has the size its comment states.
The counterfactual ladder's configs in bench/ load too."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from synthfair.model.conditioning import ConditionEncoder
from synthfair.model.diffusion import DiffusionModel, build_unet
from synthfair.model.hvae import HVAE
from synthfair.model.train import TrainConfig, load_train_config
from synthfair.taxonomy import load_taxonomy

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml"))
LADDER = sorted((CONFIGS.parent / "bench").glob("ladder-*.yaml"))
STATED = re.compile(r"(?:Denoiser|HVAE): ([\d.]+)M parameters")


def stated_parameters(path: Path) -> float:
    found = STATED.search(path.read_text())
    assert found, f"{path.name}: no 'Denoiser: <N>M parameters' (or 'HVAE: ...') comment"
    return float(found.group(1)) * 1e6


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_presets_are_there():
    assert {p.stem for p in PRESETS} >= {
        "phantom-base-64",
        "phantom-findings-64",
        "phantom-64",
        "real-256",
        "real-cft-256",
        "real-512",
        "real-cft-512",
        "real-hvae-256",
        "real-hvae-mediator-256",
        "real-hvae-cft-256",
        "real-hvae-512",
        "real-hvae-mediator-512",
        "real-hvae-cft-512",
    }
    assert not [p for p in CONFIGS.iterdir() if p.suffix not in (".yaml", ".md")]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads(path):
    config = load_train_config(path)
    assert isinstance(config, TrainConfig)
    assert config.checkpoints_total_limit >= 2 and config.checkpoint_every < config.steps
    assert config.image_model.sample_size == int(re.search(r"(\d+)$", path.stem).group(1))


@pytest.mark.parametrize("path", LADDER, ids=lambda p: p.stem)
def test_every_ladder_config_loads_and_names_its_command(path):
    config = load_train_config(path)
    assert config.image_model.sample_size == 64 and config.checkpoint_every < config.steps
    assert f"--config bench/{path.name}" in path.read_text()  # the command that trains it, in its comments


@pytest.mark.parametrize("path", [p for p in PRESETS if p.stem.startswith("real")], ids=lambda p: p.stem)
def test_gpu_presets_have_the_stated_size(path):
    """Built on the meta device: shapes only, no memory or initialization."""
    config = load_train_config(path)
    assert config.mixed_precision == "auto" and not config.in_memory
    dim = ConditionEncoder(load_taxonomy()).dim
    with torch.device("meta"):
        net = build_unet(config.model, dim) if config.hvae is None else HVAE(config.hvae, dim)
    assert count(net) == pytest.approx(stated_parameters(path), rel=0.05)


def test_the_diffusion_fine_tuning_presets_continue_their_base():
    """As the phantom's F13 -> F15: the same network, fine-tuned against training-time classifiers."""
    for size in (256, 512):
        base = load_train_config(CONFIGS / f"real-{size}.yaml")
        tuned = load_train_config(CONFIGS / f"real-cft-{size}.yaml")
        assert tuned.model == base.model and tuned.init_from == f"runs/real-{size}"
        assert tuned.oversample == base.oversample and tuned.batch_size == base.batch_size
        assert tuned.tuning.classifiers == f"runs/guides-{size}" and tuned.tuning.weight == 0.02


def test_the_hvae_presets_are_the_shipped_routes_three_stages():
    """As the phantom's H1 -> H6 -> H7: stage 2 turns on the conditional priors of stage 1's network, stage 3
    fine-tunes stage 2's counterfactuals against training-time classifiers."""
    for size in (256, 512):
        base = load_train_config(CONFIGS / f"real-hvae-{size}.yaml")
        mediator = load_train_config(CONFIGS / f"real-hvae-mediator-{size}.yaml")
        tuned = load_train_config(CONFIGS / f"real-hvae-cft-{size}.yaml")
        assert not base.hvae.cond_prior and base.tuning.classifiers is None
        assert mediator.hvae == replace(base.hvae, cond_prior=True) and mediator.tuning.classifiers is None
        assert mediator.init_from == f"runs/real-hvae-{size}"
        assert tuned.hvae == mediator.hvae and tuned.init_from == f"runs/real-hvae-mediator-{size}"
        assert tuned.tuning.classifiers and tuned.tuning.elbo_margin is None  # H7: no constraint


@pytest.mark.parametrize("name", ["phantom-base-64", "phantom-findings-64", "phantom-64"])
def test_phantom_presets_build_and_have_the_stated_size(name):
    config = load_train_config(CONFIGS / f"{name}.yaml")
    model = DiffusionModel.create(config.model)
    assert count(model.unet) == pytest.approx(stated_parameters(CONFIGS / f"{name}.yaml"), rel=0.05)
    x = torch.zeros(2, 1, 64, 64)
    with torch.no_grad():
        eps = model.eps(x, 999, model.encoder.null(torch.zeros(2, model.encoder.dim)))
    assert eps.shape == x.shape
