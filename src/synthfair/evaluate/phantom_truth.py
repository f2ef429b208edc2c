"""Model counterfactuals against the phantom's exact counterfactuals.

For a phantom subject the true counterfactual is known: re-render the same exogenous noise under do().
This compares the image mechanism with it. To measure the image model alone, the engine receives the
*true* counterfactual covariates (every covariate the phantom's SCM changed, as one intervention) and no
attribute SCM; the attribute SCM is tested against the truth on its own (tests/causal).

Per intervention, with intensities in [0, 1]:

- ``mae_model`` = mean |model - truth|; ``mae_unchanged`` = mean |factual - truth|, the error of answering
  with the unchanged factual image; ``captured`` = 1 - mae_model / mae_unchanged, the share of the true
  change the model reproduces (1 is perfect, 0 no better than doing nothing, negative worse). For the null
  intervention mae_unchanged is 0 and mae_model measures what abduction loses.
- ``cosine`` = mean cosine between the model's edit (model - factual) and the true edit (truth - factual),
  and ``magnitude`` = mean |model edit| / |true edit| (L2), over the subjects the intervention changes.
- ``captured_direct`` = ``captured`` over the ``n_direct`` subjects whose exact counterfactual changes only
  one covariate (each finding counted alone): the do()'s own edit. ``captured`` sums the error over all
  subjects, so one subject whose do(finding) also changes the view through the SCM (a global edit, ~50 times
  a heart's in absolute error) can decide it; ``captured_direct`` says what the model does with the finding.
- With ``draws`` > 0, the **identifiable ceiling**. Part of a counterfactual can be invisible in the factual
  image: where an effusion that appears would lie and how high it would rise, which lobe would consolidate
  (`Phantom.unidentified_traits`). No model can know it, so the exact counterfactual is one draw of a
  distribution. The ceiling re-renders ``draws`` counterfactuals with those traits drawn anew; their
  per-pixel median is the best any model can answer under absolute error (``captured_ceiling``) and their
  mean edit the best direction on average (``cosine_ceiling``); a single draw is what a perfect
  *sampler* answers (``captured_draw``: the mean over draws). All three are 1 where the factual identifies
  the counterfactual.
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
class ExactCounterfactuals:
    """The phantom's exact counterfactuals of some subjects under (label, do) columns."""

    labels: tuple[str, ...]
    factual: np.ndarray  # (S, H, W) factual images in [0, 1]
    truth: np.ndarray  # (S, I, H, W) exact counterfactuals
    covariates: list[dict[str, Any]]  # factual covariates per subject
    changes: list[list[dict[str, Any]]]  # per subject and column: the covariates the phantom changed
    median: np.ndarray | None = None  # (S, I, H, W) posterior median over unidentified traits (draws > 0)
    mean: np.ndarray | None = None  # (S, I, H, W) posterior mean
    draw_mae: np.ndarray | None = None  # (S, I) mean |draw - truth| over the posterior draws


