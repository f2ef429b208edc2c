import json

import pytest
import torch
from safetensors.torch import load_file

from synthfair.errors import SynthfairError
from synthfair.fileio import _umask
from synthfair.model.diffusion import DiffusionModel
from synthfair.model.train import checkpoints, train


def _weights(path):
    return load_file(path / "unet" / "diffusion_pytorch_model.safetensors")


def test_training_writes_checkpoints_model_and_loss_curve(cache, tiny_config, tmp_path):
    seen = []
    result = train(tiny_config, cache, tmp_path / "run", on_step=lambda s, loss, rate: seen.append((s, loss)))
    assert [s for s, _ in seen] == [1, 2, 3, 4] and result.steps == 4
    assert all(loss > 0 for _, loss in seen)
    assert [p.name for p in checkpoints(tmp_path / "run")] == ["checkpoint-0000002", "checkpoint-0000004"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "run" / "loss.csv").read_text().count("\n") == 5
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["taxonomy_sha256"] and record["processes"] == 1
    model = DiffusionModel.load(tmp_path / "run" / "model")
    assert model.config == tiny_config.model and model.extra["train"]["steps"] == 4


def test_resume_continues_the_same_trajectory(cache, tiny_config, tmp_path):
    train(tiny_config, cache, tmp_path / "whole")
    train(tiny_config, cache, tmp_path / "parts", stop_at=2)
    assert not (tmp_path / "parts" / "model").exists()
    resumed = train(tiny_config, cache, tmp_path / "parts", resume="latest")
    assert resumed.resumed_from == 2
    whole, parts = _weights(tmp_path / "whole" / "model"), _weights(tmp_path / "parts" / "model")
    assert whole.keys() == parts.keys()
    for name in whole:
        torch.testing.assert_close(whole[name], parts[name], rtol=0, atol=0)
    assert (tmp_path / "whole" / "loss.csv").read_text() == (tmp_path / "parts" / "loss.csv").read_text()


def test_same_seed_same_weights_and_existing_runs_are_not_overwritten(cache, tiny_config, tmp_path):
    config = tiny_config.__class__(**{**tiny_config.__dict__, "steps": 2})
    train(config, cache, tmp_path / "a")
    train(config, cache, tmp_path / "b")
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SynthfairError, match="already has checkpoints"):
        train(config, cache, tmp_path / "a")


