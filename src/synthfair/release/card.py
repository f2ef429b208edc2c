"""The numbers section of a release's dataset card, computed from the release (never written by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from synthfair.taxonomy import Covariate, Taxonomy

SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` value for ``n`` samples."""
    for limit, label in SIZE_CATEGORIES:
        if n < limit:
            return label
    return "n>10M"


def numbers_section(
    manifest: dict[str, Any], samples: pd.DataFrame, taxonomy: Taxonomy, errors: dict[str, int]
) -> str:
    """Markdown: totals, kinds, interventions, splits, each covariate, intersections, failures."""
    parts = [
        "### Totals\n",
        _table(
            ["samples", "families", "shards", "failed", "bytes", "image size"],
            [
                [
                    manifest["nsamples"],
                    samples["family"].nunique(),
                    len(manifest["shards"]),
                    manifest["failed"],
                    _bytes(manifest["bytes"]),
                    f"{manifest['config']['size']} px",
                ]
            ],
        ),
        "\n### Samples per kind\n",
        _counts(samples["kind"], "kind"),
        "\n### Samples per intervention\n",
        _counts(samples["label"], "intervention"),
        "\n### Samples per split\n",
        _counts(samples["split"], "split"),
        "\n### Samples per covariate value (after intervention)\n",
    ]
    for spec in taxonomy:
        parts += [f"\n**{spec.name}**\n", _covariate(spec, samples, taxonomy)]
    axes = intersection_axes(taxonomy)
    if axes:
        parts += [
            f"\n### Samples per intersection ({' x '.join(axes)})\n",
            _intersections(samples, taxonomy, axes),
        ]
    if errors:
        parts += [
            "\n### Failed samples by reason\n",
            _table(["reason", "samples"], sorted([k, v] for k, v in errors.items())),
        ]
    return "\n".join(parts)


def intersection_axes(taxonomy: Taxonomy) -> list[str]:
    """The patient covariates that can be grouped: categorical ones and continuous ones with bins."""
    return [
        spec.name
        for spec in taxonomy
        if spec.group == "patient"
        and (spec.kind == "categorical" or (spec.kind == "continuous" and spec.bins))
    ]


def _covariate(spec: Covariate, samples: pd.DataFrame, taxonomy: Taxonomy) -> str:
    if spec.kind == "multilabel":
        rows = []
        for label in spec.values:
            column = samples[f"{spec.name}.{label}"]
            rows.append([label, int((column == 1).sum()), int((column == 0).sum()), int(column.isna().sum())])
        return _table(["label", "positive", "negative", "missing"], rows)
    if spec.kind == "continuous" and not spec.bins:
        column = samples[spec.name]
        return _table(
            ["mean", "min", "max", "missing"],
            [
                [
                    f"{column.mean():.1f}",
                    f"{column.min():.1f}",
                    f"{column.max():.1f}",
                    int(column.isna().sum()),
                ]
            ],
        )
    return _counts(taxonomy.group_labels(samples, [spec.name])[spec.name], spec.name)


def _intersections(samples: pd.DataFrame, taxonomy: Taxonomy, axes: Sequence[str]) -> str:
    frame = taxonomy.group_labels(samples, axes).astype(str)  # the subgroup labels of every report
    counts = frame.value_counts().sort_index()
    total = max(int(counts.sum()), 1)
    rows = [[*key, int(n), f"{n / total:.1%}"] for key, n in counts.items()]
    return _table([*axes, "samples", "share"], rows)


def _counts(column: pd.Series, name: str) -> str:
    counts = column.fillna("missing").astype(str).value_counts().sort_index()
    total = max(int(counts.sum()), 1)
    return _table([name, "samples", "share"], [[k, int(v), f"{v / total:.1%}"] for k, v in counts.items()])


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
