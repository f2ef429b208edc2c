"""`synthfair counterfactual`: one counterfactual of one image, from a trained run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthfair.config import config_to_dict
from synthfair.counterfactual import CounterfactualEngine, EngineConfig, parse_do
from synthfair.errors import SynthfairError
from synthfair.fileio import atomic_write, write_json
from synthfair.images.readers import read_image
from synthfair.images.resize import fit_image
from synthfair.phantom.source import image_bytes


def counterfactual(
    checkpoint: Annotated[
        Path,
        typer.Option(help="A run directory (runs/NAME), a model directory or a shipped model (phantom-64)."),
    ],
    image: Annotated[Path, typer.Option(help="The factual image (PNG, JPEG or DICOM).")],
    covariates: Annotated[str, typer.Option(help="The factual covariates: a JSON object or a .json file.")],
    out: Annotated[Path, typer.Option(help="The counterfactual (16-bit PNG); OUT.json goes beside.")],
    do: Annotated[
        list[str] | None, typer.Option("--do", help='An intervention, e.g. "age=80" or "findings.edema=1".')
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Diffusion steps (default: the model's).")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale of every changed group (default: the model's).")
    ] = None,
    guide: Annotated[
        str | None, typer.Option(help="Guide away from: intervened, factual or all (default: the model's).")
    ] = None,
    residual: Annotated[
        bool | None, typer.Option(help="Add back the reconstruction residual (ddim).")
    ] = None,
    abduction: Annotated[
        str | None,
        typer.Option(help="ddpm (noise maps) or ddim (inversion + residual); default: the model's."),
    ] = None,
    fit: Annotated[str, typer.Option(help="Fit to the model: crop, pad, stretch.")] = "crop",
    seed: Annotated[int, typer.Option(help="Seed of the covariate abduction.")] = 0,
) -> None:
    """Answer "what would this radiograph look like had ...": abduct, intervene, predict."""
    config = EngineConfig.recommended(
        checkpoint,
        steps=steps,
        guidance=guidance,
        guide=guide,
        residual=residual,
        abduction=abduction,
        batch_size=1,
    )
    engine = CounterfactualEngine.load(checkpoint, config)
    factual, ignored = _covariates(covariates, engine.model.encoder.taxonomy)
    if ignored:
        typer.echo(f"note: --covariates fields that are not covariates are ignored: {', '.join(ignored)}")
    intervention = parse_do(do or [], engine.model.encoder.taxonomy)
    pixels = fit_image(read_image(image).image, engine.size, fit)
    result = engine([pixels], [factual], [intervention], seeds=[seed])[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    png = image_bytes((result.image * 65535.0 + 0.5).astype("uint16"))
    atomic_write(out, lambda f: f.write(png))
    record = {
        "image": str(image),
        "checkpoint": str(checkpoint),
        "factual": result.factual,
        "intervention": result.intervention,
        "covariates": result.covariates,
        "changed": list(result.changed),
        "propagated": result.propagated,
        "reconstruction_error": result.reconstruction_error,
        "settings": config_to_dict(config),
        "seed": seed,
    }
    sidecar = out.with_suffix(".json")
    write_json(sidecar, record)
    typer.echo(f"changed: {', '.join(result.changed) or 'nothing'}")
    typer.echo(f"counterfactual: {out.resolve()}")
    typer.echo(f"record: {sidecar.resolve()}")


def _covariates(text: str, taxonomy) -> tuple[dict, list[str]]:
    """--covariates: a JSON object (covariates, a metadata row, or a sample's record) or a .json file."""
    source = Path(text)
    try:
        raw = source.read_text() if text.endswith(".json") and source.is_file() else text
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as err:
        raise SynthfairError(
            f"--covariates is neither a JSON object nor a readable .json file: {err}",
            '\'{"age": 63, "sex": "male", "findings": {"edema": 0}}\' or a file name ending in .json',
        ) from None
    if not isinstance(data, dict):
        raise SynthfairError(f"--covariates must be a JSON object, got {type(data).__name__}", "use {...}")
    if isinstance(data.get("covariates"), dict):  # a sample's record (synthfair.sample/1): its covariates
        data = data["covariates"]
    return _only_covariates(data, taxonomy)


def _only_covariates(row: dict, taxonomy) -> tuple[dict, list[str]]:
    """The covariates of ``row`` (a covariate record, or a flat metadata row with ``findings.x`` columns and
    numbers as text), and the names of the fields that are not covariates."""
    out: dict = {}
    ignored = []
    for name, value in row.items():
        base, dot, label = str(name).partition(".")
        if base not in taxonomy:
            ignored.append(str(name))
            continue
        kind = taxonomy[base].kind
        if dot and kind == "multilabel":
            out.setdefault(base, {})[label] = _number(value)
        elif kind == "continuous":
            out[base] = _number(value)
        else:
            out[base] = value
    return out, ignored


def _number(value):
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value  # the engine's covariate check names it
        return int(number) if number.is_integer() else number
    return value
