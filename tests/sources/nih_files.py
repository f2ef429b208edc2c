"""Write NIH ChestX-ray14 in its published layout (helpers for the tests, not tests).

`write_nih` writes, under ``root``, the Data_Entry CSV with the exact raw header line (the bracketed columns
whose commas split them), either ``Data_Entry_2017_v2020.csv`` or the original ``Data_Entry_2017.csv`` with a
comma at the end of every line; the PNGs in ``images_001/images/``, ``images_002/images/`` (Kaggle) or
``images/`` (Box); and optionally ``train_val_list.txt`` / ``test_list.txt``.

`fixture_rows` is the hand-made case list the tests check row by row; `bulk_rows` makes many valid rows for
benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
FILES = {"v2020": "Data_Entry_2017_v2020.csv", "original": "Data_Entry_2017.csv"}
TEST_PATIENTS = {"4", "5"}  # the fixture's test_list.txt holds these patients' images
IMAGES_PER_FOLDER = 4  # Kaggle layout: images 0-3 in images_001/images, 4-7 in images_002/images, ...


def row(index: str, labels: str, follow_up: str, patient: str, age: str, sex: str, view: str) -> list[str]:
    """One data row (11 fields): width, height and pixel spacing as the file writes them."""
    return [index, labels, follow_up, patient, age, sex, view, "2500", "2048", "0.143", "0.143"]


def fixture_rows() -> list[list[str]]:
    return [
        row("00000001_000.png", "Cardiomegaly", "0", "1", "57", "M", "PA"),
        row("00000001_001.png", "Cardiomegaly|Emphysema", "1", "1", "58", "M", "PA"),
        row("00000001_002.png", "Cardiomegaly|Effusion", "2", "1", "58", "M", "PA"),
        row("00000002_000.png", "No Finding", "0", "2", "81", "M", "PA"),
        row("00000004_000.png", "Mass|Nodule|Infiltration", "0", "4", "82", "M", "AP"),
        row("00000005_000.png", "Pleural_Thickening|Hernia", "0", "5", "69", "F", "AP"),
        row("00000006_000.png", "No Finding", "0", "6", "105", "F", "PA"),  # > 100 but in range
    ]


def bulk_rows(n: int) -> list[list[str]]:
    """``n`` valid rows, three images per patient; labels, sex and view cycle."""
    labels = ("No Finding", "Effusion", "Atelectasis|Pneumothorax", "Mass|Nodule", "Hernia")
    return [
        row(
            f"{i // 3 + 1:08d}_{i % 3:03d}.png",
            labels[i % len(labels)],
            str(i % 3),
            str(i // 3 + 1),
            str(20 + i // 3 % 70),
            "MF"[i // 3 % 2],
            ("PA", "AP")[i % 2],
        )
        for i in range(n)
    ]


def write_data_entry(root: Path, rows: list[list[str]], variant: str = "v2020") -> Path:
    """The CSV exactly as published: raw header line; ``original`` ends every line with a comma."""
    end = "," if variant == "original" else ""
    lines = [HEADER + end, *(",".join(r) + end for r in rows)]
    path = root / FILES[variant]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def image_folder(i: int, layout: str) -> str:
    return "images" if layout == "box" else f"images_{i // IMAGES_PER_FOLDER + 1:03d}/images"


def write_nih(
    root: Path,
    rows: list[list[str]] | None = None,
    *,
    variant: str = "v2020",
    layout: str = "kaggle",
    split_lists: bool = True,
    images: bool = True,
) -> Path:
    """A download folder: the Data_Entry ``variant``, PNGs in the ``layout`` folders, the split lists."""
    rows = fixture_rows() if rows is None else rows
    write_data_entry(root, rows, variant)
    if split_lists:
        names = [r[0] for r in rows]
        test = [r[0] for r in rows if r[3] in TEST_PATIENTS]
        (root / "test_list.txt").write_text("".join(f"{n}\n" for n in test))
        (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n in names if n not in test))
    if images:
        for i, r in enumerate(rows):
            write_png(root / image_folder(i, layout) / r[0], i)
    return root


def write_png(path: Path, seed: int, shape: tuple[int, int] = (20, 24)) -> Path:
    """A tiny 8-bit grayscale PNG (the release's PNGs are 1024 x 1024, 8-bit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    Image.fromarray(((x * 7 + y * 3 + seed * 29) % 256).astype(np.uint8)).save(path)
    return path
