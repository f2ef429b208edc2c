"""The counterfactual ladder: one image model + engine setting against the phantom's exact counterfactuals.

Held-out phantom subjects (``--seed``, never used for training or model selection of the shipped model) are
rendered with their exact counterfactuals under the phantom grid's interventions plus do(finding=0) for each
finding, and the posterior of every counterfactual's unidentified part (``--draws``; see
`synthfair.evaluate.phantom_truth`); these renders are cached in ``--cache``. Then, for the model:

1. truth: per intervention captured, cosine and magnitude, next to the identifiable ceilings;
2. oracles (``--oracles``, independent of the model): accuracy on counterfactuals against the oracle's
   accuracy on the exact counterfactuals (real images with that value), findings AUROC of do(finding=1) vs
   do(finding=0) images, age MAE after do(age), and amplification (mean shift of the oracle outputs the
   intervention should not change: probability of the factual value, findings' probabilities, age / 100);
3. cost: network evaluations per counterfactual and counterfactuals per second.

    python bench/counterfactual.py --model PATH --engine '{"steps": 16, "guidance": 2}' --label "guidance 2" \
        [--subjects 40] [--seed 0] [--draws 12] [--oracles DIR] [--out ladder.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from synthfair.config import config_to_dict
from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.evaluate.independence import check_independence
from synthfair.evaluate.oracles import Oracles
from synthfair.evaluate.phantom_truth import (
    ExactCounterfactuals,
    exact_counterfactuals,
    model_counterfactuals,
    score,
)
from synthfair.model.diffusion import resolve_model
from synthfair.phantom.grid import default_interventions
from synthfair.phantom.simulator import Phantom, PhantomConfig
from synthfair.pretrained import pretrained_path


def interventions(phantom: Phantom) -> list[tuple[str, dict]]:
    r = phantom.spec.roles
    removals = [
        (f"-{label}", {r.findings: {label: 0}})
        for label in (r.cardiomegaly, r.pleural_effusion, r.consolidation)
    ]
    return default_interventions(phantom) + removals


def load_truth(phantom: Phantom, args) -> ExactCounterfactuals:
    path = Path(args.cache) / f"truth-s{args.seed}-n{args.subjects}-px{args.size}-d{args.draws}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        optional = {k: data[k] if k in data else None for k in ("median", "mean", "draw_mae")}
        return ExactCounterfactuals(
            tuple(meta["labels"]),
            data["factual"],
            data["truth"],
            meta["covariates"],
            meta["changes"],
            **optional,
        )
    t = time.perf_counter()
    subjects = phantom.sample_subjects(args.subjects, args.seed)
    exact = exact_counterfactuals(
        phantom, subjects, args.size, interventions(phantom), args.draws, seed=args.seed
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"labels": exact.labels, "covariates": exact.covariates, "changes": exact.changes}
    arrays = {"factual": exact.factual, "truth": exact.truth}
    if args.draws:
        arrays |= {"median": exact.median, "mean": exact.mean, "draw_mae": exact.draw_mae}
    np.savez(path, meta=json.dumps(meta), **arrays)
    print(f"rendered the truth of {args.subjects} subjects in {time.perf_counter() - t:.0f} s -> {path}")
    return exact


def engine_settings(model_dir, overrides: str) -> EngineConfig:
    """The model's recommended settings (its engine.json: routes included), ``overrides`` (JSON) on top; 16
    rows per batch unless given."""
    given = json.loads(overrides)
    return EngineConfig.recommended(model_dir, **{"batch_size": 16, **given})


def first_subjects(exact: ExactCounterfactuals, n: int) -> ExactCounterfactuals:
    cut = {
        k: None if getattr(exact, k) is None else getattr(exact, k)[:n]
        for k in ("median", "mean", "draw_mae")
    }
    return ExactCounterfactuals(
        exact.labels, exact.factual[:n], exact.truth[:n], exact.covariates[:n], exact.changes[:n], **cut
    )


def oracle_table(oracles: Oracles, exact: ExactCounterfactuals, model: np.ndarray) -> pd.DataFrame:
    """One row per intervention: the oracle's call on model and exact counterfactuals, and amplification."""
    s, i = model.shape[:2]
    flat = lambda a: a.reshape(-1, *a.shape[-2:])  # noqa: E731
    p_model = {k: v.reshape(s, i, *v.shape[1:]) for k, v in oracles.predict(flat(model)).items()}
    p_truth = {k: v.reshape(s, i, *v.shape[1:]) for k, v in oracles.predict(flat(exact.truth)).items()}
    p_fact = oracles.predict(exact.factual)
    rows = []
    for b, label in enumerate(exact.labels):
        changed = [set(exact.changes[a][b]) for a in range(s)]
        moved = np.array([bool(c) for c in changed])
        row = {"intervention": label, "n": int(moved.sum())}
        for oracle in oracles:
            name = oracle.covariate
            targets = [exact.changes[a][b].get(name) for a in range(s)]
            if oracle.kind == "categorical" and any(t is not None for t in targets):
                rows_ = [a for a in range(s) if targets[a] is not None]
                want = np.array([oracle.targets.index(targets[a]) for a in rows_])
                row["accuracy"] = float((p_model[name][rows_, b].argmax(1) == want).mean())
                row["accuracy_truth"] = float((p_truth[name][rows_, b].argmax(1) == want).mean())
            elif oracle.kind == "continuous" and any(t is not None for t in targets):
                rows_ = [a for a in range(s) if targets[a] is not None]
                row["age_mae"] = float(
                    np.abs(p_model[name][rows_, b] - np.array([targets[a] for a in rows_])).mean()
                )
                row["age_mae_truth"] = float(
                    np.abs(p_truth[name][rows_, b] - np.array([targets[a] for a in rows_])).mean()
                )
        row["amplification"], row["amplification_truth"], row["amplified"] = _amplification(
            oracles, exact, b, p_model, p_truth, p_fact, changed
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.assign(**_finding_aurocs(oracles, exact, p_model, p_truth))


def _amplification(oracles, exact, b, p_model, p_truth, p_fact, changed):
    """Mean over subjects of the largest shift of an output the intervention does not change."""
    shifts = {"model": {}, "truth": {}}
    for oracle in oracles:
        name = oracle.covariate
        for a in range(len(changed)):
            if not changed[a]:
                continue
            factual = exact.covariates[a].get(name)
            for which, p in (("model", p_model), ("truth", p_truth)):
                if oracle.kind == "continuous":
                    if name in changed[a]:
                        continue
                    value = abs(p[name][a, b] - p_fact[name][a]) / 100.0
                elif oracle.kind == "categorical":
                    if name in changed[a] or factual not in oracle.targets:
                        continue
                    k = oracle.targets.index(factual)
                    value = abs(p[name][a, b, k] - p_fact[name][a, k])
                else:
                    given = exact.changes[a][b].get(name, {})
                    same = [
                        j
                        for j, lab in enumerate(oracle.targets)
                        if given.get(lab) == (factual or {}).get(lab)
                    ]
                    if not same:
                        continue
                    value = float(np.abs(p[name][a, b, same] - p_fact[name][a, same]).max())
                shifts[which].setdefault(name, []).append(value)
    means = {w: {k: float(np.mean(v)) for k, v in d.items()} for w, d in shifts.items()}
    worst = max(means["model"], key=means["model"].get, default=None)
    return (means["model"].get(worst, float("nan")), means["truth"].get(worst, float("nan")), worst)


def _finding_aurocs(oracles, exact, p_model, p_truth) -> dict:
    """AUROC of the finding oracle separating do(finding=1) from do(finding=0), for model and truth."""
    if "findings" not in oracles:
        return {}
    targets = oracles["findings"].targets
    out = {"auroc": [np.nan] * len(exact.labels), "auroc_truth": [np.nan] * len(exact.labels)}
    for label in targets:
        if f"+{label}" not in exact.labels:
            continue
        on, off, k = exact.labels.index(f"+{label}"), exact.labels.index(f"-{label}"), targets.index(label)
        for key, p in (("auroc", p_model), ("auroc_truth", p_truth)):
            scores = np.concatenate([p["findings"][:, on, k], p["findings"][:, off, k]])
            y = np.r_[np.ones(len(p["findings"])), np.zeros(len(p["findings"]))]
            out[key][on] = out[key][off] = float(roc_auc_score(y, scores))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model directory (default: the shipped phantom-64)")
    parser.add_argument("--engine", default="{}", help="EngineConfig keys as JSON (default: the model's)")
    parser.add_argument("--label", default="", help="the ladder row's name")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="subjects' seed (held out from training)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--draws", type=int, default=12, help="posterior draws for the identifiable ceiling")
    parser.add_argument("--oracles", default=None, help="independent pseudo-oracles (a directory)")
    parser.add_argument("--cache", default="data/bench-truth", help="where the rendered truth is cached")
    parser.add_argument("--out", default=None, help="append the row as one JSON line here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N of the subjects")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    phantom = Phantom(PhantomConfig())
    exact = load_truth(phantom, args)
    if args.limit:
        exact = first_subjects(exact, args.limit)
    model_dir = args.model or pretrained_path("phantom-64")
    config = engine_settings(model_dir, args.engine)
    engine = CounterfactualEngine.load(model_dir, config)
    t = time.perf_counter()
    model = model_counterfactuals(engine, exact)
    seconds = time.perf_counter() - t
    local = lambda c: bool(c) and all(phantom.taxonomy[n].extent == "local" for n in c)  # noqa: E731
    nfe = [engine.evaluations(tuple(c), local(c), c) for row in exact.changes for c in row if c]
    table = score(exact, model)
    independence = None
    if args.oracles:  # refuses oracles that trained or guided the model (counterfactual fine-tuning)
        oracles = Oracles.load(args.oracles)
        independence = check_independence(oracles, resolve_model(model_dir)).as_dict()
        print(f"oracle independence: {json.dumps(independence)}")
        table = table.merge(oracle_table(oracles, exact, model), on=["intervention", "n"])
    print(f"\n{args.label or 'model'}: {Path(model_dir).name}, engine {json.dumps(config_to_dict(config))}")
    rate = model.shape[0] * model.shape[1] / seconds
    print(f"{len(nfe)} counterfactuals in {seconds:.0f} s ({rate:.2f}/s with the null ones)")
    print(f"network evaluations per counterfactual: mean {np.mean(nfe):.1f}, max {max(nfe)}")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))
    if args.out:
        row = {
            "label": args.label,
            "model": str(model_dir),
            "engine": config_to_dict(config),
            "subjects": len(exact.factual),
            "seed": args.seed,
            "seconds": seconds,
            "rate": rate,
            "nfe_mean": float(np.mean(nfe)),
            "nfe_max": int(max(nfe)),
            "oracle_independence": independence,
            "table": table.to_dict("records"),
        }
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
