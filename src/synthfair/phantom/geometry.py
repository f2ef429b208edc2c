"""Subject geometry: where each detector ray samples the base anatomy, for one subject and one view.

A subject is the base anatomy seen through a smooth transform (body size and habitus, pose, breathing
depth, a smooth random deformation). Rather than resampling the whole volume per subject, we fold the
transform into the projector's per-slab sampling grids, so a subject costs no more than a plain DRR.

Notation (mm, relative to the base body centre ``c``): ``q`` a point of the subject, ``p`` the base
anatomy point it shows. With ``a`` the depth axis of the view and ``i`` the two in-plane axes:

    q'_z = apex - (apex - q_z) / inspiration       below the lung apex (deeper breath, lower diaphragm)
    p_i  = sum_k M[i, k] q'_k + c_i + d_i(q)        M = (R S)^-1: body scale S, pose rotation R
    p_a  = q_a / S_a + c_a                          each base slab stays one subject slab

The last line drops the (small) in-plane terms of the depth row of ``M``: a few degrees of yaw or roll
become a shear, the standard slab approximation. ``d`` is a smooth displacement field, a tensor product of
Gaussian bumps on a coarse control grid, evaluated separably per slab (two small matrix products).
Everything here is linear algebra on (slab, row) and (slab, column) vectors; the (slab, H, W, 2) grid is
one broadcast add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from synthfair.phantom.anatomy import Anatomy


@dataclass(frozen=True)
class SubjectGeometry:
    """One subject's shape and pose. The defaults are the base anatomy itself."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # body scale along x, y, z
    yaw_deg: float = 0.0  # rotation about the superior axis (patient turned)
    roll_deg: float = 0.0  # rotation in the frontal plane (patient tilted)
    inspiration: float = 1.0  # stretch below the lung apex along z
    deform: tuple[float, ...] = ()  # control-point displacements, (3 * G^3) flattened; empty = none
    deform_grid: int = 4  # control points per axis, G

    def displacement_coefficients(self) -> np.ndarray | None:
        if not self.deform:
            return None
        return np.asarray(self.deform, dtype=np.float64).reshape(3, *(self.deform_grid,) * 3)


@dataclass(frozen=True, eq=False)
class AnatomyFrame:
    """Reference points of a base anatomy, computed once: body centre, extent, lung centre and apex (mm)."""

    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    center: np.ndarray  # (3,) body bounding-box centre
    body_lo: np.ndarray  # (3,) body extent, relative to centre
    body_hi: np.ndarray
    lung_center: np.ndarray  # (3,) lung bounding-box centre, relative to centre
    apex_z: float  # lung apex height, relative to centre
    extent: np.ndarray = field(repr=False)  # (3,) half size of the volume

    @classmethod
    def of(cls, anatomy: Anatomy) -> AnatomyFrame:
        sp = np.asarray(anatomy.spacing_mm, dtype=np.float64)
        body = np.argwhere(anatomy.hu > -500) * sp
        center = (body.min(0) + body.max(0)) / 2
        lungs = np.argwhere(anatomy.mask("lung_*")) * sp
        if len(lungs) == 0:
            lungs = body
        return cls(
            spacing=tuple(float(s) for s in sp),
            shape=anatomy.shape,
            center=center,
            body_lo=body.min(0) - center,
            body_hi=body.max(0) - center,
            lung_center=(lungs.min(0) + lungs.max(0)) / 2 - center,
            apex_z=float(lungs[:, 2].max() - center[2]),
            extent=(np.asarray(anatomy.shape) - 1) * sp / 2,
        )


def inverse_linear(geom: SubjectGeometry) -> np.ndarray:
    """M = (R S)^-1 = S^-1 R^T."""
    a, b = math.radians(geom.yaw_deg), math.radians(geom.roll_deg)
    yaw = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    roll = np.array([[math.cos(b), 0, -math.sin(b)], [0, 1, 0], [math.sin(b), 0, math.cos(b)]])
    return np.diag(1.0 / np.asarray(geom.scale)) @ (roll @ yaw).T


