from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from synthfair.config import config_to_dict, dataclass_from_dict, load_config
from synthfair.errors import ConfigError


@dataclass(frozen=True)
class UNet:
    channels: tuple[int, ...] = (8, 16)
    dropout: float = 0.0


@dataclass(frozen=True)
class Train:
    name: str
    lr: float = 1e-4
    unet: UNet = field(default_factory=UNet)
    size: tuple[int, int] = (16, 16)
    on_error: Literal["stop", "skip"] = "stop"
    out: Path | None = None


def test_nested_dataclass_with_tuples():
    cfg = dataclass_from_dict(
        Train, {"name": "x", "lr": 1, "unet": {"channels": [4, 8, 16]}, "size": [32, 32]}
    )
    assert cfg == Train(name="x", lr=1.0, unet=UNet(channels=(4, 8, 16)), size=(32, 32))
    assert isinstance(cfg.lr, float) and isinstance(cfg.unet.channels, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 2.0


def test_defaults_and_optional_path():
    assert dataclass_from_dict(Train, {"name": "x"}) == Train(name="x")
    assert dataclass_from_dict(Train, {"name": "x", "out": "runs/a"}).out == Path("runs/a")
    assert dataclass_from_dict(Train, {"name": "x", "out": None}).out is None


@pytest.mark.parametrize(
    "data, fragments",
    [
        (
            {"name": "x", "unet": {"chanels": [1]}},
            ["cfg.yaml", "'unet.chanels'", "did you mean 'channels'", "dropout"],
        ),
        ({"name": "x", "learning_rate": 1}, ["unknown key 'learning_rate'", "allowed keys: name, lr, unet"]),
        ({}, ["missing required key 'name'"]),
        ({"name": 3}, ["name: expected str, got int 3"]),
        ({"name": "x", "lr": "fast"}, ["lr: expected float", "'fast'"]),
        ({"name": "x", "unet": {"channels": [8, "a"]}}, ["unet.channels[1]: expected int", "'a'"]),
        ({"name": "x", "unet": {"channels": [True]}}, ["unet.channels[0]: expected int, got bool"]),
        ({"name": "x", "unet": {"channels": 8}}, ["unet.channels: expected a list"]),
        ({"name": "x", "size": [1, 2, 3]}, ["size: expected a list of 2 items"]),
        ({"name": "x", "on_error": "stpo"}, ["on_error: 'stpo'", "did you mean 'stop'"]),
        ({"name": "x", "unet": [8]}, ["unet: expected a mapping"]),
    ],
)
def test_bad_config_names_where_and_key(data, fragments):
    with pytest.raises(ConfigError) as info:
        dataclass_from_dict(Train, data, where="cfg.yaml")
    message = str(info.value)
    assert message.startswith("cfg.yaml: ")
    for fragment in fragments:
        assert fragment in message


def test_load_config_round_trip(tmp_path):
    cfg = Train(name="run", lr=3e-4, unet=UNet(channels=(4, 8)), out=Path("runs/x"))
    plain = config_to_dict(cfg)
    assert plain["unet"]["channels"] == [4, 8] and plain["out"] == "runs/x"
    json.dumps(plain)  # JSON-ready
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(plain))
    assert load_config(Train, path) == cfg


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "unet.yaml"
    path.write_text("# nothing set\n")
    assert load_config(UNet, path) == UNet()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: [unclosed\n", "invalid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("name: a\nname: b\n", "duplicate key 'name'"),
        ("name: a\nlr: 1\nlrr: 2\n", "unknown key 'lrr'"),
    ],
)
def test_load_config_errors_name_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(Train, path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read .*missing.yaml"):
        load_config(Train, tmp_path / "missing.yaml")
