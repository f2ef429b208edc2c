import json

from typer.testing import CliRunner

from synthfair.cli.main import app

runner = CliRunner()


def test_sample_writes_the_subset_and_its_baseline_and_prints_achieved_numbers(finalized_release, tmp_path):
    spec = tmp_path / "bias.yaml"
    spec.write_text("size: 4\ntarget: findings.cardiomegaly\nsplits: {train: 0.5, test: 0.5}\n")
    out = tmp_path / "subset"
    result = runner.invoke(app, ["sample", str(finalized_release), "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "subset: 4 samples (2 train, 2 test)" in result.output and "baseline: 4 samples" in result.output
    assert f"--subset {out}" in result.output
    meta = json.loads((out / "subset.json").read_text())
    assert meta["size"] == 4 and meta["shards"] and not meta["baseline"]
    assert json.loads((out / "baseline" / "subset.json").read_text())["baseline"]


def test_an_infeasible_spec_exits_with_the_reason(finalized_release, tmp_path):
    spec = tmp_path / "bias.yaml"
    spec.write_text("size: 500\n")
    args = ["sample", str(finalized_release), "--spec", str(spec), "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "infeasible" in str(result.exception)


def test_no_baseline_draws_no_baseline(finalized_release, tmp_path, monkeypatch):
    import synthfair.cli.sample as cli_sample

    def refuse(*args, **kwargs):
        raise AssertionError("the baseline was drawn")

    monkeypatch.setattr(cli_sample, "sample_with_baseline", refuse)
    spec = tmp_path / "bias.yaml"
    spec.write_text("size: 4\ntarget: findings.cardiomegaly\nsplits: {train: 0.5, test: 0.5}\n")
    out = tmp_path / "subset"
    args = ["sample", str(finalized_release), "--spec", str(spec), "--out", str(out), "--no-baseline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "subset.json").is_file() and not (out / "baseline").exists()
