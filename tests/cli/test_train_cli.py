"""`synthfair train` on a tiny 16x16 cache: outputs, stop and resume, config errors."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from source_files import phantom_row, write_phantom_source
from synthfair.cli.main import app, run
from synthfair.index.ingest import ingest
from synthfair.index.preprocess import PreprocessConfig, preprocess
from synthfair.model.diffusion import DiffusionModel
from synthfair.model.train import checkpoints

TINY = {
    "model": {"sample_size": 16, "block_out_channels": [8, 16], "attention_levels": [], "norm_num_groups": 4},
    "steps": 4,
    "batch_size": 4,
    "checkpoint_every": 2,
    "warmup_steps": 1,
    "seed": 3,
}

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A 16x16 preprocessed cache of 24 phantom-layout images."""
    root = tmp_path_factory.mktemp("train-cli-data")
    write_phantom_source(root / "src", [phantom_row(i) for i in range(24)])
    ingest("phantom", root / "src", root / "index")
    preprocess(root / "index", root / "cache", PreprocessConfig(size=16, shard_size=10))
    return root / "cache"


def write_config(path, **changes):
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def train_args(config, cache, out, *extra):
    return ["train", "--config", str(config), "--data", str(cache), "--out", str(out), *extra]


def test_train_writes_the_run_and_says_where(cache, tmp_path):
    config = write_config(tmp_path / "tiny.yaml")
    result = runner.invoke(app, train_args(config, cache, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    run_dir = (tmp_path / "run").resolve()
    assert "trained to step 4 of 4" in result.output
    assert f"model (EMA weights): {run_dir / 'model'}" in result.output
    assert f"checkpoints: {run_dir / 'checkpoints'} (latest: checkpoint-0000004)" in result.output
    assert f"loss plot: {run_dir / 'loss.png'}" in result.output
    assert (run_dir / "loss.png").is_file() and (run_dir / "loss.csv").read_text().count("\n") == 5
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["block_out_channels"] == [8, 16]
    assert json.loads((run_dir / "train.json").read_text())["processes"] == 1
    model = DiffusionModel.load(run_dir / "model")
    assert model.config.block_out_channels == (8, 16) and model.extra["train"]["steps"] == 4


@pytest.mark.parametrize("resume", ["latest", "path"])
def test_stop_at_then_resume(cache, tmp_path, resume):
    config = write_config(tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(config, cache, out, "--stop-at", "2"))
    assert result.exit_code == 0, result.output
    assert "stopped early at step 2: continue with --resume latest" in result.output
    assert not (out / "model").exists() and [p.name for p in checkpoints(out)] == ["checkpoint-0000002"]

    target = "latest" if resume == "latest" else str(out / "checkpoints" / "checkpoint-0000002")
    result = runner.invoke(app, train_args(config, cache, out, "--resume", target))
    assert result.exit_code == 0, result.output
    assert "trained to step 4 of 4 (resumed from step 2)" in result.output
    assert DiffusionModel.load(out / "model").extra["train"]["steps"] == 4
    assert [line.split(",")[0] for line in (out / "loss.csv").read_text().splitlines()] == [
        "step",
        "1",
        "2",
        "3",
        "4",
    ]


def test_resume_latest_without_checkpoints_starts_fresh(cache, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", steps=2)
    result = runner.invoke(app, train_args(config, cache, tmp_path / "run", "--resume", "latest"))
    assert result.exit_code == 0, result.output
    assert "trained to step 2 of 2: loss" in result.output and "resumed" not in result.output


def known_error(capsys, args):
    with pytest.raises(SystemExit) as exit:
        run(app, args)
    assert exit.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "changes, key, hint",
    [
        (
            {"lerning_rate": 0.1},
            "'lerning_rate' (did you mean 'learning_rate'?)",
            "allowed keys: model, steps",
        ),
        (
            {"model": {**TINY["model"], "chanels": [8]}},
            "'model.chanels'",
            "allowed keys under model: sample_size",
        ),
    ],
)
def test_an_unknown_key_names_the_file_and_key(cache, tmp_path, capsys, monkeypatch, changes, key, hint):
    monkeypatch.delenv("SYNTHFAIR_DEBUG", raising=False)
    config = write_config(tmp_path / "bad.yaml", **changes)
    err = known_error(capsys, train_args(config, cache, tmp_path / "run"))
    assert err.startswith(f"error: {config}: unknown key {key}")
    assert f"hint: {hint}" in err
    assert not (tmp_path / "run").exists()


def test_a_second_fresh_run_into_the_same_directory_is_refused(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SYNTHFAIR_DEBUG", raising=False)
    config = write_config(tmp_path / "tiny.yaml", steps=2)
    assert runner.invoke(app, train_args(config, cache, tmp_path / "run")).exit_code == 0
    err = known_error(capsys, train_args(config, cache, tmp_path / "run"))
    assert "already has checkpoints" in err and "--resume latest" in err


def test_a_refused_run_leaves_the_existing_run_record_alone(cache, tmp_path):
    out = tmp_path / "run"
    assert (
        runner.invoke(app, train_args(write_config(tmp_path / "a.yaml", steps=2), cache, out)).exit_code == 0
    )
    record = (out / "config.yaml").read_text(), (out / "train.json").read_text()
    refused = runner.invoke(app, train_args(write_config(tmp_path / "b.yaml", steps=3), cache, out))
    assert refused.exit_code != 0
    assert ((out / "config.yaml").read_text(), (out / "train.json").read_text()) == record


def test_an_hvae_config_trains_through_the_same_command_and_reports_skipped_updates(cache, tmp_path):
    from conftest import TINY_HVAE
    from synthfair.config import config_to_dict

    config = {k: v for k, v in TINY.items() if k != "model"}
    config = {**config, "hvae": config_to_dict(TINY_HVAE), "grad_skip": 1e-9, "cond_dropout": 0.0}
    path = tmp_path / "hvae.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, train_args(path, cache, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "4 updates skipped (gradient norm above grad_skip 1e-09)" in result.output
    assert json.loads((tmp_path / "run" / "model" / "synthfair_model.json").read_text())["kind"] == "hvae"
