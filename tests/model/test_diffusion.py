import pytest
import torch

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
