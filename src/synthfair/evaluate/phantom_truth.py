"""Model counterfactuals against the phantom's exact counterfactuals.

For a phantom subject the true counterfactual is known: re-render the same exogenous noise under do().
This compares the image mechanism with it. To measure the image model alone, the engine receives the
*true* counterfactual covariates (every covariate the phantom's SCM changed, as one intervention) and no
attribute SCM; the attribute SCM is tested against the truth on its own (tests/causal).

Per intervention: ``mae_model`` = mean |model - truth| (intensities in [0, 1]), and ``mae_unchanged`` =
mean |factual - truth|, the error of answering with the unchanged factual image. ``captured`` =
1 - mae_model / mae_unchanged is the share of the true change the model reproduces (1 is perfect, 0 no
better than doing nothing, negative worse). For the null intervention mae_unchanged is 0 and mae_model
measures what inversion and the residual lose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from synthfair.counterfactual import CounterfactualEngine
from synthfair.phantom.grid import default_interventions
from synthfair.phantom.simulator import Phantom, Subject


@dataclass(frozen=True, eq=False)
class TruthComparison:
    table: pd.DataFrame  # one row per intervention: n, mae_model, mae_unchanged, captured
    factual: np.ndarray  # (S, H, W) factual images
    truth: np.ndarray  # (S, I, H, W) exact counterfactuals
    model: np.ndarray  # (S, I, H, W) model counterfactuals
    labels: tuple[str, ...]

    def grid(self, rows: int = 4) -> Image.Image:
        """8-bit picture: per subject two rows, truth above model; one column per intervention."""
        s, i, h, w = self.model.shape
        rows = min(rows, s)
        canvas = np.zeros((18 + rows * 2 * h, i * w), np.uint8)
        for r in range(rows):
            for j in range(i):
                top = 18 + r * 2 * h
                canvas[top : top + h, j * w : (j + 1) * w] = self.truth[r, j] * 255
                canvas[top + h : top + 2 * h, j * w : (j + 1) * w] = self.model[r, j] * 255
        picture = Image.fromarray(canvas, mode="L")
        draw = ImageDraw.Draw(picture)
        for j, label in enumerate(self.labels):
            draw.text((j * w + 2, 3), label[: max(4, w // 6)], fill=255, font=ImageFont.load_default())
        return picture


def compare_with_truth(
    engine: CounterfactualEngine,
    phantom: Phantom,
    subjects: Sequence[Subject],
    interventions: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
) -> TruthComparison:
    """Model vs exact counterfactuals of ``subjects`` under each (label, do) (default: the phantom grid's)."""
    columns = list(interventions or default_interventions(phantom))
    size = engine.size
    image_engine = CounterfactualEngine(engine.model, None, engine.config)  # given true covariates: no SCM
    factual = np.stack([phantom.render(s, size=size) / 65535.0 for s in subjects]).astype(np.float32)
    truth = np.zeros((len(subjects), len(columns), size, size), np.float32)
    requests = []
    for a, subject in enumerate(subjects):
        for b, (_, do) in enumerate(columns):
            cf = phantom.counterfactual(subject, do, size) if do else None
            truth[a, b] = factual[a] if cf is None else cf.image / 65535.0
            full = {} if cf is None else {k: cf.covariates[k] for k in cf.changed}
            requests.append((factual[a], phantom.covariates(subject), full, a * len(columns) + b))
    images, factuals, dos, seeds = (list(x) for x in zip(*requests, strict=True))
    results = image_engine(images, factuals, dos, seeds)
    model = np.stack([r.image for r in results]).reshape(truth.shape)
    rows = []
    for b, (label, _) in enumerate(columns):
        mae_model = float(np.abs(model[:, b] - truth[:, b]).mean())
        mae_unchanged = float(np.abs(factual - truth[:, b]).mean())
        captured = 1.0 - mae_model / mae_unchanged if mae_unchanged > 0 else float("nan")
        rows.append({"intervention": label, "n": len(subjects), "mae_model": mae_model,
                     "mae_unchanged": mae_unchanged, "captured": captured})  # fmt: skip
    return TruthComparison(pd.DataFrame(rows), factual, truth, model, tuple(label for label, _ in columns))
