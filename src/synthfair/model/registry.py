"""The image model's kinds behind one interface.

A model directory's ``synthfair_model.json`` names its kind (``"kind"``; absent means ``"diffusion"``, as
every model written before HVAEs existed):

- ``diffusion``: `synthfair.model.diffusion.DiffusionModel` (``unet/``, ``scheduler/``): counterfactuals by
  DDIM inversion or DDPM noise maps and a guided reverse chain;
- ``hvae``: `synthfair.model.hvae.HVAEModel` (``hvae/``): counterfactuals by abducting the latents and the
  image noise, then decoding under the counterfactual covariates (3 network passes, exact null).

`synthfair.counterfactual.CounterfactualEngine`, training (``init_from``) and generation (the weights'
sha256 in a release's provenance) go through `load_model` and `weights_file`; both kinds write their record
with `write_record` and read it through `read_record` and `condition_encoder`. A model directory may come
from anyone: the record is JSON of bounded size, checked before use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import synthfair
from synthfair.config import config_to_dict
from synthfair.errors import ConfigError
from synthfair.fileio import write_json
from synthfair.model.conditioning import ConditionEncoder
from synthfair.taxonomy import Taxonomy

MODEL_FILE = "synthfair_model.json"
ENGINE_FILE = "engine.json"  # beside it: the recommended engine settings (synthfair.counterfactual)
KINDS = ("diffusion", "hvae")
DEFAULT_KIND = "diffusion"  # not written: a diffusion model's record is what it was before HVAEs
OWN_KEYS = ("schema", "kind", "model", "conditioning", "synthfair_version")  # the rest is provenance
MAX_META_BYTES = 1 << 20  # a model's JSON record: a few kB
HINT = "pass a run's model/ directory (written by `synthfair train`), or retrain or re-download the model"


def model_kind(directory: str | Path) -> str:
    """The kind of the model in ``directory`` (read from its ``synthfair_model.json``)."""
    return _kind(_read_json(Path(directory)), Path(directory) / MODEL_FILE)


def write_record(
    directory: Path, kind: str, config: Any, encoder: ConditionEncoder, extra: dict[str, Any]
) -> None:
    """``synthfair_model.json``: the model's kind, config (a dataclass), conditioning, package version and
    the provenance ``extra`` (e.g. its training run)."""
    meta = {
        "schema": "synthfair.model/1",
        **({} if kind == DEFAULT_KIND else {"kind": kind}),
        "model": config_to_dict(config),
        "conditioning": encoder.state(),
        "synthfair_version": synthfair.__version__,
        **extra,
    }
    write_json(directory / MODEL_FILE, meta)


def record_extra(meta: dict[str, Any]) -> dict[str, Any]:
    """The provenance a record carries besides what `write_record` itself writes."""
    return {k: v for k, v in meta.items() if k not in OWN_KEYS}


def read_record(directory: str | Path, kind: str) -> dict[str, Any]:
    """The record of the ``kind`` model in ``directory``, with its model config and conditioning."""
    path = Path(directory) / MODEL_FILE
    meta = _read_json(Path(directory))
    found = _kind(meta, path)
    if found != kind:
        raise ConfigError(
            f"{directory} holds an image model of kind {found!r}, not {kind!r}",
            "load it with synthfair.model.registry.load_model (the engine and training do)",
        )
    conditioning = meta.get("conditioning")
    if (
        not isinstance(conditioning, dict)
        or not isinstance(conditioning.get("model_sha256"), str)
        or not isinstance(conditioning.get("covariates"), list)
        or not isinstance(meta.get("model"), dict)
    ):
        raise ConfigError(f"{path}: no model config or conditioning (covariates and model_sha256)", HINT)
    return meta


def condition_encoder(directory: str | Path, meta: dict[str, Any], taxonomy: Taxonomy) -> ConditionEncoder:
    """The conditioning the model in ``directory`` was trained with (``taxonomy`` must have the same)."""
    trained = meta["conditioning"]["model_sha256"]
    if trained != taxonomy.model_sha256:
        raise ConfigError(
            f"{directory} was trained with taxonomy covariates {trained[:12]}..., "
            f"this taxonomy's are {taxonomy.model_sha256[:12]}...",
            "load it with the taxonomy.yaml it was trained with (covariates and domains must match)",
        )
    return ConditionEncoder(taxonomy, meta["conditioning"]["covariates"])


def load_model(directory: str | Path, taxonomy: Taxonomy | None = None):
    """The model in ``directory``: a `DiffusionModel` or an `HVAEModel`, by its kind."""
    if model_kind(directory) == "hvae":
        from synthfair.model.hvae import HVAEModel

        return HVAEModel.load(directory, taxonomy)
    from synthfair.model.diffusion import DiffusionModel

    return DiffusionModel.load(directory, taxonomy)


def weights_file(directory: str | Path) -> Path:
    """The safetensors file of the model in ``directory`` (whose sha256 identifies the weights)."""
    if model_kind(directory) == "hvae":
        from synthfair.model.hvae import WEIGHTS

        return Path(directory) / WEIGHTS
    from synthfair.model.diffusion import WEIGHTS

    return Path(directory) / WEIGHTS


def _read_json(directory: Path) -> Any:
    path = directory / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} is not a synthfair model directory (no {MODEL_FILE})", HINT)
    if path.stat().st_size > MAX_META_BYTES:
        raise ConfigError(f"{path} is {path.stat().st_size} bytes: not a model record", HINT)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not JSON: {err}", HINT) from None


def _kind(meta: Any, path: Path) -> str:
    kind = meta.get("kind", DEFAULT_KIND) if isinstance(meta, dict) else None
    if kind not in KINDS:
        raise ConfigError(f"{path}: kind {kind!r} is not one of {KINDS}", HINT)
    return kind
