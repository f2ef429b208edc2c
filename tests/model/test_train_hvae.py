"""Training an HVAE image model (`hvae:` in the training config) through the same loop as the diffusion model:
checkpoints, exact resume, export, init_from, the engine's counterfactuals."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_HVAE
from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.errors import ConfigError
from synthfair.model.hvae import WEIGHTS, HVAEConfig, HVAEModel
from synthfair.model.registry import load_model, model_kind, weights_file
from synthfair.model.train import TrainConfig, checkpoints, load_train_config, train


@pytest.fixture
def hvae_config():
    return TrainConfig(
        hvae=HVAEConfig(**TINY_HVAE),
        steps=4,
        batch_size=4,
        checkpoint_every=2,
        warmup_steps=1,
        learning_rate=1e-3,
        grad_clip=200.0,
        grad_skip=1e6,
        cond_dropout=0.0,
        seed=3,
    )


def test_an_hvae_run_writes_checkpoints_and_an_hvae_model(cache, hvae_config, tmp_path):
    seen = []
    result = train(hvae_config, cache, tmp_path / "run", on_step=lambda s, loss, rate: seen.append(loss))
    assert result.steps == 4 and result.skipped_updates == 0 and all(np.isfinite(seen))
    assert [p.name for p in checkpoints(tmp_path / "run")] == ["checkpoint-0000002", "checkpoint-0000004"]
    model_dir = tmp_path / "run" / "model"
    assert model_kind(model_dir) == "hvae" and weights_file(model_dir) == model_dir / WEIGHTS
    model = load_model(model_dir)
    assert isinstance(model, HVAEModel) and model.config == hvae_config.hvae
    assert model.extra["train"]["steps"] == 4
    assert (model_dir / "scm").is_dir() and (model_dir / "subjects.npy").is_file()


def test_an_hvae_run_resumes_on_the_same_trajectory(cache, hvae_config, tmp_path):
    train(hvae_config, cache, tmp_path / "whole")
    train(hvae_config, cache, tmp_path / "parts", stop_at=2)
    assert train(hvae_config, cache, tmp_path / "parts", resume="latest").resumed_from == 2
    whole, parts = (load_file(tmp_path / run / "model" / WEIGHTS) for run in ("whole", "parts"))
    assert whole.keys() == parts.keys()
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


def test_the_engine_makes_hvae_counterfactuals_with_an_exact_null(cache, hvae_config, tmp_path):
    from synthfair.model.data import CacheDataset

    train(hvae_config, cache, tmp_path / "run")
    engine = CounterfactualEngine.load(tmp_path / "run")
    assert engine.evaluations(("sex",)) == 3
    data = CacheDataset(cache, split="train")
    images, records = data.batch([0, 1])
    images = [images[i].numpy().reshape(16, 16) for i in range(2)]
    other = {"sex": "male" if records[1]["sex"] == "female" else "female"}
    null, changed = engine([images[0], images[1]], records, [{}, other], seeds=[0, 1])
    x0 = torch.from_numpy(images[0])
    assert np.array_equal(null.image, ((x0 * 2 - 1 + 1) / 2).clamp(0, 1).numpy())  # the image, to rounding
    assert null.reconstruction_error == 0.0 and changed.changed
    assert not np.array_equal(changed.image, images[1])
    again = engine([images[0], images[1]], records, [{}, other], seeds=[0, 1])[1]
    assert np.array_equal(again.image, changed.image)  # deterministic
    with pytest.raises(ConfigError, match=r"engine settings steps=16, guidance=3.0 do not apply to an HVAE"):
        CounterfactualEngine.load(tmp_path / "run", EngineConfig(steps=16, guidance=3.0, batch_size=4))


def test_init_from_an_hvae_run_and_refusals(cache, hvae_config, tmp_path):
    train(hvae_config, cache, tmp_path / "base")
    # the KL weight is the loss's, not the network's: a fine-tuning run may raise it
    larger_beta = HVAEConfig(**{**TINY_HVAE, "beta": 9.0})
    tuned = dataclasses.replace(hvae_config, init_from=str(tmp_path / "base"), steps=2, hvae=larger_beta)
    train(tuned, cache, tmp_path / "tuned")
    assert load_model(tmp_path / "tuned" / "model").config.beta == 9.0
    other = dataclasses.replace(tuned, hvae=HVAEConfig(**{**TINY_HVAE, "z_dim": 3}))
    with pytest.raises(ConfigError, match="init_from .* they differ in z_dim"):
        train(other, cache, tmp_path / "other")


def test_init_from_may_turn_the_conditional_prior_on_but_not_off(cache, hvae_config, tmp_path):
    train(hvae_config, cache, tmp_path / "base")
    base = load_model(tmp_path / "base" / "model")
    mediated = HVAEConfig(**{**TINY_HVAE, "cond_prior": True})
    grown = dataclasses.replace(hvae_config, init_from=str(tmp_path / "base"), steps=2, hvae=mediated)
    train(dataclasses.replace(grown, learning_rate=0.0), cache, tmp_path / "start")
    start = load_model(tmp_path / "start" / "model")
    # lr 0: the grown model is the source's weights plus the new zero weights, and computes the same images
    new = {k for k in start.net.state_dict() if k not in base.net.state_dict()}
    assert new and all(".prior_cond." in k for k in new)
    assert all(torch.equal(start.net.state_dict()[k], v) for k, v in base.net.state_dict().items())
    x, cond = torch.rand(2, 1, 16, 16) * 2 - 1, base.encoder.encode([{"sex": "female"}, {"sex": "male"}])
    with torch.no_grad():
        assert torch.equal(
            start.net.counterfactual(x, cond, cond.flip(0)), base.net.counterfactual(x, cond, cond.flip(0))
        )
    train(grown, cache, tmp_path / "grown")
    assert load_model(tmp_path / "grown" / "model").config.cond_prior
    back = dataclasses.replace(grown, init_from=str(tmp_path / "grown"), hvae=HVAEConfig(**TINY_HVAE))
    with pytest.raises(ConfigError, match="init_from .* they differ in cond_prior"):
        train(back, cache, tmp_path / "back")


def test_an_hvae_config_is_read_from_yaml_and_checked(tmp_path):
    from synthfair.model.diffusion import ModelConfig

    path = tmp_path / "hvae.yaml"
    path.write_text(
        "hvae:\n  sample_size: 16\n  widths: [8, 16, 16, 16]\n  encoder_blocks: [1, 1, 1, 1]\n"
        "  decoder_blocks: [1, 1, 1, 1]\n  z_dim: 2\n  z_max_res: 8\ngrad_skip: 500\n"
    )
    config = load_train_config(path)
    assert config.hvae.widths == (8, 16, 16, 16) and config.image_model is config.hvae
    with pytest.raises(ConfigError, match="both a model: section .* and an hvae: section"):
        TrainConfig(model=ModelConfig(sample_size=32), hvae=HVAEConfig(**TINY_HVAE))
    with pytest.raises(ConfigError, match="grad_skip -1"):
        TrainConfig(grad_skip=-1)


def test_exploding_gradients_are_skipped_and_counted(cache, hvae_config, tmp_path):
    skipping = dataclasses.replace(hvae_config, grad_skip=1e-9)  # every gradient is "too large"
    result = train(skipping, cache, tmp_path / "run")
    assert result.skipped_updates == 4
    fresh = HVAEModel.create(hvae_config.hvae, seed=hvae_config.seed).net.state_dict()
    trained = load_file(tmp_path / "run" / "model" / WEIGHTS)
    assert all(torch.equal(fresh[k], trained[k]) for k in trained)  # no update was applied


def test_a_run_whose_updates_are_all_skipped_stops_and_says_why(cache, hvae_config, tmp_path, monkeypatch):
    """Skipped updates leave the weights where they were: past a streak no later batch can differ, so the
    run stops with the fix instead of spending its budget (the checkpoints before it stay resumable)."""
    from synthfair.errors import SynthfairError
    from synthfair.model import train as train_module

    monkeypatch.setattr(train_module, "SKIP_STREAK", 3)
    skipping = dataclasses.replace(hvae_config, grad_skip=1e-9)
    with pytest.raises(SynthfairError, match=r"3 updates in a row skipped at step 3 .*grad_skip 1e-09"):
        train(skipping, cache, tmp_path / "run")
    assert [p.name for p in checkpoints(tmp_path / "run")] == ["checkpoint-0000002"]


def test_a_release_generated_with_an_hvae_names_its_weights(cache, hvae_config, small_plan, tmp_path):
    """`synthfair generate` with an HVAE run: the release records the HVAE's weights sha256, and each
    reconstruction is its factual image (the null intervention is exact)."""
    import hashlib
    import io
    import json
    import tarfile

    from PIL import Image

    from synthfair.generate.runner import GenerateConfig, generate
    from synthfair.release import layout

    train(hvae_config, cache, tmp_path / "run")
    config = GenerateConfig(engine=EngineConfig(batch_size=4))
    result = generate(small_plan, tmp_path / "run", tmp_path / "release", config)
    assert (result.samples, result.failed) == (24, 0)
    with tarfile.open(layout.tar_path(tmp_path / "release", 0)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    family = json.loads(files[next(n for n in files if n.endswith("_f.json"))])["family"]
    record = json.loads(files[f"{family}_r.json"])
    weights = (tmp_path / "run" / "model" / WEIGHTS).read_bytes()
    assert record["model"]["checkpoint_sha256"] == hashlib.sha256(weights).hexdigest()
    factual, recon = (np.asarray(Image.open(io.BytesIO(files[f"{family}_{k}.png"]))) for k in ("f", "r"))
    assert np.abs(factual.astype(np.int64) - recon.astype(np.int64)).max() <= 1  # exact, to 16-bit rounding
    with pytest.raises(ConfigError, match="do not apply to an HVAE"):
        generate(
            small_plan, tmp_path / "run", tmp_path / "other", GenerateConfig(engine=EngineConfig(steps=4))
        )
