"""`synthfair route`: a routed model directory from the command line; bad keys refused before any copy."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import TINY_HVAE
from synthfair.cli.main import app, run
from synthfair.model.hvae import HVAEConfig
from synthfair.model.train import TrainConfig, train

runner = CliRunner()


def test_route_adds_a_model_and_refuses_bad_keys_before_copying(trained_run, cache, tmp_path, capsys):
    hvae = TrainConfig(
        hvae=HVAEConfig(**TINY_HVAE), steps=2, batch_size=4, checkpoint_every=2, cond_dropout=0.0
    )
    train(hvae, cache, tmp_path / "hvae")
    model = tmp_path / "model"
    shutil.copytree(trained_run / "model", model)
    args = ["route", str(model), "--model", str(tmp_path / "hvae" / "model")]
    with pytest.raises(SystemExit) as exit:
        run(app, [*args, "--key", "view=SIDEWAYS"])
    assert exit.value.code == 2 and "'view=SIDEWAYS' names no value of view" in capsys.readouterr().err
    assert not (model / "routes").exists() and not (model / "engine.json").exists()
    done = runner.invoke(app, [*args, "--key", "view=LATERAL", "--key", "device"])
    assert done.exit_code == 0, done.output
    assert 'routes: {"view=LATERAL": "hvae", "device": "hvae"}' in done.output
    assert json.loads((model / "engine.json").read_text()) == {
        "routes": {"view=LATERAL": "hvae", "device": "hvae"}
    }
    assert (model / "routes" / "hvae" / "synthfair_model.json").is_file()