def test_the_recipe_engine_settings_are_written_beside_the_model(cache, tiny_config, tmp_path):
    import dataclasses

    from synthfair.counterfactual import EngineConfig
    from synthfair.errors import ConfigError

    config = dataclasses.replace(tiny_config, engine={"steps": 5, "group_guidance": {"findings": 3.0}})
    train(config, cache, tmp_path / "run")
    assert EngineConfig.recommended(tmp_path / "run").scale("findings") == 3.0
    assert (tmp_path / "run" / "model" / "subjects.npy").is_file()
    bad = dataclasses.replace(tiny_config, engine={"guidance_scale": 3.0})
    with pytest.raises(ConfigError, match="guidance_scale"):
        train(bad, cache, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # refused before any work


class _Planted:
    """A pickle that, if ever unpickled without weights_only, leaves a marker file (it must not be)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resuming_never_unpickles_what_a_checkpoint_holds(cache, tiny_config, tmp_path):
    import pickle

    run = tmp_path / "run"
    train(tiny_config, cache, run, stop_at=2)
    [checkpoint] = checkpoints(run)
    marker = tmp_path / "executed"
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(SynthfairError, match="never loads"):
        train(tiny_config, cache, run, resume="latest")
    assert not marker.exists()
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    resumed = train(tiny_config, cache, run, resume="latest")  # the EMA comes from ema/ (safetensors + JSON)
    assert resumed.resumed_from == 2 and not marker.exists()
    again = tmp_path / "again"
    train(tiny_config, cache, again, stop_at=2)
    [checkpoint] = checkpoints(again)
    (checkpoint / "random_states_0.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(SynthfairError, match="cannot be loaded safely"):
        train(tiny_config, cache, again, resume="latest")
    assert not marker.exists()
    (checkpoint / "random_states_0.pkl").unlink()
    (checkpoint / "ema" / "config.json").write_text('{"optimization_step": "x"}')
    with pytest.raises(SynthfairError, match="EMA checkpoint does not fit"):
        train(tiny_config, cache, again, resume="latest")


def test_export_at_an_early_stop_writes_the_model_of_those_steps(cache, tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config, cache, run, stop_at=2, export=True)
    model = DiffusionModel.load(run / "model")
    assert model.extra["train"]["exported_at_step"] == 2 and model.extra["train"]["steps"] == 4
    assert (run / "model" / "scm").is_dir()
    weights = next((run / "model" / "unet").glob("*.safetensors"))
    assert weights.stat().st_mode & 0o777 == 0o666 & ~_umask()  # as readable as the umask says (not 0600)
    again = tmp_path / "again"
    train(tiny_config, cache, again, stop_at=2)
    train(tiny_config, cache, again, resume="latest", stop_at=2, export=True)  # export a stopped run later
    a, b = _weights(run / "model"), _weights(again / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_oversampling_is_read_from_the_yaml_config_and_refused_before_any_work(cache, tiny_config, tmp_path):
    import dataclasses

    import yaml

    from synthfair.config import config_to_dict
    from synthfair.errors import ConfigError
    from synthfair.model.train import load_train_config

    path = tmp_path / "train.yaml"
    settings = {**config_to_dict(tiny_config), "steps": 2, "oversample": {"findings.cardiomegaly": 3}}
    path.write_text(yaml.safe_dump(settings))
    config = load_train_config(path)
    assert config.oversample == {"findings.cardiomegaly": 3}
    train(config, cache, tmp_path / "run")
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["oversample"] == {"findings.cardiomegaly": 3}
    with pytest.raises(ConfigError, match="cardiomegly"):
        train(dataclasses.replace(config, oversample={"findings.cardiomegly": 3}), cache, tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_a_missing_init_from_is_refused_before_any_work(cache, tiny_config, tmp_path):
    """The shipped recipe's stage 2 names stage 1's run (runs/phantom-base-64): absent, say so first."""
    import dataclasses

    from synthfair.errors import ConfigError

    config = dataclasses.replace(tiny_config, init_from=str(tmp_path / "runs" / "phantom-base-64"))
    with pytest.raises(ConfigError, match=r"init_from: no model at .*phantom-base-64.*train the run"):
        train(config, cache, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_min_snr_weights_only_the_nearly_clean_steps_down():
    from synthfair.model.diffusion import ModelConfig, build_scheduler
    from synthfair.model.train import snr_weights

    scheduler = build_scheduler(ModelConfig())
    t = torch.tensor([0, 100, 500, 900, 999])
    alpha_bar = scheduler.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    weights = snr_weights(scheduler, t, 5.0)
    torch.testing.assert_close(weights, torch.where(snr > 5, 5 / snr, torch.ones_like(snr)))
    assert weights[0] < 0.01 and weights[-1] == 1.0 and bool((weights[1:] >= weights[:-1]).all())


def test_truncated_snr_weights_the_noisiest_steps_up_to_the_cap():
    from synthfair.model.diffusion import ModelConfig, build_scheduler
    from synthfair.model.train import snr_weights

    scheduler = build_scheduler(ModelConfig())
    t = torch.arange(0, 1000, 7)
    alpha_bar = scheduler.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    weights = snr_weights(scheduler, t, floor=1.0, cap=20.0)
    expected = torch.where(snr >= 1, torch.ones_like(snr), (1 / snr).clamp(max=20.0))
    torch.testing.assert_close(weights, expected)
    assert weights.max() == 20.0 and bool((weights[1:] >= weights[:-1]).all())  # noisier: never lighter
    # on the clean image's error (weight x SNR): at least the floor until the cap, never more than plain above
    on_image = weights * snr
    assert bool((on_image[snr >= 1.0 / 20.0] >= 1.0 - 1e-5).all())
    both = snr_weights(scheduler, t, gamma=5.0, floor=1.0, cap=20.0)  # Min-SNR and the floor together
    torch.testing.assert_close(both, (snr.clamp(1.0, 5.0) / snr).clamp(max=20.0))


def test_snr_weighted_runs_train_other_trajectories_and_are_refused_for_an_hvae(cache, tiny_config, tmp_path):
    import dataclasses

    from synthfair.errors import ConfigError
    from synthfair.model.hvae import HVAEConfig

    losses = {"plain": [], "min-snr": [], "floor": []}
    settings = {"plain": {}, "min-snr": {"snr_gamma": 5.0}, "floor": {"snr_floor": 1.0}}
    for name, seen in losses.items():
        config = dataclasses.replace(tiny_config, steps=2, **settings[name])
        train(config, cache, tmp_path / name, on_step=lambda s, loss, rate, seen=seen: seen.append(loss))
    plain = losses["plain"]
    assert all(0 < w < p for w, p in zip(losses["min-snr"], plain, strict=True))  # weights <= 1, some < 1
    assert all(w > p for w, p in zip(losses["floor"], plain, strict=True))  # weights >= 1, some > 1
    with pytest.raises(ConfigError, match="snr_gamma -1.0 is not a number >= 0"):
        dataclasses.replace(tiny_config, snr_gamma=-1.0)
    with pytest.raises(ConfigError, match="snr_gamma 5.0 weighs a diffusion model's noise levels"):
        dataclasses.replace(tiny_config, snr_gamma=5.0, hvae=HVAEConfig())
    with pytest.raises(ConfigError, match="snr_floor 1.0 weighs a diffusion model's noise levels"):
        dataclasses.replace(tiny_config, snr_floor=1.0, hvae=HVAEConfig())
    with pytest.raises(ConfigError, match="snr_floor 6.0 is above snr_gamma 5.0"):
        dataclasses.replace(tiny_config, snr_gamma=5.0, snr_floor=6.0)
    with pytest.raises(ConfigError, match="snr_weight_cap 0.5 is below 1"):
        dataclasses.replace(tiny_config, snr_weight_cap=0.5)
