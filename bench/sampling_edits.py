"""Does the image model draw an intervention when it samples from fresh noise, and how large?

For held-out phantom subjects whose intervention changes the image (the ladder's truth cache of
``bench/counterfactual.py``), the model samples the factual and the intervened covariates from the *same*
fresh noise (DDIM); the edit between the two samples is compared with the true edit of the subject:

- size: |sample edit| / |true edit| (median over subjects): how strongly the conditioning carries the change,
  with no abduction involved (the counterfactual ladder's ``magnitude`` measures it after abduction);
- where: cosine between the two edits' absolute values (the sampled anatomy is another person's, so only a
  rough overlap of where the change happens).

And one step at a time, per noise level t (``--timesteps``): the subject's own image noised to t (4 draws),
the model's prediction of the clean image under the factual and under the intervened covariates; their
difference against the true edit (cosine, size), on the subjects whose exact counterfactual changes that
covariate alone. It says at which noise levels the conditioning carries the change: where the noised image
no longer shows it, only the covariates can.

    python bench/sampling_edits.py [--model DIR] [--truth data/bench-truth/truth-s3-n24-px64-d4.npz]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from synthfair.evaluate.phantom_truth import changed_count
from synthfair.model.diffusion import resolve_model, to_model_space
from synthfair.model.registry import load_model

COLUMNS = ("+cardiomegaly", "+pleural_effusion", "+consolidation", "sex=female", "view=LATERAL")


def changed_covariates(factual: dict, change: dict) -> dict:
    """``factual`` with the exact counterfactual's changes (findings merged label by label)."""
    if "findings" in change:
        return {**factual, **change, "findings": {**(factual.get("findings") or {}), **change["findings"]}}
    return {**factual, **change}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="phantom-64", help="a diffusion model directory or shipped name")
    parser.add_argument("--truth", default="data/bench-truth/truth-s3-n24-px64-d4.npz")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timesteps", default="300,500,700,850", help="noise levels of the one-step edits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(resolve_model(args.model))
    data = np.load(args.truth, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    factual, truth = data["factual"], data["truth"]
    print(f"model {args.model}, {len(factual)} subjects of {args.truth}, DDIM {args.steps} steps")
    for column in COLUMNS:
        j = meta["labels"].index(column)
        rows = [s for s in range(len(factual)) if meta["changes"][s][j]]
        before = [meta["covariates"][s] for s in rows]
        after = [changed_covariates(c, meta["changes"][s][j]) for c, s in zip(before, rows, strict=True)]
        noise = torch.randn(len(rows), 1, *factual.shape[1:], generator=torch.Generator().manual_seed(0))
        a = model.sample(noise, model.encoder.encode(before), args.steps)
        b = model.sample(noise, model.encoder.encode(after), args.steps)
        sampled = ((b - a) / 2).numpy()[:, 0].reshape(len(rows), -1)  # model space [-1, 1] -> image [0, 1]
        true = (truth[rows, j] - factual[rows]).reshape(len(rows), -1)
        size = np.linalg.norm(sampled, axis=1) / np.linalg.norm(true, axis=1)
        where = (np.abs(sampled) * np.abs(true)).sum(1) / (
            np.linalg.norm(sampled, axis=1) * np.linalg.norm(true, axis=1)
        )
        print(f"{column:18s} n={len(rows):2d}  size {np.median(size):.2f}  where {np.median(where):.2f}")
    timesteps = [int(t) for t in args.timesteps.split(",")]
    print(f"one step: cosine / size of the clean-image prediction's edit at t = {timesteps}")
    for column in COLUMNS:
        j = meta["labels"].index(column)
        rows = [
            s for s in range(len(factual)) if changed_count(meta["covariates"][s], meta["changes"][s][j]) == 1
        ]
        cells = [one_step_edits(model, factual, truth[:, j], meta, j, rows, t) for t in timesteps]
        print(f"{column:18s} n={len(rows):2d}  " + "  ".join(f"{c:.2f} / {s:.2f}" for c, s in cells))


def one_step_edits(model, factual, truth, meta, j: int, rows: list[int], t: int, draws: int = 4):
    """Mean cosine and size (against the true edit) of x0(x_t, intervened) - x0(x_t, factual)."""
    before = [meta["covariates"][s] for s in rows]
    after = [changed_covariates(c, meta["changes"][s][j]) for c, s in zip(before, rows, strict=True)]
    cond = torch.cat([model.encoder.encode(before), model.encoder.encode(after)])
    x0 = to_model_space(torch.from_numpy(factual[rows])[:, None])
    alpha = model.scheduler.alphas_cumprod[t]
    true = (truth[rows] - factual[rows]).reshape(len(rows), -1)
    generator = torch.Generator().manual_seed(t)
    cosines, sizes = [], []
    for _ in range(draws):
        xt = alpha.sqrt() * x0 + (1 - alpha).sqrt() * torch.randn(x0.shape, generator=generator)
        xt = torch.cat([xt, xt])
        with torch.no_grad():
            pred = (xt - (1 - alpha).sqrt() * model.eps(xt, t, cond)) / alpha.sqrt()
        edit = ((pred[len(rows) :] - pred[: len(rows)]) / 2).numpy().reshape(len(rows), -1)
        norms = np.linalg.norm(edit, axis=1) * np.linalg.norm(true, axis=1)
        cosines.append((edit * true).sum(1) / norms)
        sizes.append(np.linalg.norm(edit, axis=1) / np.linalg.norm(true, axis=1))
    return float(np.mean(cosines)), float(np.mean(sizes))


if __name__ == "__main__":
    main()
