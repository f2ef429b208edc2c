"""Finding edits kept inside their anatomical region: a bound for masks from a structure segmentation.

For the held-out subjects whose exact counterfactual changes one finding alone (the ladder's truth cache,
bench/counterfactual.py), the finding's counterfactual is the edit-friendly DDPM replay under the intervened
covariates with a keep mask (`DiffusionModel.replay`, RadEdit's): outside the region the chain is reset to
the factual one at every step. The region is the phantom's own projection of the structure the finding
changes in the factual image (heart for cardiomegaly, the lungs for effusion and consolidation), dilated and
feathered: what a perfect segmentation of the factual image would give, and nothing about the
counterfactual. Guidance on the findings group at each ``--guidance`` scale.

    python bench/region_bound.py --model runs/phantom-64/model --guidance 1,3,6
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import torch
from scipy import ndimage

from counterfactual import first_subjects, load_truth
from sampling_edits import changed_covariates
from synthfair.evaluate.phantom_truth import changed_count
from synthfair.model.diffusion import Reference, resolve_model, to_image_space, to_model_space
from synthfair.model.registry import load_model
from synthfair.phantom.simulator import Phantom, PhantomConfig

# finding -> (structures of the phantom's anatomy, pixels of dilation at 64 px)
REGIONS = {
    "cardiomegaly": (("heart",), 3),
    "pleural_effusion": (("lung_*",), 1),
    "consolidation": (("lung_*",), 1),
}


def region(phantom, subject, covariates, finding: str, size: int) -> torch.Tensor:
    """(1, 1, size, size) in [0, 1]: the finding's structures as imaged, dilated and feathered."""
    patterns, grow = REGIONS[finding]
    projected = phantom.project_structures(subject, covariates, patterns, size) > 0
    mask = ndimage.binary_dilation(projected, iterations=grow).astype(np.float32)
    return torch.from_numpy(ndimage.gaussian_filter(mask, 1.0))[None, None]


def masked_counterfactual(model, image, before, after, mask, guidance: float, steps: int, seed: int):
    cond_f, cond_cf = model.encoder.encode([before]), model.encoder.encode([after])
    x0 = to_model_space(torch.from_numpy(image[None, None].astype(np.float32)))
    maps = model.noise_maps(x0, cond_f, steps, [torch.Generator().manual_seed(seed)])
    refs = []
    if guidance != 1.0:
        refs = [Reference(model.encoder.null(cond_cf, ["findings"]), torch.full((1,), guidance))]
    return np.asarray(to_image_space(model.replay(maps, cond_cf, refs, mask))).reshape(image.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="phantom-64", help="a diffusion model directory or shipped name")
    parser.add_argument("--guidance", default="1,3,6", help="scales on the findings group, comma-separated")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--subjects", type=int, default=24, help="subjects in the truth cache")
    parser.add_argument("--limit", type=int, default=12, help="the first subjects scored (the ladder's)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--cache", default="data/bench-truth")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    phantom = Phantom(PhantomConfig())
    truth_args = SimpleNamespace(cache=args.cache, seed=args.seed, subjects=args.subjects, size=64, draws=4)
    exact = first_subjects(load_truth(phantom, truth_args), args.limit)
    subjects = phantom.sample_subjects(args.subjects, args.seed)[: args.limit]
    model = load_model(resolve_model(args.model))
    size = exact.factual.shape[-1]
    print(f"model {args.model}, seed-{args.seed} subjects whose counterfactual changes the finding alone")
    for finding in REGIONS:
        b = exact.labels.index(f"+{finding}")
        rows = [
            s for s in range(len(subjects)) if changed_count(exact.covariates[s], exact.changes[s][b]) == 1
        ]
        for scale in (float(g) for g in args.guidance.split(",")):
            start, err_model, err_unchanged, cosines, sizes = time.perf_counter(), 0.0, 0.0, [], []
            for s in rows:
                before = exact.covariates[s]
                after = changed_covariates(before, exact.changes[s][b])
                mask = region(phantom, subjects[s], before, finding, size)
                out = masked_counterfactual(
                    model, exact.factual[s], before, after, mask, scale, args.steps, s
                )
                truth, factual = exact.truth[s, b], exact.factual[s]
                err_model += float(np.abs(out - truth).sum())
                err_unchanged += float(np.abs(factual - truth).sum())
                true_edit, edit = (truth - factual).ravel(), (out - factual).ravel()
                norm = np.linalg.norm(true_edit) * np.linalg.norm(edit)
                cosines.append(float(true_edit @ edit / norm) if norm else 0.0)
                sizes.append(float(np.linalg.norm(edit) / np.linalg.norm(true_edit)))
            print(
                f"+{finding:17s} n={len(rows):2d} guidance {scale:4.1f}: "
                f"captured {1 - err_model / err_unchanged:+.2f}"
                f"  cosine {np.mean(cosines):.2f}  magnitude {np.mean(sizes):.2f}"
                f"  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
