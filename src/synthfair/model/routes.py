"""Routes: one model directory, several image models, each serving the interventions it is best at.

A model directory may hold other image models under ``routes/NAME/`` (any kind: a diffusion model, an HVAE),
and its engine settings (``engine.json``) a map from covariate, or one categorical value of it, to route
name, e.g. ``{"routes": {"view=LATERAL": "hvae", "device": "hvae"}}``. The counterfactual engine
(`synthfair.counterfactual`) sends a counterfactual whose changed covariates all map to one route (a route
of the new value before the covariate's) to that route's model, and everything else (other covariates, or
a change that spans routes and others) to the directory's own model. The covariates are computed once, by
the directory's own SCM.

Which intervention goes where is the evaluator's choice, measured against the phantom's truth on development
subjects (``bench/routes.py``), never on the held-out subjects that report the result.

A route name is a plain name (letters, digits, ``-`` and ``_``): a route never leaves its model directory,
whatever ``engine.json`` says (it may come from anyone).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from synthfair.errors import ConfigError
from synthfair.fileio import write_json
from synthfair.model.finetune import keep_digests
from synthfair.model.registry import ENGINE_FILE, MODEL_FILE
from synthfair.model.train import GUIDANCE_DIR, SCM_DIR
from synthfair.taxonomy import Taxonomy

ROUTES_DIR = "routes"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: str) -> str:
    """``name`` if it is a plain route name, else a ConfigError naming it."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"route name {name!r} is not a plain name (letters, digits, - and _, at most 64)",
            "name the route's folder under routes/, e.g. hvae",
        )
    return name


def check_key(key: str, taxonomy: Taxonomy) -> str:
    """``key`` if it names a covariate of ``taxonomy`` (``device``) or one categorical value of one
    (``view=LATERAL``), else a ConfigError naming it."""
    covariate, _, value = key.partition("=")
    if covariate not in taxonomy:
        raise ConfigError(f"routes: unknown covariate {covariate!r}", "route covariates of taxonomy.yaml")
    spec = taxonomy[covariate]
    if value and (spec.kind != "categorical" or value not in spec.values):
        raise ConfigError(
            f"routes: {key!r} names no value of {covariate} ({spec.kind}, {spec.domain})",
            f"route the covariate ({covariate!r}) or one of its categorical values",
        )
    return key


def route_dir(model_dir: str | Path, name: str) -> Path:
    """The model directory of route ``name`` inside ``model_dir``; refused if it is missing or, through a
    link, outside ``model_dir``."""
    root = Path(model_dir)
    path = root / ROUTES_DIR / check_name(name)
    if not (path / MODEL_FILE).is_file():
        raise ConfigError(
            f"route {name!r}: no model at {path}",
            f"add one with synthfair.model.routes.add_route({name!r}, ...)",
        )
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(
            f"route {name!r}: {path} leads outside {root}", "copy the route's model into routes/"
        )
    return path


def route_dirs(model_dir: str | Path) -> list[Path]:
    """Every route model directory inside ``model_dir`` (sorted; none without a ``routes/`` folder)."""
    root = Path(model_dir) / ROUTES_DIR
    if not root.is_dir():
        return []
    return [route_dir(model_dir, p.name) for p in sorted(root.iterdir()) if p.is_dir()]


def add_route(model_dir: str | Path, name: str, source: str | Path, keys: Iterable[str]) -> Path:
    """Copy the image model of ``source`` into ``model_dir/routes/name`` and route ``keys`` (covariates, or
    ``covariate=value``) to it in ``model_dir``'s engine settings (other settings kept). The classifiers that
    fine-tuned it are kept as their digests and subject records (`finetune.keep_digests`); its attribute SCM
    is left out (the routed directory's own computes every counterfactual's covariates). Returns the
    route's directory."""
    model_dir, source = Path(model_dir), Path(source)
    if not (source / MODEL_FILE).is_file():
        raise ConfigError(
            f"no model at {source} (no {MODEL_FILE})", "pass a model directory (runs/NAME/model)"
        )
    if (source / ROUTES_DIR).is_dir():
        raise ConfigError(f"{source} has routes of its own", "route to a model without routes/")
    target = model_dir / ROUTES_DIR / check_name(name)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(SCM_DIR))  # the main model's SCM decides
    for guide in sorted(p for p in (target / GUIDANCE_DIR).glob("*") if p.is_dir()):
        keep_digests(guide)  # the independence check needs their digests and subjects, not their weights
    settings_path = model_dir / ENGINE_FILE
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    settings["routes"] = {**settings.get("routes", {}), **{key: name for key in keys}}
    write_json(settings_path, settings)
    return target
