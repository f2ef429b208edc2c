"""Time per fairness-study cell at 64² on this machine, and a rebalancing comparison.

Runs the demo's two-cell study (no bias vs a spurious device-cardiomegaly correlation of 0.9) and a
rebalancing study (women at 10% of the training split; none, reweighting, oversampling and generation by
the shipped model, same budget) on a release, and prints seconds per cell and the headline numbers.

    python bench/study.py --release demo/study-release [--out bench-study]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from synthfair.config import dataclass_from_dict
from synthfair.demo import DEMO_STUDY
from synthfair.fairness import StudySpec, run_study
from synthfair.pretrained import pretrained_path

REBALANCE = {
    "base": {"size": 100, "seed": 0, "target": "findings.cardiomegaly", "groups": ["sex"],
             "shares": {"female": 0.1}, "splits": {"train": 0.6, "validate": 0.1, "test": 0.3}},
    "groups": ["sex"],
    "baseline": False,
    "rebalance": {"attribute": "sex", "minority": "female",
                  "methods": ["none", "reweight", "oversample", "generate"], "steps": 10},
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="e.g. demo/study-release (from make demo)")
    parser.add_argument("--out", default="bench-study")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    classifier = {"epochs": args.epochs}
    spurious = dataclass_from_dict(StudySpec, {**DEMO_STUDY, "base": {**DEMO_STUDY["base"], "size": 140},
                                               "classifier": classifier})  # fmt: skip
    t = time.perf_counter()
    result = run_study(spurious, args.release, Path(args.out) / "spurious")
    seconds = time.perf_counter() - t
    print(f"spurious-correlation study: {len(result.results)} cells in {seconds:.1f} s = "
          f"{seconds / len(result.results):.1f} s per cell (84 training images, {args.epochs} "
          "epochs)")  # fmt: skip
    for r in result.results:
        agg = r["groups"]["aggregates"]
        print(f"  strength {r['cell']['correlation.strength']}: AUROC {r['groups']['overall']['auroc']:.3f}, "
              f"DP difference {agg['demographic_parity_difference']['value']:.3f}, EO difference "
              f"{agg['equalized_odds_difference']['value']:.3f}")  # fmt: skip
    spec = dataclass_from_dict(StudySpec, {**REBALANCE, "classifier": classifier})
    t = time.perf_counter()
    result = run_study(
        spec, args.release, Path(args.out) / "rebalance", checkpoint=pretrained_path("phantom-64")
    )
    seconds = time.perf_counter() - t
    print(f"rebalancing study: {len(result.results)} classifiers in {seconds:.1f} s")
    for r in result.results:
        groups = {g["group"]: g for g in r["groups"]["by_group"]}
        info = json.dumps(r.get("rebalance", {}))
        scores = [f"{name}: acc {_f(g['accuracy'])} F1 {_f(g['f1'])} AUROC {_f(g['auroc'])}"
                  for name, g in groups.items()]  # fmt: skip
        print(f"  {r['variant']:20s} " + "; ".join(scores) + f"  {info}")


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
