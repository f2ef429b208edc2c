"""Fairness studies at 64² on this machine: the demo's spurious-correlation study and a rebalancing
comparison over several seeds.

Runs the demo's study (cardiomegaly with a spurious device correlation, strengths 0 to 1, 440 samples per
cell) and a rebalancing study (women at 10% of the training split; none, reweighting, oversampling,
generation by the image model and by the phantom's exact engine, every method with the same samples per
epoch; ``--seeds`` classifiers each) on a release (the demo's exact study release), and prints seconds per
classifier and the headline numbers, mean and spread over seeds.

    python bench/study.py --release demo/study-release [--seeds 0,1,2] [--out bench-study]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from synthfair.config import dataclass_from_dict
from synthfair.demo import DEMO_STUDY
from synthfair.fairness import StudySpec, run_study
from synthfair.pretrained import pretrained_path

REBALANCE = {
    "base": {
        "size": 300,
        "seed": 0,
        "target": "findings.cardiomegaly",
        "groups": ["sex"],
        "shares": {"female": 0.1},
        "splits": {"train": 0.6, "validate": 0.1, "test": 0.3},
    },
    "groups": ["sex"],
    "baseline": False,
    "rebalance": {
        "attribute": "sex",
        "minority": "female",
        "methods": ["none", "reweight", "oversample", "generate", "exact"],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="e.g. demo/study-release (from make demo)")
    parser.add_argument("--out", default="bench-study")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=440, help="samples per cell of the spurious study")
    parser.add_argument("--seeds", default="0,1,2", help="classifier seeds of the rebalancing study")
    parser.add_argument("--model", default=None, help="the generator (default: the shipped phantom-64)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    classifier = {"epochs": args.epochs}
    base = {**DEMO_STUDY["base"], "size": args.size}
    spurious = dataclass_from_dict(StudySpec, {**DEMO_STUDY, "base": base, "classifier": classifier})
    t = time.perf_counter()
    result = run_study(spurious, args.release, Path(args.out) / "spurious")
    seconds = time.perf_counter() - t
    per_cell = seconds / len(result.results)
    print(
        f"spurious-correlation study: {len(result.results)} cells in {seconds:.1f} s = {per_cell:.1f} s "
        f"per cell ({args.size} samples, {args.epochs} epochs)"
    )
    for r in result.results:
        agg = r["groups"]["aggregates"]
        print(
            f"  strength {r['cell']['correlation.strength']}: AUROC {r['groups']['overall']['auroc']:.3f}, "
            f"DP difference {agg['demographic_parity_difference']['value']:.3f}, EO difference "
            f"{agg['equalized_odds_difference']['value']:.3f}"
        )
    seeds = [int(v) for v in args.seeds.split(",")]
    spec = dataclass_from_dict(StudySpec, {**REBALANCE, "seeds": seeds, "classifier": classifier})
    t = time.perf_counter()
    model = args.model or pretrained_path("phantom-64")
    result = run_study(spec, args.release, Path(args.out) / "rebalance", checkpoint=model)
    seconds = time.perf_counter() - t
    print(f"rebalancing study: {len(result.results)} classifiers in {seconds:.1f} s")
    by_method: dict[str, list[dict]] = {}
    for r in result.results:
        by_method.setdefault(r["variant"], []).append(r)
    print(f"  mean (sd) over seeds {seeds}; test split, threshold 0.5")
    for variant, runs in by_method.items():
        groups = [{g["group"]: g for g in r["groups"]["by_group"]} for r in runs]
        cells = []
        for name in groups[0]:
            for metric in ("auroc", "tpr"):
                values = [g[name][metric] for g in groups if g.get(name, {}).get(metric) is not None]
                cells.append(f"{name} {metric} {_spread(values)}")
        info = runs[0].get("rebalance", {})
        extra = {k: info[k] for k in ("budget", "samples_per_epoch", "generated_label_flips") if k in info}
        print(f"  {variant:22s} " + "; ".join(cells) + f"  {json.dumps(extra)}")


def _spread(values) -> str:
    if not values:
        return "n/a"
    return f"{np.mean(values):.2f} ({np.std(values):.2f})"


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
