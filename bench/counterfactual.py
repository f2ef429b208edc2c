"""Counterfactual speed and quality of an image model at 64^2, against the phantom's exact counterfactuals.

1. speed: counterfactuals per second and network evaluations per counterfactual, for a few engine settings
   (DDIM steps, guidance, residual), batch 8, on held-out phantom subjects;
2. quality: `compare_with_truth` per intervention of the phantom grid (MAE to the exact counterfactual, the
   MAE of doing nothing, and the share of the true change captured), and for the null intervention.

    python bench/counterfactual.py [--model PATH] [--subjects 8] [--anatomy ct]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.evaluate.phantom_truth import compare_with_truth
from synthfair.phantom.simulator import Phantom, PhantomConfig
from synthfair.pretrained import pretrained_path

SETTINGS = [  # (steps, guidance, residual, abduction)
    (10, 1.0, True, "ddim"),
    (25, 1.0, True, "ddim"),
    (25, 2.0, True, "ddim"),
    (25, 1.0, False, "ddim"),
    (10, 1.0, False, "ddpm"),
    (25, 1.0, False, "ddpm"),
]
QUALITY = ("ddim", "ddpm")  # abductions compared with the truth


def speed(model_dir, phantom: Phantom, subjects, n: int = 16) -> None:
    factual = [phantom.render(s, size=64) / 65535.0 for s in subjects]
    records = [phantom.covariates(s) for s in subjects]
    images = [factual[i % len(factual)].astype(np.float32) for i in range(n)]
    covs = [records[i % len(records)] for i in range(n)]
    dos = [{"age": 85.0} for _ in range(n)]
    for steps, guidance, residual, abduction in SETTINGS:
        config = EngineConfig(
            steps=steps, guidance=guidance, residual=residual, abduction=abduction, batch_size=8
        )
        engine = CounterfactualEngine.load(model_dir, config)
        reconstruction = steps if residual and abduction == "ddim" else 0
        evaluations = steps + reconstruction + steps * (2 if guidance != 1.0 else 1)
        t = time.perf_counter()
        engine(images, covs, dos, seeds=range(n))
        seconds = time.perf_counter() - t
        print(f"{abduction} steps {steps:3d} guidance {guidance:.1f} residual {residual!s:5s}: "
              f"{n / seconds:5.2f} cf/s ({evaluations} network evaluations each, batch 8)")  # fmt: skip


def quality(model_dir, phantom: Phantom, subjects, steps: int) -> None:
    for abduction in QUALITY:
        engine = CounterfactualEngine.load(
            model_dir, EngineConfig(steps=steps, abduction=abduction, batch_size=8)
        )
        t = time.perf_counter()
        result = compare_with_truth(engine, phantom, subjects)
        print(f"\nmodel vs exact counterfactuals, {len(subjects)} held-out subjects, {steps} steps, "
              f"{abduction} abduction ({time.perf_counter() - t:.0f} s):")  # fmt: skip
        print(result.table.round(4).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model directory (default: the shipped phantom-64)")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--anatomy", default="ct")
    parser.add_argument("--seed", type=int, default=0, help="subjects' seed (the shipped model trained on 1)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--no-speed", action="store_true", help="only the quality comparison")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    model_dir = args.model or pretrained_path("phantom-64")
    phantom = Phantom(PhantomConfig(anatomy=args.anatomy))
    subjects = phantom.sample_subjects(args.subjects, args.seed)
    if not args.no_speed:
        speed(model_dir, phantom, subjects)
    quality(model_dir, phantom, subjects, args.steps)


if __name__ == "__main__":
    main()
