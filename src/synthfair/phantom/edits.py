"""Volume edits: how each covariate changes the anatomy, each where anatomy says it should.

All edits work on a copy of the base anatomy's Hounsfield units (subject geometry is applied later, by the
projector), through precomputed voxel indices (`AnatomyIndex`), so that a subject's counterfactuals
cost a few milliseconds each. Each edit is a pure function of the covariates and the subject's noise:

- bone density (age, sex): bone HU pulled towards soft tissue by ``1 - r (age - 35)+`` (faster for the
  female value after 50), and costal cartilage calcification growing with age over a subject-specific
  random pattern;
- breast soft tissue (sex): two hemi-ellipsoids of fibroglandular tissue on the anterior chest wall;
- scapulae (view): moved laterally out of the lung fields when the arms are rotated forward (PA, lateral);
- cardiomegaly (finding): the heart dilated about its right border, mostly to the left, displacing lung;
- pleural effusion (finding): fluid in the dependent pleural space of one or both lungs: a basal level
  with a lateral meniscus when erect, a posterior layer when supine;
- consolidation (finding): a patch of one lobe (subject's noise picks which and where) filled with fluid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from synthfair.phantom.anatomy import Anatomy

SOFT_HU = 40.0  # muscle, blood, myocardium
FLUID_HU = 15.0  # pleural fluid, exudate
FAT_GLAND_HU = -40.0  # breast tissue
CALCIFIED_GAIN_HU = 550.0
BONES = ("rib_*", "vertebrae_*", "sternum", "clavicula_*", "scapula_*", "humerus_*")
RIGHT_LOBES = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
LEFT_LOBES = ("lung_upper_lobe_left", "lung_lower_lobe_left")
LOBES = (
    "lung_lower_lobe_right",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_upper_lobe_left",
)
LOBE_WEIGHTS = (0.30, 0.25, 0.15, 0.15, 0.15)  # lower lobes are consolidated more often


@dataclass(frozen=True, eq=False)
class AnatomyIndex:
    """Voxel sets of the base anatomy that the edits touch, computed once per anatomy."""

    shape: tuple[int, int, int]
    spacing: np.ndarray
    bone: np.ndarray  # flat indices of bone voxels (HU > 100)
    cartilage: np.ndarray  # flat indices of costal cartilage
    scapula_right: np.ndarray
    scapula_left: np.ndarray
    soft: np.ndarray  # unlabelled body voxels of soft-tissue density
    heart_box: tuple[slice, slice, slice]
    heart: np.ndarray  # bool mask inside heart_box
    heart_pivot: np.ndarray  # (3,) voxel coordinates of the dilation centre
    lungs: dict  # side ("right"/"left") -> bool mask of that lung
    lobes: dict  # lobe name -> flat indices
    anterior: np.ndarray  # (X, Z) y-index of the anterior skin, -1 where no body
    breast_centers: np.ndarray  # (2, 2) (x, z) voxel centres of the right and left breast

    @classmethod
    def of(cls, anatomy: Anatomy) -> AnatomyIndex:
        hu, sp = anatomy.hu, np.asarray(anatomy.spacing_mm)
        flat = anatomy.labels.ravel()
        body = hu > -500
        bone = np.flatnonzero(np.isin(flat, anatomy.ids(*BONES)) & (hu.ravel() > 100))
        heart = anatomy.mask("heart")
        box = _bbox(heart, pad=(np.array([60.0, 40.0, 30.0]) / sp).astype(int), shape=hu.shape)
        hz = np.argwhere(heart)
        pivot = np.array([hz[:, 0].min() + 0.25 * np.ptp(hz[:, 0]), hz[:, 1].mean(), hz[:, 2].min()])
        pivot = pivot - [box[0].start, box[1].start, box[2].start]
        lungs = {"right": anatomy.mask(*RIGHT_LOBES), "left": anatomy.mask(*LEFT_LOBES)}
        anterior = np.where(body.any(1), hu.shape[1] - 1 - np.argmax(body[:, ::-1, :], axis=1), -1)
        return cls(
            shape=hu.shape,
            spacing=sp,
            bone=bone,
            cartilage=np.flatnonzero(np.isin(flat, anatomy.ids("costal_cartilages"))),
            scapula_right=np.flatnonzero(np.isin(flat, anatomy.ids("scapula_right"))),
            scapula_left=np.flatnonzero(np.isin(flat, anatomy.ids("scapula_left"))),
            soft=np.flatnonzero((flat == 0) & body.ravel() & (np.abs(hu.ravel()) < 300)),
            heart_box=box,
            heart=heart[box],
            heart_pivot=pivot,
            lungs=lungs,
            lobes={name: np.flatnonzero(np.isin(flat, anatomy.ids(name))) for name in LOBES},
            anterior=anterior,
            breast_centers=_breast_centers(lungs, sp),
        )


def _bbox(mask: np.ndarray, pad, shape) -> tuple[slice, slice, slice]:
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return tuple(slice(0, 0) for _ in shape)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + 1 + pad, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _breast_centers(lungs, spacing) -> np.ndarray:
    """Breasts sit over the lower half of each lung, at the middle of its width (x, z voxel coords)."""
    out = []
    for side in ("right", "left"):
        idx = np.argwhere(lungs[side])
        if len(idx) == 0:
            out.append([0.0, 0.0])
            continue
        x = idx[:, 0].mean()
        z = idx[:, 2].min() + 0.32 * np.ptp(idx[:, 2])
        out.append([x, z])
    return np.asarray(out)


# -- edits ------------------------------------------------------------------------------------------------
def bone_density(hu: np.ndarray, index: AnatomyIndex, factor: float) -> None:
    """Scale bone's excess over soft tissue by ``factor`` (1 = the base anatomy's density)."""
    flat = hu.reshape(-1)
    flat[index.bone] = SOFT_HU + (flat[index.bone] - SOFT_HU) * factor


def calcify_cartilage(hu: np.ndarray, index: AnatomyIndex, fraction: float, pattern: np.ndarray) -> None:
    """Calcify the costal cartilage voxels whose subject pattern value (uniform in [0, 1]) < ``fraction``."""
    flat = hu.reshape(-1)
    hit = index.cartilage[pattern < fraction]
    flat[hit] = flat[hit] + CALCIFIED_GAIN_HU


def move_scapulae(hu: np.ndarray, index: AnatomyIndex, shift_mm: float) -> None:
    """Move each scapula laterally by ``shift_mm`` (arms rotated forward), leaving muscle behind."""
    if shift_mm <= 0:
        return
    flat = hu.reshape(-1)
    dx = int(round(shift_mm / index.spacing[0]))
    stride = index.shape[1] * index.shape[2]  # flat-index step of one voxel along x
    moves = []
    for idx, sign in ((index.scapula_right, -1), (index.scapula_left, 1)):
        x = idx // stride
        ok = (x + sign * dx >= 0) & (x + sign * dx < index.shape[0])
        moves.append((idx[ok] + sign * dx * stride, flat[idx[ok]].copy()))
        flat[idx] = SOFT_HU
    for target, values in moves:
        flat[target] = np.maximum(flat[target], values)


def dilate_heart(hu: np.ndarray, index: AnatomyIndex, scale: tuple[float, float, float]) -> None:
    """Cardiomegaly: the heart scaled by ``scale`` (x, y, z) about its right-inferior pivot."""
    sub = hu[index.heart_box]
    grid = np.indices(sub.shape, dtype=np.float32)
    src = [(grid[k] - index.heart_pivot[k]) / scale[k] + index.heart_pivot[k] for k in range(3)]
    grown = ndimage.map_coordinates(index.heart.astype(np.float32), src, order=1, mode="constant") > 0.5
    new = grown & ~index.heart & (sub < 150)  # never over bone
    sub[new] = SOFT_HU


def effusion(hu: np.ndarray, index: AnatomyIndex, side: str, fraction: float, supine: bool) -> None:
    """Pleural fluid filling ``fraction`` of a lung's dependent space (basal if erect,
    posterior if supine)."""
    lung = index.lungs[side]
    idx = np.argwhere(lung)
    if len(idx) == 0 or fraction <= 0:
        return
    x, y, z = idx.T
    if supine:  # layers posteriorly, thicker towards the base
        y0, height = y.min(), np.ptp(y) + 1
        zrel = (z - z.min()) / (np.ptp(z) + 1)
        level = y0 + height * fraction * 1.4 * (1.0 - 0.6 * zrel)
        wet = y < level
    else:  # basal level with a meniscus rising along the lateral chest wall
        lateral = (x - x.mean()) / (np.ptp(x) / 2 + 1) * (1 if side == "left" else -1)
        level = z.min() + np.ptp(z) * fraction * (1.0 + 0.35 * np.clip(lateral, 0, 1) ** 2)
        wet = z < level
    hu[x[wet], y[wet], z[wet]] = FLUID_HU


def consolidate(hu: np.ndarray, index: AnatomyIndex, lobe: str, fraction: float, field: np.ndarray) -> None:
    """Fill the ``fraction`` of ``lobe`` where the subject's smooth ``field`` (one value per lobe voxel) is
    highest with exudate; the rest of the lobe stays aerated."""
    voxels = index.lobes[lobe]
    if len(voxels) == 0 or fraction <= 0:
        return
    threshold = np.quantile(field, 1.0 - fraction)
    flat = hu.reshape(-1)
    hit = voxels[field >= threshold]
    flat[hit] = np.maximum(flat[hit], FLUID_HU)


def add_breasts(hu: np.ndarray, index: AnatomyIndex, radius_mm: float, ptosis: float) -> None:
    """Two hemi-ellipsoids of breast tissue on the anterior chest wall (radius in mm; ptosis shifts them
    down by that fraction of the radius)."""
    sp = index.spacing
    rx, rz, ry = radius_mm / sp[0], radius_mm * 0.9 / sp[2], radius_mm * 0.6 / sp[1]
    for cx, cz in index.breast_centers:
        cz = cz - ptosis * rz
        xs = np.arange(max(0, int(cx - rx)), min(index.shape[0], int(cx + rx) + 1))
        zs = np.arange(max(0, int(cz - rz)), min(index.shape[2], int(cz + rz) + 1))
        xx, zz = np.meshgrid(xs, zs, indexing="ij")
        r2 = ((xx - cx) / rx) ** 2 + ((zz - cz) / rz) ** 2
        depth = ry * np.sqrt(np.clip(1.0 - r2, 0.0, None))  # (nx, nz) voxels of tissue in front of skin
        skin = index.anterior[xx, zz]
        ys = np.arange(index.shape[1])[None, None, :]
        inside = (ys > skin[..., None]) & (ys <= (skin + depth)[..., None]) & (skin[..., None] >= 0)
        block = hu[xs[0] : xs[-1] + 1, :, zs[0] : zs[-1] + 1]  # (nx, Y, nz)
        block[np.moveaxis(inside, 2, 1)] = FAT_GLAND_HU
