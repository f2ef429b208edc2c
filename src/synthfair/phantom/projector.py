"""Digitally reconstructed radiographs: attenuation integrated along rays from a point source.

The base volume is cut into slabs perpendicular to the central ray. From a point source, a plane at
distance ``d`` from the detector projects onto the detector by a uniform magnification
``m = SID / (SID - d)`` about the principal point, so a cone-beam DRR is

    p(u, v) = sum_j  mu_j(q(u / m_j, v / m_j)) * t * sqrt(1 + (u^2 + v^2) / SID^2)

with ``t`` the subject's slab thickness, ``q`` the subject-to-base map of `synthfair.phantom.geometry` and
the square root the obliquity of the ray through the slab. A parallel beam is the limit SID -> infinity.
Each slab is resampled bilinearly with ``torch.nn.functional.grid_sample`` and the slabs are summed in
float64, so the result does not depend on how many threads did the work. ``p`` is in centimetres of
water-equivalent path length.

Images follow radiographic display: frontal views show the patient's right on the viewer's left, head up;
lateral views show the patient facing the viewer's left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from synthfair.phantom.geometry import AnatomyFrame, SubjectGeometry, slab_grids

SLAB_CHUNK = 24  # slabs resampled at once; bounds memory at ~SLAB_CHUNK * H * W * 12 bytes


@dataclass(frozen=True)
class ViewGeometry:
    """Where source and detector are, relative to the patient."""

    depth_axis: int  # 1: frontal (rays along posterior-anterior), 0: lateral (rays along right-left)
    source_side: int  # -1: source on the low-coordinate side (posterior / right), +1: the high side
    sid_mm: float  # source-to-image distance; math.inf for a parallel beam
    gap_mm: float = 15.0  # detector to skin on the detector side
    fov_mm: float = 400.0  # square detector field of view


def project(
    mu: np.ndarray, frame: AnatomyFrame, view: ViewGeometry, subject: SubjectGeometry, size: int
) -> np.ndarray:
    """Line integrals (cm water-equivalent) through ``mu`` (X, Y, Z; attenuation relative to water).

    Returns (size, size) float64, row 0 superior.
    """
    a = view.depth_axis
    col_axis = 0 if a == 1 else 1
    slabs, t = _slabs(mu, frame, a)  # (D, 1, Z, U)
    q_depth = subject.scale[a] * (np.arange(slabs.shape[0]) * t - frame.center[a])
    lo, hi = subject.scale[a] * frame.body_lo[a], subject.scale[a] * frame.body_hi[a]
    keep = np.nonzero((q_depth >= lo - t * subject.scale[a]) & (q_depth <= hi + t * subject.scale[a]))[0]
    q_depth = q_depth[keep]
    if view.source_side < 0:
        dist = hi + view.gap_mm - q_depth  # detector on the high side
    else:
        dist = q_depth - (lo - view.gap_mm)
    mag = np.ones_like(dist) if math.isinf(view.sid_mm) else view.sid_mm / (view.sid_mm - dist)
    coords = (np.arange(size) + 0.5 - size / 2) * (view.fov_mm / size)  # detector mm from principal point
    col_sign = 1.0 if a == 1 else -1.0  # lateral: anterior on the viewer's left
    q_col = subject.scale[col_axis] * frame.lung_center[col_axis] + col_sign * coords[None, :] / mag[:, None]
    q_row = subject.scale[2] * frame.lung_center[2] - coords[None, :] / mag[:, None]
    total = torch.zeros(size, size, dtype=torch.float64)
    for start in range(0, len(keep), SLAB_CHUNK):
        sl = slice(start, start + SLAB_CHUNK)
        grid = slab_grids(frame, subject, a, q_depth[sl], q_col[sl], q_row[sl])  # (n, H, W, 2)
        sampled = F.grid_sample(
            slabs[keep[sl]], grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )  # (n, 1, H, W)
        total += sampled[:, 0].sum(0, dtype=torch.float64)
    obliquity = 1.0
    if not math.isinf(view.sid_mm):
        obliquity = np.sqrt(1.0 + (coords[None, :] ** 2 + coords[:, None] ** 2) / view.sid_mm**2)
    return total.numpy() * (t * subject.scale[a]) * obliquity / 10.0


def _slabs(mu: np.ndarray, frame: AnatomyFrame, depth_axis: int):
    """Slabs along the depth axis as a (D, 1, Z, U) tensor, and the slab thickness."""
    order = (1, 2, 0) if depth_axis == 1 else (0, 2, 1)  # (Y, Z, X) or (X, Z, Y)
    arr = np.ascontiguousarray(np.transpose(mu, order), dtype=np.float32)
    return torch.from_numpy(arr)[:, None], frame.spacing[depth_axis]