def slab_grids(
    frame: AnatomyFrame,
    geom: SubjectGeometry,
    depth_axis: int,
    q_depth: np.ndarray,
    q_col: np.ndarray,
    q_row: np.ndarray,
) -> torch.Tensor:
    """grid_sample grids (D, H, W, 2) over the base slabs for subject points on each slab.

    ``q_depth`` (D,) is each slab's subject depth, ``q_col`` (D, W) and ``q_row`` (D, H) the subject
    in-plane coordinates (column axis; z) of every detector column and row on that slab. Each grid
    component ``c`` is ``row_c[h] + col_c[w] + (B_row @ K_c @ B_col^T)[h, w]`` (affine part plus the
    displacement's separable expansion), so the whole grid is one batched matrix product whose output
    columns interleave the two components: (D, H, 2W) is already the (D, H, W, 2) grid in memory.
    """
    col_axis = 0 if depth_axis == 1 else 1
    m = inverse_linear(geom)
    apex = frame.apex_z * geom.scale[2]
    qz = np.where(q_row < apex, apex - (apex - q_row) / geom.inspiration, q_row)
    basis = _displacement_basis(frame, geom, depth_axis, q_depth, q_col, q_row)
    n_slabs, height, width = q_depth.shape[0], q_row.shape[1], q_col.shape[1]
    left, right = [], []
    for comp, out_axis in enumerate((col_axis, 2)):  # grid x indexes the column axis, grid y indexes z
        norm = 2.0 / (frame.spacing[out_axis] * (frame.shape[out_axis] - 1))  # mm -> [-1, 1]
        row = (
            m[out_axis, 2] * qz + (m[out_axis, depth_axis] * q_depth + frame.center[out_axis])[:, None]
        ) * norm
        col = m[out_axis, col_axis] * q_col * norm - 1.0
        left.append(row[:, :, None])  # (D, H, 1) times a 0/1 row selecting this component
        right.append(_interleave(np.ones((n_slabs, 1, width)), comp))
        left.append(np.ones((n_slabs, height, 1)))  # times the column term
        right.append(_interleave(col[:, None, :], comp))
        if basis is not None:
            phi_row, k, phi_col = basis
            left.append(phi_row @ (k[comp] * norm))  # (D, H, G)
            right.append(_interleave(np.swapaxes(phi_col, 1, 2), comp))  # (D, G, 2W)
    grid = torch.bmm(_f32(np.concatenate(left, axis=2)), _f32(np.concatenate(right, axis=1)))
    return grid.view(n_slabs, height, width, 2)


def _interleave(rows: np.ndarray, comp: int) -> np.ndarray:
    """(D, R, W) -> (D, R, 2W) with ``rows`` at positions ``2w + comp`` and zeros elsewhere."""
    out = np.zeros((*rows.shape[:2], 2 * rows.shape[2]))
    out[:, :, comp::2] = rows
    return out


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _bumps(coord: np.ndarray, half_extent: float, n: int) -> np.ndarray:
    """Gaussian bump basis (..., n) with centres spread over [-half_extent, half_extent]."""
    centers = np.linspace(-half_extent, half_extent, n)
    width = 2 * half_extent / max(n - 1, 1)
    return np.exp(-0.5 * ((coord[..., None] - centers) / width) ** 2)


def _displacement_basis(frame, geom, depth_axis, q_depth, q_col, q_row):
    """Separable factors of the displacement on each slab: ``d_comp = phi_row @ k[comp] @ phi_col^T``."""
    coef = geom.displacement_coefficients()
    if coef is None:
        return None
    col_axis = 0 if depth_axis == 1 else 1
    n = geom.deform_grid
    phi_depth = _bumps(q_depth, frame.extent[depth_axis], n)  # (D, G)
    phi_col = _bumps(q_col, frame.extent[col_axis], n)  # (D, W, G)
    phi_row = _bumps(q_row, frame.extent[2], n)  # (D, H, G)
    k = []
    for comp in (col_axis, 2):
        c = np.moveaxis(coef[comp], (col_axis, depth_axis, 2), (0, 1, 2))  # (G_col, G_depth, G_z)
        k.append(np.einsum("cdz,sd->szc", c, phi_depth))  # (D, G_z, G_col)
    return phi_row, k, phi_col