@dataclass(frozen=True, eq=False)
class TruthComparison:
    table: pd.DataFrame  # one row per intervention: n, mae_model, mae_unchanged, captured, cosine, magnitude
    factual: np.ndarray  # (S, H, W) factual images
    truth: np.ndarray  # (S, I, H, W) exact counterfactuals
    model: np.ndarray  # (S, I, H, W) model counterfactuals
    labels: tuple[str, ...]

    def grid(self, rows: int = 4, edits: bool = True) -> Image.Image:
        """8-bit picture, one column per intervention; per subject the truth above the model and, with
        ``edits``, the true edit (truth - factual) above the model's (model - factual), both on one scale, the
        larger edit's (grey: no change; white: brighter): where the model puts its edit, and how much."""
        s, i, h, w = self.model.shape
        rows = min(rows, s)
        panels = 4 if edits else 2
        canvas = np.zeros((18 + rows * panels * h, i * w), np.uint8)
        for r in range(rows):
            for j in range(i):
                true_edit = self.truth[r, j] - self.factual[r]
                model_edit = self.model[r, j] - self.factual[r]
                scale = 0.5 / max(float(np.abs(true_edit).max()), float(np.abs(model_edit).max()), 1e-3)
                images = [self.truth[r, j], self.model[r, j]]
                if edits:
                    images += [0.5 + scale * true_edit, 0.5 + scale * model_edit]
                for k, image in enumerate(images):
                    top = 18 + (r * panels + k) * h
                    canvas[top : top + h, j * w : (j + 1) * w] = np.clip(image, 0.0, 1.0) * 255
        picture = Image.fromarray(canvas, mode="L")
        draw = ImageDraw.Draw(picture)
        for j, label in enumerate(self.labels):
            draw.text((j * w + 2, 3), label[: max(4, w // 6)], fill=255, font=ImageFont.load_default())
        return picture


def exact_counterfactuals(
    phantom: Phantom,
    subjects: Sequence[Subject],
    size: int,
    interventions: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    draws: int = 0,
    seed: int = 0,
) -> ExactCounterfactuals:
    """Render ``subjects`` and their exact counterfactuals under each (label, do) (default: the phantom
    grid's); with ``draws`` > 0 also the posterior of each counterfactual's unidentified part."""
    columns = list(interventions or default_interventions(phantom))
    factual = np.stack([phantom.render(s, size=size) / 65535.0 for s in subjects]).astype(np.float32)
    truth = np.zeros((len(subjects), len(columns), size, size), np.float32)
    median, mean = (truth.copy(), truth.copy()) if draws else (None, None)
    draw_mae = np.zeros(truth.shape[:2], np.float32) if draws else None
    rng = np.random.default_rng(seed)
    covariates, changes = [], []
    for a, subject in enumerate(subjects):
        covariates.append(phantom.covariates(subject))
        changes.append([])
        for b, (_, do) in enumerate(columns):
            cf = phantom.counterfactual(subject, do, size) if do else None
            truth[a, b] = factual[a] if cf is None else cf.image / 65535.0
            changes[a].append({} if cf is None else {k: cf.covariates[k] for k in cf.changed})
            if draws:
                hidden = () if cf is None else phantom.unidentified_traits(cf.factual, cf.covariates)
                renders = (
                    phantom.posterior_renders(subject, cf.covariates, hidden, draws, rng, size) / 65535.0
                    if hidden
                    else truth[a, b][None]
                )
                median[a, b], mean[a, b] = np.median(renders, axis=0), renders.mean(axis=0)
                draw_mae[a, b] = np.abs(renders - truth[a, b]).mean()
    labels = tuple(label for label, _ in columns)
    return ExactCounterfactuals(labels, factual, truth, covariates, changes, median, mean, draw_mae)


def model_counterfactuals(engine: CounterfactualEngine, exact: ExactCounterfactuals) -> np.ndarray:
    """The image model's counterfactuals (S, I, H, W), given the true counterfactual covariates."""
    # given the true covariates: no SCM
    image_engine = CounterfactualEngine(engine.model, None, engine.config, engine.routes)
    s, i = exact.truth.shape[:2]
    images = [exact.factual[a] for a in range(s) for _ in range(i)]
    factuals = [exact.covariates[a] for a in range(s) for _ in range(i)]
    dos = [exact.changes[a][b] for a in range(s) for b in range(i)]
    results = image_engine(images, factuals, dos, seeds=list(range(s * i)))
    return np.stack([r.image for r in results]).reshape(exact.truth.shape)


def score(exact: ExactCounterfactuals, model: np.ndarray) -> pd.DataFrame:
    """Per intervention: n (subjects it changes), mae_model, mae_unchanged, captured, cosine, magnitude, and
    the identifiable ceilings when ``exact`` has posterior draws."""
    rows = []
    for b, label in enumerate(exact.labels):
        truth, edit = exact.truth[:, b], model[:, b] - exact.factual
        true_edit = truth - exact.factual
        mae_model = float(np.abs(model[:, b] - truth).mean())
        mae_unchanged = float(np.abs(true_edit).mean())
        changed = np.abs(true_edit).reshape(len(truth), -1).max(axis=1) > 0
        direct = changed & np.array(
            [changed_count(f, c[b]) == 1 for f, c in zip(exact.covariates, exact.changes, strict=True)]
        )
        row = {
            "intervention": label,
            "n": int(changed.sum()),
            "mae_model": mae_model,
            "mae_unchanged": mae_unchanged,
            "captured": _captured(mae_model, mae_unchanged),
            "cosine": _cosine(edit[changed], true_edit[changed]),
            "magnitude": _magnitude(edit[changed], true_edit[changed]),
            "n_direct": int(direct.sum()),
            "captured_direct": _captured(
                float(np.abs(model[direct, b] - truth[direct]).mean()) if direct.any() else 0.0,
                float(np.abs(true_edit[direct]).mean()) if direct.any() else 0.0,
            ),
        }
        if exact.median is not None:
            best = float(np.abs(exact.median[:, b] - truth).mean())
            row["captured_ceiling"] = _captured(best, mae_unchanged)
            mean_edit = exact.mean[:, b] - exact.factual
            row["cosine_ceiling"] = _cosine(mean_edit[changed], true_edit[changed])
        if exact.draw_mae is not None:
            row["captured_draw"] = _captured(float(exact.draw_mae[:, b].mean()), mae_unchanged)
        rows.append(row)
    return pd.DataFrame(rows)


def compare_with_truth(
    engine: CounterfactualEngine,
    phantom: Phantom,
    subjects: Sequence[Subject],
    interventions: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    draws: int = 0,
) -> TruthComparison:
    """Model vs exact counterfactuals of ``subjects`` under each (label, do) (default: the phantom grid's)."""
    exact = exact_counterfactuals(phantom, subjects, engine.size, interventions, draws)
    model = model_counterfactuals(engine, exact)
    return TruthComparison(score(exact, model), exact.factual, exact.truth, model, exact.labels)


def changed_count(factual: Mapping[str, Any], change: Mapping[str, Any]) -> int:
    """How many covariates ``change`` (the phantom's changed covariates) moves away from ``factual``, each
    finding counted alone."""
    count = 0
    for name, value in change.items():
        if isinstance(value, Mapping):  # findings: one count per finding that differs
            before = factual.get(name) or {}
            count += sum(1 for k, v in value.items() if before.get(k) != v)
        else:
            count += 1
    return count


def _captured(mae: float, unchanged: float) -> float:
    return 1.0 - mae / unchanged if unchanged > 0 else float("nan")


def _cosine(edit: np.ndarray, true_edit: np.ndarray) -> float:
    if not len(edit):
        return float("nan")
    a, b = edit.reshape(len(edit), -1), true_edit.reshape(len(edit), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 0.0)))


def _magnitude(edit: np.ndarray, true_edit: np.ndarray) -> float:
    if not len(edit):
        return float("nan")
    a, b = edit.reshape(len(edit), -1), true_edit.reshape(len(edit), -1)
    return float(np.mean(np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
