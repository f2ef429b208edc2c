"""`synthfair route`: add another image model to a model directory, for the interventions it serves best."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthfair.errors import ConfigError


def route(
    model_dir: Annotated[
        Path, typer.Argument(help="The model directory that gets the route (runs/NAME/model).")
    ],
    source: Annotated[Path, typer.Option("--model", help="The image model that serves the route.")],
    keys: Annotated[
        list[str],
        typer.Option(
            "--key", help="A covariate (device) or one categorical value (view=LATERAL); repeatable."
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="The route's folder under routes/.")] = "hvae",
) -> None:
    """Route the interventions of KEYS to another image model, copied into MODEL_DIR/routes/NAME.

    Choose the keys by the phantom's truth on development subjects (bench/routes.py), never on the subjects
    that report the result. The routed directory is checked by loading its engine.
    """
    from synthfair.counterfactual import CounterfactualEngine
    from synthfair.model.routes import add_route, check_key, check_name
    from synthfair.taxonomy import load_taxonomy

    if not keys:
        raise ConfigError(
            "no --key given", "name what the route serves, e.g. --key view=LATERAL --key device"
        )
    taxonomy = load_taxonomy()
    for key in keys:
        check_key(key, taxonomy)
    target = add_route(model_dir, check_name(name), source, keys)
    engine = CounterfactualEngine.load(model_dir, taxonomy=taxonomy)  # the routed directory works
    typer.echo(f"route {name}: {target.resolve()}")
    typer.echo(f"routes: {json.dumps(engine.config.routes)}")
