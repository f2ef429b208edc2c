"""plan -> generate (under accelerate launch, 2 CPU processes) -> finalize, through the command line."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from synthfair.cli.main import app
from synthfair.release import layout

SPEC = {"shard_size": 5, "select": {"limit": 3}, "interventions": [{"sex": "flip"}, {"age": [30]}]}


@pytest.mark.slow
def test_plan_generate_under_accelerate_and_finalize(phantom_index, trained_run, tmp_path):
    spec = tmp_path / "plan.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    plan = tmp_path / "plan.parquet"
    runner = CliRunner()
    done = runner.invoke(
        app, ["plan", "--index", str(phantom_index), "--spec", str(spec), "--out", str(plan)]
    )
    assert done.exit_code == 0, done.output
    assert "plan: 12 samples (3 factual, 3 reconstruction, 6 counterfactual)" in done.output

    common = ["--plan", plan, "--checkpoint", trained_run, "--steps", "3", "--batch-size", "4"]
    # the same thread count in both runs: CPU kernels may sum in another order with more threads
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    alone = tmp_path / "alone"
    command = [sys.executable, "-m", "synthfair", "generate", *map(str, common), "--out", str(alone)]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    launched = tmp_path / "launched"
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
        "generate",
        *map(str, common),
        "--out",
        str(launched),
    ]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "process 0: 2 shards" in ran.stdout and "process 1: 1 shards" in ran.stdout
    for shard in range(3):
        assert layout.tar_path(launched, shard).read_bytes() == layout.tar_path(alone, shard).read_bytes()

    done = runner.invoke(app, ["finalize", str(launched)])
    assert done.exit_code == 0, done.output
    assert "12 samples in 3 shards" in done.output
    assert json.loads((launched / layout.MANIFEST_FILE).read_text())["nsamples"] == 12

    partial = tmp_path / "partial"
    done = runner.invoke(app, ["generate", *map(str, common), "--out", str(partial), "--shards", "0:1"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["finalize", str(partial)])
    assert done.exit_code != 0 and "shards 1-2" in str(done.exception)


def test_exact_engine_in_two_local_processes(small_plan, tmp_path):
    runner = CliRunner()
    common = ["generate", "--plan", str(small_plan), "--engine", "phantom", "--size", "32"]
    done = runner.invoke(app, [*common, "--out", str(tmp_path / "one")])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, [*common, "--out", str(tmp_path / "two"), "--workers", "2"])
    assert done.exit_code == 0, done.output
    assert "2 processes: 4 shards (4 written now, 0 already done), 24 samples, 0 failed" in done.output
    for shard in range(4):
        one, two = layout.tar_path(tmp_path / "one", shard), layout.tar_path(tmp_path / "two", shard)
        assert one.read_bytes() == two.read_bytes()
    done = runner.invoke(app, [*common, "--out", str(tmp_path / "x"), "--checkpoint", "phantom-64"])
    assert done.exit_code != 0 and "takes no --checkpoint" in str(done.exception)
