"""Write small sources in the phantom's on-disk layout (metadata.csv + 16-bit PNGs + provenance.json).

Not a test module: tests import it (pytest puts tests/ on sys.path). Images are non-square 16-bit ramps, so
resizing, cropping and 16-bit precision are all visible.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = (
    "atelectasis cardiomegaly consolidation edema enlarged_cardiomediastinum fracture lung_lesion "
    "lung_opacity pleural_effusion pleural_other pneumonia pneumothorax support_devices"
).split()


def phantom_row(i: int, **overrides) -> dict:
    row = {
        "key": f"phantom_s0_{i:06d}",
        "image": f"images/phantom_s0_{i:06d}.png",
        "split": ("train", "validate", "test")[i % 3],
        "age": str(20 + 7 * i % 70),
        "sex": ("female", "male")[i % 2],
        "race": ("asian", "black", "white", "other")[i % 4],
        "view": ("PA", "AP")[i % 2],
        "device": ("philips", "siemens")[i % 2],
        "source": ("phantom_site_a", "phantom_site_b")[i % 2],
    }
    row.update({f"findings.{label}": str(int(label == "cardiomegaly" and i % 2)) for label in LABELS})
    row.update(overrides)
    return row


def ramp(i: int, shape: tuple[int, int] = (40, 30)) -> np.ndarray:
    """A 16-bit image with >256 distinct values, different per ``i``."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 977 + y * 1531 + i * 4099) % 65536).astype(np.uint16)


def write_phantom_source(root: Path, rows: list[dict], images: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if images:
        for i, row in enumerate(rows):
            Image.fromarray(ramp(i)).save(root / row["image"])
    (root / "provenance.json").write_text(json.dumps({"schema": "test"}))
    return root
