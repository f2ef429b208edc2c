"""`synthfair train` under `accelerate launch` with 2 CPU processes (gloo), as on a multi-GPU node.

accelerate 1.15 starts several CPU processes only through torchrun, i.e. with ``--multi_gpu`` (``--cpu
--num_processes 2`` runs one process unless MPI is set up); with CUDA hidden each process sees no GPU and
accelerate sets up a MULTI_CPU (gloo) process group. ``--main_process_port 0`` lets torchrun pick a free port.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from synthfair.config import config_to_dict
from synthfair.model.diffusion import DiffusionModel


def launch(*args, timeout=120):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "synthfair",
        "train",
        *map(str, args),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env.pop("SYNTHFAIR_DEBUG", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def weights(model_dir):
    return load_file(model_dir / "unet" / "diffusion_pytorch_model.safetensors")


@pytest.mark.slow
def test_two_processes_train_stop_and_resume_on_the_same_trajectory(cache, tiny_config, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(tiny_config)))  # 4 steps, checkpoints every 2
    parts, whole = tmp_path / "parts", tmp_path / "whole"

    out = launch("--config", config, "--data", cache, "--out", parts, "--stop-at", 2)
    assert "stopped early at step 2" in out and not (parts / "model").exists()
    assert json.loads((parts / "train.json").read_text())["processes"] == 2
    out = launch("--config", config, "--data", cache, "--out", parts, "--resume", "latest")
    assert out.count("trained to step 4 of 4 (resumed from step 2)") == 1  # the main process reports
    assert DiffusionModel.load(parts / "model").config == tiny_config.model

    launch("--config", config, "--data", cache, "--out", whole)
    a, b = weights(whole / "model"), weights(parts / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert (parts / "loss.csv").read_text() == (whole / "loss.csv").read_text()


@pytest.mark.slow
def test_two_processes_train_an_hvae_stop_and_resume_on_the_same_trajectory(cache, tmp_path):
    """The HVAE's loss (here counterfactual fine-tuning under the ELBO constraint) goes through the process
    group's wrapper, every parameter gets a gradient (or the wrapper would fail), every process moves the
    Lagrange multiplier alike (the checkpoint holds the main process's), and a resumed two-process run
    continues the uninterrupted one's trajectory."""
    from conftest import TINY_HVAE
    from synthfair.evaluate.oracles import OracleConfig, train_oracles
    from synthfair.model.hvae import WEIGHTS
    from synthfair.model.registry import model_kind

    guides = tmp_path / "guides"
    train_oracles(OracleConfig(covariates=("sex", "findings"), epochs=1, batch_size=4), cache, guides)
    tuning = {"classifiers": str(guides), "weight": 1.0, "elbo_target": 1.0, "lagrange_lr": 0.1}
    config = {"hvae": dict(TINY_HVAE), "steps": 4, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 1}
    config = {**config, "cond_dropout": 0.0, "learning_rate": 1e-3, "grad_clip": 200.0, "seed": 3}
    path = tmp_path / "hvae.yaml"
    path.write_text(yaml.safe_dump(config_to_dict({**config, "tuning": tuning})))
    parts, whole = tmp_path / "parts", tmp_path / "whole"
    launch("--config", path, "--data", cache, "--out", parts, "--stop-at", 2)
    launch("--config", path, "--data", cache, "--out", parts, "--resume", "latest")
    out = launch("--config", path, "--data", cache, "--out", whole)
    assert out.count("ELBO constraint: Lagrange multiplier") == 1
    assert json.loads((whole / "train.json").read_text())["processes"] == 2
    assert model_kind(parts / "model") == "hvae"
    a, b = load_file(whole / "model" / WEIGHTS), load_file(parts / "model" / WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
