"""`synthfair ingest`, `synthfair index stats` and `synthfair preprocess` end to end."""

import json

import pytest
from typer.testing import CliRunner

from source_files import phantom_row, write_phantom_source
from synthfair.cli.main import app, run


def test_ingest_stats_preprocess(tmp_path):
    rows = [phantom_row(i) for i in range(5)] + [phantom_row(5, sex="x")]
    write_phantom_source(tmp_path / "src", rows)
    runner = CliRunner()
    index = tmp_path / "index"
    args = ["ingest", "phantom", "--root", str(tmp_path / "src"), "--out", str(index), "--on-error", "skip"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "read 6, indexed 5, quarantined 1" in result.output
    assert (
        "quarantined (unmapped_value): 1" in result.output and "quarantine/phantom.parquet" in result.output
    )

    result = runner.invoke(app, ["index", "stats", str(index), "--min-count", "2"])
    assert result.exit_code == 0, result.output
    assert "per intersection (age x sex x race" in result.output and "FEW" in result.output
    result = runner.invoke(app, ["index", "stats", str(index), "--json", "--axes", "sex"])
    data = json.loads(result.output)
    assert sum(r["n"] for r in data["intersections"]) == 5

    cache = tmp_path / "cache"
    result = runner.invoke(
        app, ["preprocess", str(index), "--out", str(cache), "--size", "16", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "5 images in 1 shards" in result.output and (cache / "manifest.json").is_file()


def test_bad_rows_stop_with_a_one_line_error_and_hint(tmp_path, capsys):
    write_phantom_source(tmp_path / "src", [phantom_row(0, race="martian")])
    with pytest.raises(SystemExit) as exit:
        run(app, ["ingest", "phantom", "--root", str(tmp_path / "src"), "--out", str(tmp_path / "i")])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "error: metadata.csv, row 1: unmapped raw value 'martian'" in err
    assert "hint: add it under sources.phantom.covariates.race.map" in err and "--on-error skip" in err
