"""Choose routes by the phantom's truth: which image model serves each covariate's interventions best.

On development subjects (``--seed``, default 4: never the models' training subjects (seed 1), the oracles'
(seed 2) or the ladder's held-out ones (seed 3)), each model makes the counterfactuals of the phantom grid and
is scored against the exact ones (`synthfair.evaluate.phantom_truth`). Per route key (a categorical value,
``view=LATERAL``; else the covariate: ``age``, ``findings``) the model with the higher mean ``captured`` over
the key's interventions wins, provided its mean cosine is not lower either; a candidate that wins gets the
key's route (`synthfair.model.routes`). With ``--out`` the
primary model is copied there with the routes added: a model directory the engine, ``synthfair generate``
and ``bench/counterfactual.py`` use as one.

The engine routes a counterfactual by the covariates it changes after the SCM: a do() that propagates (age
and sex reach the findings) stays with the primary model unless every covariate it changes is routed alike.

    python bench/routes.py --model runs/phantom-64/model --candidate hvae=runs/hvae-cft/model \\
        [--subjects 24] [--seed 4] [--out runs/routed/model]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from counterfactual import engine_settings, first_subjects, interventions, load_truth
from synthfair.counterfactual import CounterfactualEngine
from synthfair.evaluate.phantom_truth import model_counterfactuals, score
from synthfair.fileio import sha256_file
from synthfair.model.diffusion import resolve_model
from synthfair.model.registry import weights_file
from synthfair.model.routes import add_route, check_name
from synthfair.phantom.simulator import Phantom, PhantomConfig


def key_scores(model_dir, exact, columns: dict[str, str], args) -> pd.DataFrame:
    """Mean captured and cosine per route key (``columns``: intervention label -> key), cached in
    ``--cache`` by the model's weights sha256, its engine settings and the subjects."""
    settings = engine_settings(model_dir, "{}")
    digest = sha256_file(weights_file(model_dir))[:16]
    digest += hashlib.sha256(repr(settings).encode()).hexdigest()[:8]
    path = Path(args.cache) / f"routes-{digest}-s{args.seed}-n{args.subjects}.json"
    if path.is_file():
        return pd.read_json(path, orient="split")
    table = _key_scores(model_dir, settings, exact, columns)
    table.to_json(path, orient="split")
    return table


def _key_scores(model_dir, settings, exact, columns: dict[str, str]) -> pd.DataFrame:
    engine = CounterfactualEngine.load(model_dir, settings)
    t = time.perf_counter()
    table = score(exact, model_counterfactuals(engine, exact))
    print(f"{model_dir}: {time.perf_counter() - t:.0f} s")
    table = table[table["intervention"].isin(columns)].assign(key=lambda d: d["intervention"].map(columns))
    return table.groupby("key")[["captured", "cosine"]].mean()


def route_key(do: dict) -> str:
    """``view=LATERAL`` for a do() of one categorical value, else the covariate's name."""
    [(name, value)] = do.items()
    return f"{name}={value}" if isinstance(value, str) else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the primary model directory")
    parser.add_argument("--candidate", action="append", default=[], help="NAME=MODEL_DIR, repeatable")
    parser.add_argument("--subjects", type=int, default=24)
    parser.add_argument("--seed", type=int, default=4, help="development subjects' seed (not 1, 2 or 3)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cache", default="data/bench-truth", help="where the rendered truth is cached")
    parser.add_argument("--out", default=None, help="write the routed model directory here")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    args.draws, args.limit = 0, None  # load_truth's settings: no posterior draws needed to choose
    torch.set_num_threads(args.threads)
    candidates = dict(item.split("=", 1) for item in args.candidate)
    for name in candidates:
        check_name(name)
    phantom = Phantom(PhantomConfig())
    exact = first_subjects(load_truth(phantom, args), args.subjects)
    # the grid's interventions (the do(finding=0) columns too), each by its route key
    columns = {label: route_key(do) for label, do in interventions(phantom) if do}
    scores = {"primary": key_scores(resolve_model(args.model), exact, columns, args)}
    for name, path in candidates.items():
        scores[name] = key_scores(resolve_model(path), exact, columns, args)
    table = pd.concat(scores, axis=1)
    print(table.round(3).to_string())
    routes: dict[str, list[str]] = {}
    for key in table.index:
        best = "primary"
        for name in candidates:
            mine, theirs = scores[name].loc[key], scores[best].loc[key]
            if mine["captured"] > theirs["captured"] and mine["cosine"] >= theirs["cosine"]:
                best = name
        if best != "primary":
            routes.setdefault(best, []).append(key)
    print(f"routes (seed {args.seed}, {args.subjects} subjects): {json.dumps(routes)}")
    if args.out:
        out = Path(args.out)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(resolve_model(args.model), out)
        for name, keys in routes.items():
            add_route(out, name, resolve_model(candidates[name]), keys)
        print(f"routed model: {out.resolve()}")


if __name__ == "__main__":
    main()
