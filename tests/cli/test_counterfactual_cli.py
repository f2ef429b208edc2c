import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from synthfair.cli.main import app
from synthfair.model.data import CacheDataset


def test_counterfactual_command_writes_image_and_record(trained_run, cache, tmp_path):
    data = CacheDataset(cache)
    image = tmp_path / "x.png"
    Image.fromarray((data.image(0) * 65535).astype(np.uint16)).save(image)
    factual = tmp_path / "factual.json"
    factual.write_text(json.dumps(data.covariates(0)))
    out = tmp_path / "cf" / "x_cf.png"
    args = [
        "counterfactual",
        "--checkpoint",
        str(trained_run),
        "--image",
        str(image),
        "--covariates",
        str(factual),
        "--do",
        "age=80",
        "--do",
        "findings.edema=1",
        "--out",
        str(out),
        "--steps",
        "2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "changed: age" in result.output
    with Image.open(out) as im:
        assert im.size == (16, 16) and np.asarray(im).dtype == np.uint16
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["intervention"] == {"age": 80.0, "findings": {"edema": 1}}
    assert record["covariates"]["age"] == 80.0 and record["covariates"]["findings"]["edema"] == 1


def test_bad_covariates_and_do_are_one_line_errors(trained_run, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(image)
    base = [
        "counterfactual",
        "--checkpoint",
        str(trained_run),
        "--image",
        str(image),
        "--out",
        str(tmp_path / "o.png"),
    ]
    result = CliRunner().invoke(app, [*base, "--covariates", "{not json"])
    assert result.exit_code != 0 and "neither a JSON object" in str(result.exception)
    result = CliRunner().invoke(app, [*base, "--covariates", "{}", "--do", "age=old"])
    assert result.exit_code != 0 and "'old' is not a number" in str(result.exception)


def test_covariates_from_a_metadata_row_or_a_sample_record(trained_run, cache, tmp_path):
    data = CacheDataset(cache)
    image = tmp_path / "x.png"
    Image.fromarray((data.image(0) * 65535).astype(np.uint16)).save(image)
    covariates = data.covariates(0)
    row = {"key": "phantom_s0_000000", "image": "images/x.png", "split": "train"}  # a metadata.csv row
    for name, value in covariates.items():
        if isinstance(value, dict):
            row |= {f"{name}.{label}": str(flag) for label, flag in value.items()}
        else:
            row[name] = str(value) if value is not None else ""
    record = {"key": "k_f", "kind": "factual", "covariates": covariates}  # a release sample's JSON
    for given, note in ((row, "key, image, split"), (record, None)):
        path = tmp_path / "given.json"
        path.write_text(json.dumps(given))
        out = tmp_path / "cf.png"
        args = [
            "counterfactual",
            "--checkpoint",
            str(trained_run),
            "--image",
            str(image),
            "--covariates",
            str(path),
            "--do",
            "age=80",
            "--out",
            str(out),
            "--steps",
            "2",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (note is None) == ("are ignored" not in result.output)
        if note:
            assert note in result.output
        saved = json.loads(out.with_suffix(".json").read_text())
        assert saved["covariates"]["age"] == 80.0
