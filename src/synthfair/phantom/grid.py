"""A picture for people: subjects in rows, their exact counterfactuals per intervention in columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synthfair.phantom.simulator import Phantom, Subject

HEADER_PX = 18


def default_interventions(phantom: Phantom) -> list[tuple[str, dict[str, Any]]]:
    """(label, do) columns: factual, then one or two interventions per image mechanism of phantom.yaml."""
    r, tax = phantom.spec.roles, phantom.taxonomy
    lo, hi = tax[r.age].range
    columns: list[tuple[str, dict[str, Any]]] = [("factual", {})]
    columns += [(f"{r.age}={a:g}", {r.age: a}) for a in (max(lo, 25.0), min(hi, 85.0))]
    columns += [(f"{r.sex}={v}", {r.sex: v}) for v in tax[r.sex].values]
    columns += [
        (f"+{label}", {r.findings: {label: 1}})
        for label in (r.cardiomegaly, r.pleural_effusion, r.consolidation)
    ]
    columns += [(f"{r.view}={v}", {r.view: v}) for v in tax[r.view].values]
    columns += [(f"{r.device}={v}", {r.device: v}) for v in list(phantom.spec.devices)[:2]]
    return columns


def render_grid(
    phantom: Phantom,
    subjects: Sequence[Subject],
    size: int = 192,
    interventions: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
) -> Image.Image:
    """An 8-bit grayscale grid: one row per subject, one column per (label, do) intervention."""
    columns = list(interventions or default_interventions(phantom))
    canvas = np.zeros((HEADER_PX + len(subjects) * size, len(columns) * size), dtype=np.uint8)
    for i, subject in enumerate(subjects):
        for j, (_, do) in enumerate(columns):
            image = (
                phantom.counterfactual(subject, do, size).image if do else phantom.render(subject, size=size)
            )
            canvas[HEADER_PX + i * size : HEADER_PX + (i + 1) * size, j * size : (j + 1) * size] = image >> 8
    picture = Image.fromarray(canvas, mode="L")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for j, (label, _) in enumerate(columns):
        draw.text((j * size + 4, 3), label, fill=255, font=font)
    return picture
