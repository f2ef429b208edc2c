import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest
import typer
from typer.testing import CliRunner

import synthfair
from synthfair.cli.main import app, run
from synthfair.errors import ConfigError
from synthfair.taxonomy import load_taxonomy

runner = CliRunner()


def failing_app() -> typer.Typer:
    """A throwaway app whose `boom` command raises a known error."""
    test_app = typer.Typer()

    @test_app.command()
    def boom(hint: bool = True) -> None:
        raise ConfigError(
            "bad.yaml: lr: expected float,\ngot 'fast'", hint="write lr: 0.001" if hint else None
        )

    @test_app.command()
    def ok() -> None:
        typer.echo("fine")

    return test_app


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "env" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"synthfair {synthfair.__version__}"


def test_env_json():
    import torch

    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["packages"]["torch"] == importlib.metadata.version("torch")
    assert info["torch"]["intra_op_threads"] == torch.get_num_threads()
    assert info["taxonomy"]["sha256"] == load_taxonomy().sha256


def test_env_text():
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0
    assert "intra_op_threads" in result.output and load_taxonomy().sha256 in result.output


def test_env_json_in_a_real_process():
    done = subprocess.run(
        [sys.executable, "-m", "synthfair", "env", "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["synthfair"] == synthfair.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.parametrize("hint, lines", [(True, 2), (False, 1)])
def test_known_error_prints_one_line_and_hint(capsys, monkeypatch, hint, lines):
    monkeypatch.delenv("SYNTHFAIR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run(failing_app(), ["boom"] if hint else ["boom", "--no-hint"])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == lines
    assert err[0] == "error: bad.yaml: lr: expected float, got 'fast'"
    if hint:
        assert err[1] == "hint: write lr: 0.001"


def test_debug_reraises(monkeypatch):
    monkeypatch.setenv("SYNTHFAIR_DEBUG", "1")
    with pytest.raises(ConfigError, match="expected float"):
        run(failing_app(), ["boom"])


def test_success_and_usage_errors_keep_click_behaviour(capsys):
    with pytest.raises(SystemExit) as info:
        run(failing_app(), ["ok"])
    assert info.value.code == 0 and capsys.readouterr().out == "fine\n"
    with pytest.raises(SystemExit) as info:
        run(failing_app(), ["nope"])
    assert info.value.code == 2 and "No such command" in capsys.readouterr().err


SCRIPT = textwrap.dedent(
    """
    import typer
    from synthfair.cli.main import run
    from synthfair.errors import SynthfairError

    app = typer.Typer()

    @app.command()
    def boom():
        raise SynthfairError("something is wrong", hint="do this")

    @app.command()
    def ok():
        pass

    run(app, ["boom"])
    """
)


@pytest.mark.parametrize("debug", [False, True])
def test_debug_variable_in_a_real_process(debug):
    env = {k: v for k, v in os.environ.items() if k != "SYNTHFAIR_DEBUG"}
    if debug:
        env["SYNTHFAIR_DEBUG"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    if debug:
        assert done.returncode == 1
        assert "Traceback" in done.stderr and "SynthfairError: something is wrong" in done.stderr
    else:
        assert done.returncode == 2
        assert done.stderr == "error: something is wrong\nhint: do this\n"


@pytest.mark.parametrize(
    "args", [["--help"], ["sample", "--help"], ["download", "--help"], ["index", "stats", "--help"]]
)
def test_the_user_side_never_imports_torch(args):
    code = textwrap.dedent(
        f"""
        import sys
        from synthfair.cli.main import main
        try:
            main({args!r})
        except SystemExit:
            pass
        print("heavy:", sorted(m for m in ("torch", "diffusers", "accelerate") if m in sys.modules))
        """
    )
    run_ = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "heavy: []" in run_.stdout and "Usage" in run_.stdout


def test_every_command_loads_and_has_its_own_help():
    from synthfair.cli.main import COMMANDS

    for name in COMMANDS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, (name, result.output)
