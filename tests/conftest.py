"""Shared fixtures: a tiny preprocessed cache and a tiny trained image model (imports are lazy, so test
modules that do not use them do not pay for torch and diffusers at collection time)."""

import pytest

PHANTOM_SPACING = (4.0, 4.0, 4.0)  # mm: the procedural phantom at a coarse grid renders fast

# The tiny denoiser of the model tests: 16x16, two levels, no attention (keyword arguments of ModelConfig).
TINY_MODEL = {"sample_size": 16, "block_out_channels": (8, 16), "attention_levels": (), "norm_num_groups": 4}


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A 16x16 preprocessed cache of 24 phantom-layout images (split train / validate / test by row)."""
    from source_files import phantom_row, write_phantom_source
    from synthfair.ingest import ingest
    from synthfair.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("model-data")
    write_phantom_source(root / "src", [phantom_row(i) for i in range(24)])
    ingest("phantom", root / "src", root / "index")
    preprocess(root / "index", root / "cache", PreprocessConfig(size=16, shard_size=10))
    return root / "cache"


@pytest.fixture
def tiny_config():
    from synthfair.model.diffusion import ModelConfig
    from synthfair.model.train import TrainConfig

    return TrainConfig(
        model=ModelConfig(**TINY_MODEL), steps=4, batch_size=4, checkpoint_every=2, warmup_steps=1, seed=3
    )


@pytest.fixture(scope="session")
def trained_run(cache, tmp_path_factory):
    """A tiny model trained long enough (150 steps, ~10 s) for DDIM inversion to reconstruct closely."""
    from synthfair.model.diffusion import ModelConfig
    from synthfair.model.train import TrainConfig, train

    config = TrainConfig(
        model=ModelConfig(**TINY_MODEL),
        steps=150,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        checkpoint_every=1000,
        seed=1,
    )
    out = tmp_path_factory.mktemp("trained") / "run"
    train(config, cache, out)
    return out


@pytest.fixture(scope="session")
def procedural_phantom():
    """The phantom on the procedural anatomy at a coarse grid: no download, fast."""
    from synthfair.phantom.simulator import Phantom, PhantomConfig

    return Phantom(PhantomConfig(anatomy="procedural", spacing_mm=PHANTOM_SPACING))
