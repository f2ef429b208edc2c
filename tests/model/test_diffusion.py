import pytest
import torch

from conftest import TINY_MODEL
from synthfair.errors import ConfigError
from synthfair.model.data import CacheDataset
from synthfair.model.diffusion import DiffusionModel, ModelConfig, to_image_space, to_model_space
from synthfair.taxonomy import Taxonomy, load_taxonomy


def test_ddim_inversion_then_sampling_reconstructs_the_input(trained_run, cache):
    model = DiffusionModel.load(trained_run / "model")
    images, records = CacheDataset(cache).batch([0, 1, 2, 3])
    cond = model.encoder.encode(records)
    x0 = to_model_space(images)
    noise = model.invert(x0, cond, steps=10)
    assert 0.5 < noise.std().item() < 1.5  # abducted noise looks like noise
    error = (to_image_space(model.sample(noise, cond, steps=10)) - images[:, 0]).abs().mean().item()
    assert error < 0.05, error
    other = model.sample(torch.randn(noise.shape, generator=torch.Generator().manual_seed(0)), cond, steps=10)
    assert (to_image_space(other) - images[:, 0]).abs().mean().item() > 2 * error  # not a trivial identity


def test_guidance_one_equals_the_conditional_prediction(trained_run):
    model = DiffusionModel.load(trained_run / "model")
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = model.encoder.encode([{"sex": "female"}, {"sex": "male"}])
    with torch.no_grad():
        plain = model.eps(x, 500, cond)
        guided = model.eps(x, 500, cond, guidance=3.0)
        same = model.eps(x, 500, cond, guidance=3.0, null=cond)
    torch.testing.assert_close(same, plain)
    assert not torch.allclose(guided, plain)


def test_save_load_round_trip_and_taxonomy_check(trained_run, tmp_path):
    model = DiffusionModel.load(trained_run / "model")
    model.save(tmp_path / "copy")
    again = DiffusionModel.load(tmp_path / "copy")
    assert again.config == model.config and again.encoder.names == model.encoder.names
    for a, b in zip(model.unet.parameters(), again.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    data = _taxonomy_data()
    data["covariates"]["age"]["description"] = "changed"  # descriptions and source maps do not matter
    DiffusionModel.load(tmp_path / "copy", taxonomy=Taxonomy.from_dict(data))
    data["covariates"]["sex"]["values"] = ["female", "male", "intersex"]
    other = Taxonomy.from_dict(data)
    with pytest.raises(ConfigError, match="trained with taxonomy covariates"):
        DiffusionModel.load(tmp_path / "copy", taxonomy=other)


def test_model_config_errors():
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(sample_size=30, block_out_channels=(8, 16, 16))
    with pytest.raises(ConfigError, match="norm_num_groups"):
        ModelConfig(block_out_channels=(10, 20, 20), norm_num_groups=8)


def _taxonomy_data():
    from synthfair.config import read_yaml

    return read_yaml(load_taxonomy().path)


def test_factored_guidance_is_a_sum_of_one_reference_per_group(trained_run):
    from synthfair.model.diffusion import Reference

    model = DiffusionModel.load(trained_run / "model")
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    cond = model.encoder.encode([{"sex": "female", "age": 40.0}, {"sex": "male", "age": 70.0}])
    no_sex, no_age = model.encoder.null(cond, ["sex"]), model.encoder.null(cond, ["age"])
    w_sex, w_age = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0])
    with torch.no_grad():
        plain = model.eps(x, 400, cond)
        both = model.guided_eps(x, 400, cond, [Reference(no_sex, w_sex), Reference(no_age, w_age)])
        by_hand = (
            plain
            + (w_sex - 1).view(-1, 1, 1, 1) * (plain - model.eps(x, 400, no_sex))
            + (w_age - 1).view(-1, 1, 1, 1) * (plain - model.eps(x, 400, no_age))
        )
        same = model.guided_eps(x, 400, cond, [Reference(cond, torch.tensor([5.0, 5.0]))])
    torch.testing.assert_close(both, by_hand, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(same, plain, atol=1e-6, rtol=1e-5)  # guiding away from itself: no change


def test_noise_maps_skip_replay_and_keep_mask(trained_run, cache):
    model = DiffusionModel.load(trained_run / "model")
    images, records = CacheDataset(cache).batch([0, 1])
    x0, cond = to_model_space(images), model.encoder.encode(records)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    maps = model.noise_maps(x0, cond, steps=10, generators=gens, skip=4)
    assert len(maps.timesteps) == len(maps.corrections) == 6 and len(maps.chain) == 7
    assert maps.timesteps == model._timesteps(10)[4:]
    torch.testing.assert_close(model.replay(maps, cond), x0, atol=1e-5, rtol=0)  # exact reconstruction
    other = model.encoder.encode(
        [{**r, "sex": "male" if r["sex"] == "female" else "female"} for r in records]
    )
    free = model.replay(maps, other)
    mask = torch.zeros_like(x0)
    mask[..., :8] = 1.0  # keep the right half factual
    kept = model.replay(maps, other, mask=mask)
    torch.testing.assert_close(kept[..., 8:], x0[..., 8:], atol=1e-6, rtol=0)
    assert (kept[..., :8] - x0[..., :8]).abs().mean() > 1e-4 and (
        free[..., 8:] - x0[..., 8:]
    ).abs().mean() > 1e-4


def test_edit_mask_marks_where_the_conditions_differ(trained_run, cache):
    model = DiffusionModel.load(trained_run / "model")
    images, records = CacheDataset(cache).batch([0, 1])
    x0, cond = to_model_space(images), model.encoder.encode(records)
    maps = model.noise_maps(x0, cond, 10, [torch.Generator().manual_seed(s) for s in (0, 1)])
    same = model.edit_mask(maps, cond, evaluations=3)
    assert same.shape == x0.shape and float(same.max()) == 0.0  # no change asked: an empty mask
    other = model.encoder.encode([{**r, "age": 90.0} for r in records])
    mask = model.edit_mask(maps, other, evaluations=3)
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0 and float(mask.max()) > 0.5


def test_space_to_depth_model_trains_samples_and_round_trips(cache, tmp_path):
    from synthfair.model.train import TrainConfig, train

    config = TrainConfig(
        model=ModelConfig(**{**TINY_MODEL, "patch_size": 2}),
        steps=2,
        batch_size=4,
        warmup_steps=1,
        checkpoint_every=2,
    )
    train(config, cache, tmp_path / "run")
    model = DiffusionModel.load(tmp_path / "run" / "model")
    assert model.unet.config.in_channels == 4 and model.unet.config.sample_size == 8
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model.eps(x, 10, model.encoder.encode([{}, {}])).shape == x.shape
    with pytest.raises(ConfigError, match="patch size"):
        ModelConfig(sample_size=18, patch_size=2, block_out_channels=(8, 16), norm_num_groups=4)
