"""The evaluator's self-contained HTML report: tables, image grids and worst cases, images inlined as PNG."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthfair import reportkit as kit
from synthfair.evaluate.samples import ReleaseSamples

EXAMPLES_PER_INTERVENTION = 4


def _independence(record: dict[str, Any]) -> str:
    """Whether the oracles are independent of the generator (`synthfair.evaluate.independence`)."""
    if "note" in record:
        return f"<p>Oracle independence: {html.escape(record['note'])}.</p>"
    guides = ", ".join(record.get("guides") or []) or "none"
    text = (
        f"<p>Oracle independence: checked. The generator's guidance classifiers ({html.escape(guides)}) "
        "share no weights and no training subjects with these oracles."
    )
    flags = record.get("flags") or []
    return text + "".join(f" <b>Flag:</b> {html.escape(f)}." for f in flags) + "</p>"


def write_report(
    path: Path,
    samples: ReleaseSamples,
    metrics: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    privacy_pairs: Sequence[tuple[np.ndarray, np.ndarray, float, str, str]],
) -> None:
    parts = [
        f"<h1>SynthFair soundness report</h1><p>Release <code>{html.escape(metrics['release'])}</code>: "
        f"{metrics['samples']} samples ({_kinds(metrics['kinds'])}). Subgroups: "
        f"{' x '.join(metrics['subgroup_axes'])}. Intervals: 95% bootstrap. Every number is also in "
        "<code>metrics.json</code>.</p>",
        "<h2>Pseudo-oracles (held-out scores; effectiveness cannot exceed them)</h2>",
        kit.table(pd.DataFrame([{"covariate": k, **_flat(v)} for k, v in metrics["oracles"].items()])),
        _independence(metrics.get("oracle_independence") or {}),
    ]
    parts += _section(
        "Effectiveness: did the intervened covariate change as intended?",
        metrics["effectiveness"],
        "correct / abs_error: the oracle on the counterfactual against the intended value; "
        "baseline_*: the same on the unchanged factual image.",
    )
    if metrics["effectiveness"].get("auc"):
        parts += [
            "<h3>AUC over all counterfactuals of a covariate</h3>",
            kit.table(pd.DataFrame(metrics["effectiveness"]["auc"])),
        ]
    parts += _section(
        "Amplification: covariates that were not intervened on should not move",
        metrics["amplification"],
        "delta: oracle confidence in the factual value, counterfactual "
        "minus factual image (age: years); abs_delta its size.",
        summary=_amplification_matrix,
    )
    parts += _section(
        "Phantom truth: against the exact counterfactual",
        metrics["phantom_truth"],
        "mae_model = mean |generated - truth|, mae_unchanged = mean |factual - truth|; "
        "effectiveness: share of the true change (oracle space) the generated change "
        "reproduces "
        "along its direction; amplification: the orthogonal rest.",
    )
    parts += _realism(metrics["realism"])
    parts += _privacy(metrics["privacy"], privacy_pairs)
    for name in ("composition", "reversibility"):
        parts += _generator(name, metrics[name])
    parts += _grids(samples)
    parts += _worst(samples, tables)
    kit.write_page(path, "SynthFair soundness", parts)


def _section(title: str, block: dict[str, Any], explanation: str, summary=None) -> list[str]:
    out = [f"<h2>{html.escape(title)}</h2>"]
    if "note" in block:
        return [*out, kit.note(block["note"])]
    out.append(f"<p>{html.escape(explanation)}</p>")
    if summary is not None:
        out += summary(block)
    out += ["<h3>By intervention</h3>", *map(kit.table, _by_metric(pd.DataFrame(block["by_intervention"])))]
    out += ["<h3>By subgroup</h3>", *map(kit.table, _by_metric(pd.DataFrame(block["by_subgroup"])))]
    return out


def _amplification_matrix(block: dict[str, Any]) -> list[str]:
    """Interventions x covariates: mean abs_delta at a glance (the intervened covariate itself is blank)."""
    frame = pd.DataFrame(block["by_intervention"])
    if frame.empty:
        return []
    matrix = frame.pivot_table(index="label", columns="covariate", values="abs_delta", sort=False)
    matrix = matrix.rename(columns={"age": "age (years)"}).rename_axis(columns=None)
    return [
        "<h3>At a glance: mean abs_delta per intervention (rows) and covariate (columns)</h3>",
        kit.table(matrix.reset_index()),
    ]


def _by_metric(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """Rows split by which metric columns they fill (age rows have errors, categorical rows accuracies)."""
    if frame.empty:
        return [frame]
    filled = frame.notna().apply(lambda row: tuple(row.index[row]), axis=1)
    return [frame[filled == key] for key in dict.fromkeys(filled)]


def _realism(block: dict[str, Any]) -> list[str]:
    out = ["<h2>Realism: factual vs counterfactual images in the oracles' feature space</h2>"]
    if "note" in block:
        return [*out, kit.note(block["note"])]
    out.append(
        f"<p>FID {block['fid']:.4f} (on {block['feature_components']} principal components), KID "
        f"{block['kid']:.5f}; {block['factual']} factual and {block['counterfactual']} counterfactual "
        "images. KID is unbiased at small n; FID is not.</p>"
    )
    if block["by_subgroup"]:
        out.append(kit.table(pd.DataFrame(block["by_subgroup"])))
    return out


def _privacy(block: dict[str, Any], pairs) -> list[str]:
    out = ["<h2>Privacy: nearest training image of each generated image</h2>"]
    if "note" in block:
        return [*out, kit.note(block["note"])]
    out.append(
        f"<p>{block['generated']} generated images against {block['train_images']} training images: "
        f"{block['memorized_share']:.1%} are closer to a training image than the training set's own "
        f"5th-percentile nearest-neighbour distance ({block['threshold']:.4f}; about 5% for images as "
        f"independent as a fresh draw, more suggests memorization); median distance "
        f"{block['median_distance']:.4f}. Closest pairs (generated | training):</p>"
    )
    cells = [_cell([g, t], f"{key} vs {train} ({d:.4f})") for g, t, d, key, train in pairs]
    return [*out, f"<div class='grid'>{''.join(cells)}</div>"]


def _generator(name: str, block: dict[str, Any]) -> list[str]:
    title = {
        "composition": "Composition: the null intervention applied repeatedly",
        "reversibility": "Reversibility: intervene, then intervene back",
    }[name]
    out = [f"<h2>{title}</h2>"]
    if "note" in block:
        return [*out, kit.note(block["note"])]
    for key, rows in block.items():
        if isinstance(rows, list):
            out += [f"<h3>{html.escape(key.replace('_', ' '))}</h3>", kit.table(pd.DataFrame(rows))]
    return out


def _grids(samples: ReleaseSamples) -> list[str]:
    out = ["<h2>Examples per intervention (factual | counterfactual | difference x4)</h2>"]
    by_label: dict[str, list[int]] = {}
    for i in samples.of_kind("counterfactual"):
        by_label.setdefault(samples.records[i]["label"], []).append(i)
    for label, rows in sorted(by_label.items()):
        cells = []
        for i in rows[:EXAMPLES_PER_INTERVENTION]:
            f = samples.factual_of(i)
            if f is not None:
                pictures = [
                    samples.images[f],
                    samples.images[i],
                    _difference(samples.images[i], samples.images[f]),
                ]
                cells.append(_cell(pictures, samples.records[i]["family"]))
        out += [f"<h3>{html.escape(label)}</h3><div class='grid'>{''.join(cells)}</div>"]
    return out


def _worst(samples: ReleaseSamples, tables: dict[str, pd.DataFrame]) -> list[str]:
    out = []
    truth = tables.get("phantom_truth")
    if truth is not None and not truth.empty:
        worst = truth.sort_values("mae_model", ascending=False).head(6)
        cells = [
            _cell(
                [samples.images[samples.factual_of(int(r.row))], samples.images[int(r.row)]],
                f"{r.key}: {r.label}, mae {r.mae_model:.4f}",
            )
            for r in worst.itertuples()
        ]
        out += [
            "<h2>Worst cases against the phantom truth (factual | counterfactual)</h2>",
            f"<div class='grid'>{''.join(cells)}</div>",
        ]
    eff = tables.get("effectiveness")
    if eff is not None and "correct" in eff:
        misses = eff[eff["correct"] == 0].head(6)
        cells = [
            _cell(
                [samples.images[samples.factual_of(int(r.row))], samples.images[int(r.row)]],
                f"{r.key}: {r.covariate} -> {r.target}",
            )
            for r in misses.itertuples()
        ]
        if cells:
            out += [
                "<h2>Ineffective counterfactuals (the oracle misses the intended value)</h2>",
                f"<div class='grid'>{''.join(cells)}</div>",
            ]
    return out


def _cell(images: Sequence[np.ndarray], caption: str) -> str:
    strip = np.concatenate([np.clip(im, 0, 1) for im in images], axis=1)
    return f"<div class='cell'><img class='pixels' src='{kit.pixels(strip)}'><br>{html.escape(caption)}</div>"


def _difference(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    return np.clip(0.5 + gain * (a - b), 0, 1)


def _flat(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (", ".join(f"{a} {b}" for a, b in v.items()) if isinstance(v, dict) else v)
        for k, v in metrics.items()
    }


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
