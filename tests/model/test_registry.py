import json

import pytest

from synthfair.errors import ConfigError
from synthfair.model.diffusion import DiffusionModel
from synthfair.model.registry import MAX_META_BYTES, MODEL_FILE, load_model, model_kind, weights_file


def test_a_diffusion_model_without_a_kind_is_a_diffusion_model(trained_run):
    model_dir = trained_run / "model"
    meta = json.loads((model_dir / MODEL_FILE).read_text())
    assert "kind" not in meta  # written as every model before HVAEs
    assert model_kind(model_dir) == "diffusion"
    assert isinstance(load_model(model_dir), DiffusionModel)
    assert weights_file(model_dir) == model_dir / "unet" / "diffusion_pytorch_model.safetensors"


def _record(tmp_path, text: str | bytes):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / MODEL_FILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not a synthfair model directory"),
        ('{"kind": "gan"}', r"kind 'gan' is not one of \('diffusion', 'hvae'\)"),
        ("[1, 2]", "kind None is not one of"),
        ("{not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b" " * (MAX_META_BYTES + 1), "bytes: not a model record"),
    ],
)
def test_a_bad_model_record_is_refused_by_name(tmp_path, content, message):
    directory = tmp_path / "model" if content is None else _record(tmp_path / "model", content)
    directory.mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match=message):
        load_model(directory)


def test_a_diffusion_loader_refuses_an_hvae_directory(tmp_path):
    directory = _record(tmp_path / "model", '{"kind": "hvae"}')
    with pytest.raises(ConfigError, match="of kind 'hvae', not 'diffusion'"):
        DiffusionModel.load(directory)
