"""Covariates -> the conditioning vector of the image model, with one "null" bit per covariate group.

Each covariate the model is conditioned on is one *group* of the vector, laid out in taxonomy order:

    categorical   one-hot over its values            + null bit
    continuous    (x - lo) / (hi - lo) * 2 - 1       + null bit
    multilabel    +1 / -1 per label (0: unknown)     + null bit

A missing value, and a group dropped for classifier-free guidance, are both encoded as zeros with the null
bit set: the model learns "unknown" once, and guidance compares a condition with the same condition whose
groups are nulled (all of them, or only the intervened ones: attribute-specific guidance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from synthfair.errors import ConfigError, did_you_mean
from synthfair.taxonomy import Covariate, Taxonomy, is_missing


@dataclass(frozen=True)
class Group:
    name: str
    start: int  # first column of the group's values
    size: int  # number of value columns (the null bit follows them)

    @property
    def null(self) -> int:
        return self.start + self.size

    @property
    def columns(self) -> slice:
        return slice(self.start, self.null + 1)


class ConditionEncoder:
    """Encodes covariate dicts (``{"age": 63.0, "sex": "male", "findings": {...}, ...}``) as float vectors."""

    def __init__(self, taxonomy: Taxonomy, covariates: Sequence[str] | None = None):
        names = list(covariates) if covariates else list(taxonomy.names)
        for name in names:
            if name not in taxonomy:
                raise ConfigError(
                    f"conditioning covariate {name!r} is not in the taxonomy"
                    + did_you_mean(name, taxonomy.names),
                    f"use covariates of taxonomy.yaml: {', '.join(taxonomy.names)}",
                )
        self.taxonomy = taxonomy
        self.specs = [taxonomy[n] for n in taxonomy.names if n in names]  # taxonomy order
        self.groups: list[Group] = []
        start = 0
        for spec in self.specs:
            size = 1 if spec.kind == "continuous" else len(spec.values)
            self.groups.append(Group(spec.name, start, size))
            start += size + 1
        self.dim = start

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def encode(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """(B, dim) float32 conditioning vectors; a covariate absent from a record counts as missing."""
        out = torch.zeros(len(records), self.dim)
        for i, record in enumerate(records):
            for spec, group in zip(self.specs, self.groups, strict=True):
                values = _encode_value(spec, record.get(spec.name))
                if values is None:
                    out[i, group.null] = 1.0
                else:
                    out[i, group.start : group.null] = torch.tensor(values)
        return out

    def null(self, cond: torch.Tensor, drop: torch.Tensor | Sequence[str] | None = None) -> torch.Tensor:
        """``cond`` with groups nulled: ``drop`` is a (B, n_groups) bool mask, a list of group names for every
        row, or None for all groups (the unconditional vector)."""
        out = cond.clone()
        if drop is None:
            drop = torch.ones(cond.shape[0], len(self.groups), dtype=torch.bool)
        elif not isinstance(drop, torch.Tensor):
            unknown = [n for n in drop if n not in self.names]
            if unknown:
                raise ConfigError(
                    f"unknown conditioning group {unknown[0]!r}{did_you_mean(unknown[0], self.names)}",
                    f"groups: {', '.join(self.names)}",
                )
            row = torch.tensor([g.name in drop for g in self.groups])
            drop = row.expand(cond.shape[0], -1)
        for j, group in enumerate(self.groups):
            rows = drop[:, j]
            out[rows, group.columns] = 0.0
            out[rows, group.null] = 1.0
        return out

    def state(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild this encoder: the covariates and the taxonomy hash."""
        return {
            "covariates": list(self.names),
            "dim": self.dim,
            "taxonomy_sha256": self.taxonomy.sha256,  # provenance
            "model_sha256": self.taxonomy.model_sha256,  # checked on load: covariate domains and graph
        }


def _encode_value(spec: Covariate, value: Any) -> list[float] | None:
    if value is None or (not isinstance(value, Mapping) and is_missing(value)):
        return None
    value = spec.check(value)
    if spec.kind == "continuous":
        lo, hi = spec.range
        return [(value - lo) / (hi - lo) * 2.0 - 1.0]
    if spec.kind == "categorical":
        return [float(v == value) for v in spec.values]
    if not value:
        return None
    return [0.0 if value.get(label) is None else 2.0 * value[label] - 1.0 for label in spec.values]
