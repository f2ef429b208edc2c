"""Ingest and preprocess speed.

1. ``ingest``: rows per second for synthetic 200,000-row metadata in the published layouts of NIH
   ChestX-ray14 (one CSV with its bracketed header) and MIMIC-CXR-JPG + MIMIC-IV (metadata, split and
   per-study label CSVs, gzipped, joined with patients and admissions). Image files are not created, so the
   rate is parsing + joins + harmonization + index writing (``check_images=False``); checking that files
   exist adds one stat() per row.
2. ``preprocess``: images per second from full-size inputs to 256^2 training shards, for 8-bit JPEG
   (MIMIC-CXR-JPG), 16-bit PNG, uncompressed 12-bit DICOM and JPEG 2000 lossless DICOM, with ``--workers``
   decoding processes.

    python bench/ingest.py [--rows 200000] [--images 24] [--size 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "sources")]  # fixture writers: source_files, dicom_files

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
NIH_LABELS = ["No Finding", "Effusion", "Atelectasis|Effusion", "Cardiomegaly", "Mass|Nodule", "Infiltration"]
CHEXPERT_LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]


def write_nih(root: Path, rows: int, rng: np.random.Generator) -> None:
    root.mkdir(parents=True, exist_ok=True)
    patients = np.arange(rows) // 4 + 1
    follow = np.arange(rows) % 4
    labels = rng.choice(NIH_LABELS, rows)
    ages = rng.integers(1, 95, rows)
    sexes = rng.choice(["M", "F"], rows)
    views = rng.choice(["PA", "AP"], rows)
    with open(root / "Data_Entry_2017_v2020.csv", "w") as f:
        f.write(NIH_HEADER + "\n")
        for p, u, lab, a, s, v in zip(patients, follow, labels, ages, sexes, views, strict=True):
            f.write(f"{p:08d}_{u:03d}.png,{lab},{u},{p},{a},{s},{v},2500,2048,0.143,0.143\n")


def write_mimic(root: Path, rows: int, rng: np.random.Generator) -> None:
    files = root / "mimic-cxr-jpg" / "2.1.0"
    hosp = root / "mimic-iv" / "3.1" / "hosp"
    files.mkdir(parents=True)
    hosp.mkdir(parents=True)
    n_subjects = max(1, rows // 6)
    subject = 10000000 + rng.integers(0, n_subjects, rows)
    study = 50000000 + np.arange(rows) // 2  # two images per study
    subject = subject[np.arange(rows) // 2 * 2]  # both images of a study share the subject
    dicom = [f"{i:08x}-{i * 7:08x}-{i * 13:08x}-{i * 17:08x}-{i * 19:08x}" for i in range(rows)]
    meta = pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": subject,
            "study_id": study,
            "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
            "ViewPosition": rng.choice(["PA", "AP", "LATERAL", "LL", ""], rows),
            "Rows": 3056,
            "Columns": 2544,
            "StudyDate": 21500000 + rng.integers(0, 20, rows) * 10000 + 101,
            "StudyTime": 213014.531,
            "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": "postero-anterior",
            "PatientOrientationCodeSequence_CodeMeaning": "Erect",
        }
    )
    meta.to_csv(files / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    split = meta[["dicom_id", "study_id", "subject_id"]].assign(split="train")
    split.to_csv(files / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    studies = meta[["subject_id", "study_id"]].drop_duplicates()
    states = rng.choice(
        ["1.0", "0.0", "-1.0", ""], (len(studies), len(CHEXPERT_LABELS)), p=[0.1, 0.1, 0.05, 0.75]
    )
    labels = pd.concat(
        [studies.reset_index(drop=True), pd.DataFrame(states, columns=CHEXPERT_LABELS)], axis=1
    )
    labels.to_csv(files / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    subjects = np.unique(subject)
    pd.DataFrame(
        {
            "subject_id": subjects,
            "gender": rng.choice(["M", "F"], len(subjects)),
            "anchor_age": rng.integers(18, 92, len(subjects)),
            "anchor_year": 2150,
            "anchor_year_group": "2014 - 2016",
            "dod": "",
        }
    ).to_csv(hosp / "patients.csv.gz", index=False)
    admissions = np.repeat(subjects, 2)
    pd.DataFrame(
        {
            "subject_id": admissions,
            "hadm_id": 20000000 + np.arange(len(admissions)),
            "race": rng.choice(
                ["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN - CHINESE", "UNKNOWN"], len(admissions)
            ),
        }
    ).to_csv(hosp / "admissions.csv.gz", index=False)


def bench_ingest(kind: str, rows: int, tmp: Path) -> dict:
    from synthfair.index.ingest import IngestConfig, ingest

    root = tmp / f"{kind}-src"
    rng = np.random.default_rng(0)
    {"nih": write_nih, "mimic": write_mimic}[kind](root, rows, rng)
    config = IngestConfig(on_error="skip", check_images=False, race_conflict="missing")
    t = time.perf_counter()
    report = ingest(kind, root, tmp / f"{kind}-index", config)
    seconds = time.perf_counter() - t
    return {
        "rows": report.read,
        "indexed": report.indexed,
        "seconds": seconds,
        "rows_per_s": report.read / seconds,
    }


def write_images(root: Path, kind: str, n: int) -> None:
    """A phantom-layout source (metadata.csv + provenance.json) whose images are large PNGs or DICOMs."""
    import dicom_files  # tests/sources/dicom_files.py

    from source_files import phantom_row

    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        pixels = dicom_files.anatomy(shape=(2500, 2048), bits=12)
        pixels = np.roll(pixels, i * 7, axis=1)
        suffix = {"png16": "png", "jpeg8": "jpg"}.get(kind, "dcm")
        row = phantom_row(i, image=f"images/img{i:04d}.{suffix}")
        rows.append(row)
        if kind == "jpeg8":
            Image.fromarray((pixels >> 4).astype(np.uint8)).save(root / row["image"], quality=95)
        elif kind == "png16":
            Image.fromarray((pixels.astype(np.uint32) * 16).astype(np.uint16)).save(root / row["image"])
        else:
            syntax = "jpeg2000" if kind == "dicom-j2k" else None
            dicom_files.write_dicom(root / row["image"], pixels, bits_stored=12, transfer_syntax=syntax)
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "provenance.json").write_text("{}")


def bench_preprocess(kind: str, n: int, size: int, workers: int, tmp: Path) -> dict:
    from synthfair.index.ingest import ingest
    from synthfair.index.preprocess import PreprocessConfig, preprocess

    root = tmp / f"{kind}-images"
    write_images(root, kind, n)
    ingest("phantom", root, tmp / f"{kind}-index")
    config = PreprocessConfig(size=size, shard_size=max(1, n // 2), workers=workers)
    t = time.perf_counter()
    result = preprocess(tmp / f"{kind}-index", tmp / f"{kind}-cache", config)
    seconds = time.perf_counter() - t
    mb = sum(p.stat().st_size for p in (root / "images").iterdir()) / n / 2**20
    return {
        "images": result.images,
        "failed": result.failed,
        "seconds": seconds,
        "img_per_s": n / seconds,
        "input_mb_per_image": mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=["ingest", "preprocess"], default=None)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "ingest"):
            for kind in ("nih", "mimic"):
                r = bench_ingest(kind, args.rows, tmp)
                print(
                    f"ingest {kind:6s}: {r['rows']} rows ({r['indexed']} indexed) in {r['seconds']:.1f} s "
                    f"= {r['rows_per_s']:,.0f} rows/s"
                )
        if args.only in (None, "preprocess"):
            for kind in ("jpeg8", "png16", "dicom", "dicom-j2k"):
                r = bench_preprocess(kind, args.images, args.size, args.workers, tmp)
                print(
                    f"preprocess {kind:9s} 2500x2048 -> {args.size}^2, {args.workers} workers: "
                    f"{r['img_per_s']:.1f} img/s ({r['images']} images, "
                    f"{r['input_mb_per_image']:.1f} MB each, {r['failed']} failed)"
                )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the main process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
