import subprocess
import sys

from typer.testing import CliRunner

from synthfair.cli.main import app


def test_phantom_needs_out_or_grid():
    result = CliRunner().invoke(app, ["phantom", "--anatomy", "procedural"])
    assert result.exit_code != 0
    assert "nothing to do" in str(result.exception) + result.output


def test_phantom_cli_writes_a_source_and_a_grid(tmp_path):
    out, grid = tmp_path / "src", tmp_path / "grid.png"
    cmd = [
        sys.executable,
        "-m",
        "synthfair",
        "phantom",
        "--out",
        str(out),
        "--n",
        "2",
        "--size",
        "32",
        "--anatomy",
        "procedural",
        "--workers",
        "1",
        "--grid",
        str(grid),
        "--grid-rows",
        "1",
        "--grid-size",
        "32",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert len(list((out / "images").glob("*.png"))) == 2
    assert (out / "provenance.json").exists() and grid.exists()


def test_unknown_anatomy_is_one_line_with_a_hint(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthfair",
            "phantom",
            "--out",
            str(tmp_path),
            "--n",
            "1",
            "--anatomy",
            "mri",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: phantom anatomy 'mri' is not known")
    assert "hint:" in run.stderr
