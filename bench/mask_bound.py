"""How much could a perfect "where this finding belongs" mask help? An upper bound for the mask lever.

The model's finding counterfactuals are composited, in pixel space after sampling, inside the region where
the phantom's posterior-mean edit lies (the edit averaged over the unidentified side and severity, so the
mask knows where the finding can appear, not where this draw put it): what a perfect structure segmentation
would allow. The same held-out subjects and cached truth as bench/counterfactual.py (run that first).

    python bench/mask_bound.py --model PATH --engine '{"steps": 16, "group_guidance": {"findings": 3}}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from counterfactual import first_subjects, load_truth
from synthfair.config import dataclass_from_dict
from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.evaluate.phantom_truth import ExactCounterfactuals, model_counterfactuals, score
from synthfair.phantom.simulator import Phantom, PhantomConfig

COLUMNS = ["intervention", "n", "captured", "cosine", "magnitude", "captured_ceiling", "cosine_ceiling"]


def region_masked(exact: ExactCounterfactuals, model: np.ndarray, share: float = 0.1) -> np.ndarray:
    """``model`` with each finding column's edit kept only where the posterior-mean edit exceeds ``share`` of
    its largest value (dilated by 2 pixels, edges softened)."""
    masked = model.copy()
    for b, label in enumerate(exact.labels):
        if not label.startswith("+"):
            continue
        for s in range(len(exact.factual)):
            region = np.abs(exact.mean[s, b] - exact.factual[s])
            if region.max() == 0:
                continue
            inside = ndimage.binary_dilation(region > share * region.max(), iterations=2)
            weight = ndimage.gaussian_filter(inside.astype(np.float32), 1.0)
            masked[s, b] = exact.factual[s] + weight * (model[s, b] - exact.factual[s])
    return masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model directory")
    parser.add_argument("--engine", default="{}", help="EngineConfig keys as JSON")
    parser.add_argument("--subjects", type=int, default=24)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--cache", default="data/bench-truth")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exact = first_subjects(load_truth(Phantom(PhantomConfig()), args), args.limit)
    config = dataclass_from_dict(
        EngineConfig, {"batch_size": 16, **json.loads(args.engine)}, where="--engine"
    )
    model = model_counterfactuals(CounterfactualEngine.load(Path(args.model), config), exact)
    for name, images in (("model", model), ("inside the true region", region_masked(exact, model))):
        table = score(exact, images)
        print(f"\n{name}")
        print(table[table.intervention.str.startswith("+")][COLUMNS].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
