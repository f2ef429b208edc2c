"""Shared fixtures: a tiny preprocessed cache and a tiny trained image model (imports are lazy, so test
modules that do not use them do not pay for torch and diffusers at collection time)."""

import pytest

PHANTOM_SPACING = (4.0, 4.0, 4.0)  # mm: the procedural phantom at a coarse grid renders fast

# The tiny denoiser of the model tests: 16x16, two levels, no attention (keyword arguments of ModelConfig).
TINY_MODEL = {"sample_size": 16, "block_out_channels": (8, 16), "attention_levels": (), "norm_num_groups": 4}
# The tiny HVAE (keyword arguments of HVAEConfig): 16x16, levels at 16, 8, 4 and 1, stochastic at 8, 4 and 1.
TINY_HVAE = {
    "sample_size": 16,
    "widths": (8, 16, 16, 16),
    "encoder_blocks": (1, 1, 1, 1),
    "decoder_blocks": (1, 1, 1, 1),
    "z_dim": 2,
    "z_max_res": 8,
    "cond_embed": 8,
}


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A 16x16 preprocessed cache of 24 phantom-layout images (split train / validate / test by row)."""
    from source_files import phantom_row, write_phantom_source
    from synthfair.index.ingest import ingest
    from synthfair.index.preprocess import PreprocessConfig, preprocess

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


# -- a rendered phantom source, its index and a small generation plan (generate/ and evaluate/ tests) --
PLAN_SPEC = {
    "seed": 5,
    "shard_size": 7,
    "select": {"limit": 4},
    "interventions": [{"sex": "flip"}, {"age": [25, 85]}, {"findings.cardiomegaly": "toggle"}],
}


@pytest.fixture(scope="session")
def phantom_index(tmp_path_factory):
    from synthfair.index.ingest import ingest
    from synthfair.phantom.simulator import PhantomConfig
    from synthfair.phantom.source import write_source

    root = tmp_path_factory.mktemp("generate-data")
    config = PhantomConfig(anatomy="procedural", spacing_mm=PHANTOM_SPACING)
    write_source(root / "phantom", n=8, size=32, seed=0, config=config)
    ingest("phantom", root / "phantom", root / "index")
    return root / "index"


@pytest.fixture(scope="session")
def small_plan(phantom_index, tmp_path_factory):
    """4 families x (factual, reconstruction, sex flip, 2 ages, cardiomegaly toggle) = 24 rows in 4 shards."""
    from synthfair.config import dataclass_from_dict
    from synthfair.generate.plan import PlanSpec, make_plan, write_plan
    from synthfair.index import read_index

    plan = make_plan(read_index(phantom_index), dataclass_from_dict(PlanSpec, PLAN_SPEC))
    path = tmp_path_factory.mktemp("plan") / "plan.parquet"
    write_plan(plan, path, phantom_index)
    return path


@pytest.fixture(scope="session")
def finalized_release(small_plan, trained_run, tmp_path_factory):
    """The small plan generated with the tiny model (3 steps) and finalized: a real release directory."""
    from synthfair.counterfactual import EngineConfig
    from synthfair.generate.runner import GenerateConfig, generate
    from synthfair.release.finalize import finalize

    out = tmp_path_factory.mktemp("release") / "release"
    generate(small_plan, trained_run, out, GenerateConfig(engine=EngineConfig(steps=3, batch_size=4)))
    finalize(out)
    return out
