"""Write a PadChest fixture in the published layout (helpers for the tests and benchmarks, not tests).

`write_padchest` writes ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (optionally ``.gz``) the way
the authors' script wrote it with pandas' ``to_csv``: a first column with an empty header holding the row
index, then the 35 published columns in order; ``Labels`` as the text of a Python list with stray leading
spaces; a blank cell for a missing value. Images are 16-bit grayscale PNGs in ``<ImageDir>/<ImageID>``.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
COLUMNS = tuple(  # after the unnamed index column, in the order of the authors' generator script
    """ImageID ImageDir StudyDate_DICOM StudyID PatientID PatientBirth PatientSex_DICOM ViewPosition_DICOM
    Projection MethodProjection Pediatric Modality_DICOM Manufacturer_DICOM PhotometricInterpretation_DICOM
    PixelRepresentation_DICOM PixelAspectRatio_DICOM SpatialResolution_DICOM BitsStored_DICOM
    WindowCenter_DICOM WindowWidth_DICOM Rows_DICOM Columns_DICOM XRayTubeCurrent_DICOM Exposure_DICOM
    ExposureInuAs_DICOM ExposureTime RelativeXRayExposure_DICOM ReportID Report MethodLabel Labels
    Localizations LabelsLocalizationsBySentence labelCUIS LocalizationsCUIS""".split()
)
DEFAULTS = {
    "ViewPosition_DICOM": "POSTEROANTERIOR",
    "MethodProjection": "Manual review of DICOM fields",
    "Pediatric": "No",
    "Modality_DICOM": "CR",
    "PhotometricInterpretation_DICOM": "MONOCHROME2",
    "PixelRepresentation_DICOM": "0",
    "PixelAspectRatio_DICOM": "",
    "SpatialResolution_DICOM": "0.139",
    "BitsStored_DICOM": "12",
    "WindowCenter_DICOM": "2048.0",
    "WindowWidth_DICOM": "4096.0",
    "Rows_DICOM": "20",
    "Columns_DICOM": "24",
    "XRayTubeCurrent_DICOM": "250",
    "Exposure_DICOM": "5",
    "ExposureInuAs_DICOM": "5000.0",
    "ExposureTime": "20",
    "RelativeXRayExposure_DICOM": "",
    "ReportID": "4765777",
    "Report": "sin hallazgos significativos, senos costofrenicos libres.",
    "MethodLabel": "Physician",
    "Localizations": "[]",
    "LabelsLocalizationsBySentence": "[['normal']]",
    "labelCUIS": "[]",
    "LocalizationsCUIS": "[]",
}


def image(
    image_id: str,
    image_dir: str,
    date: str,
    study: str,
    patient: str,
    birth: str,
    sex: str,
    projection: str,
    manufacturer: str,
    labels: str,
    **other: str,
) -> dict[str, str]:
    """One CSV row (every published column; the rest from `DEFAULTS`)."""
    return (
        DEFAULTS
        | other
        | {
            "ImageID": image_id,
            "ImageDir": image_dir,
            "StudyDate_DICOM": date,
            "StudyID": study,
            "PatientID": patient,
            "PatientBirth": birth,
            "PatientSex_DICOM": sex,
            "Projection": projection,
            "Manufacturer_DICOM": manufacturer,
            "Labels": labels,
        }
    )


PHILIPS, IMAGING = "PhilipsMedicalSystems", "ImagingDynamicsCompanyLtd"
ROWS = [
    image(
        "216840111366964012819207061112010307142602253_04-014-084.png",
        "0",
        "20100307",
        "216840111366964012819207061112010307142602253",
        "16520436311117545396627697462627681567",
        "1946.0",
        "M",
        "PA",
        PHILIPS,
        "['pneumonia', ' infiltrates']",
    ),
    image(
        "216840111366964013076187734852011291090445391_00-196-188.png",
        "1.0",
        "20111018",
        "216840111366964013076187734852011291090445391",
        "29489849478521148153478316402098015468",
        "1931.0",
        "F",
        "AP_horizontal",
        IMAGING,
        "['normal']",
        ViewPosition_DICOM="ANTEROPOSTERIOR",
    ),
    image(
        "216840111366964012989926673512011074122523403_00-163-058.png",
        "2",
        "20110315",
        "216840111366964012989926673512011074122523403",
        "29489849478521148153478316402098015468",
        "",
        "F",
        "L",
        IMAGING,
        "",
        ViewPosition_DICOM="LATERAL",
        MethodLabel="RNN_model",
    ),
    image(
        "216840111366964012959786098432011033083840143_00-176-115.png",
        "3",
        "20110202",
        "216840111366964012959786098432011033083840143",
        "9374783412830146127856418236517384821",
        "1960.0",
        "M",
        "PA",
        PHILIPS,
        "['exclude']",
    ),
    image(
        "216840111366964012558082906712009327122220177_00-102-064.png",
        "3",
        "20091123",
        "216840111366964012558082906712009327122220177",
        "9374783412830146127856418236517384821",
        "1960.0",
        "M",
        "EXCLUDE",
        PHILIPS,
        "['normal']",
    ),
    image(
        "216840111366964012339356563862009072111404053_00-043-192.png",
        "50",
        "20090313",
        "216840111366964012339356563862009072111404053",
        "188612301232412350134328345210341242413",
        "1952.0",
        "F",
        "PA",
        PHILIPS,
        "['cardiomegaly', ' aortic elongation', ' suboptimal study']",
    ),
    image(
        "216840111366964012373310883942009117084022290_00-064-025.png",
        "50",
        "20090427",
        "216840111366964012373310883942009117084022290",
        "188612301232412350134328345210341242413",
        "1952.0",
        "F",
        "PA",
        PHILIPS,
        "['unchanged']",
    ),
]


def write_padchest(
    root: Path,
    rows: Sequence[dict[str, str]] = ROWS,
    *,
    gz: bool = False,
    index_column: bool = True,
    columns: Sequence[str] = COLUMNS,
    images: bool = True,
    skip_images: Iterable[str] = (),
) -> Path:
    """Write the CSV (and the images) under ``root``; returns the CSV path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # quotes cells with commas, as pandas' to_csv does
    writer.writerow(([""] if index_column else []) + list(columns))
    for i, r in enumerate(rows):
        writer.writerow(([str(i)] if index_column else []) + [r.get(c, "") for c in columns])
    path = root / (CSV + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0) if gz else text.getvalue().encode())
    if images:
        skip = set(skip_images)
        for r in rows:
            if r["ImageID"] not in skip and r["ImageDir"].replace(".", "").isdigit():
                folder = str(int(float(r["ImageDir"])))  # "0.0" -> "0"
                write_png16(root / folder / r["ImageID"])
    return path


def write_png16(path: Path, shape: tuple[int, int] = (20, 24), bits: int = 12) -> Path:
    """A 16-bit grayscale PNG holding a ``bits``-bit ramp (values above 255, so 8 bits cannot hold it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 2**bits - 1, shape[0] * shape[1]).reshape(shape).astype(np.uint16)
    Image.fromarray(ramp).save(path, format="PNG")
    return path


def bulk_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` valid rows (about three images per patient), for benchmarks."""
    rng = np.random.default_rng(seed)
    labels = ["pneumonia", "infiltrates", "normal", "cardiomegaly", "aortic elongation", "pleural effusion"]
    out = []
    for i in range(n):
        picked = rng.choice(labels, int(rng.integers(1, 4)), replace=False)
        out.append(
            image(
                f"{216840111366964012000000000000000000000000000 + i}_00-{i % 1000:03d}-000.png",
                str(i * 51 // max(n, 1)),
                f"20{10 + i % 7}0{1 + i % 9}1{i % 10}",
                str(9000000 + i // 2),
                str(5000000 + i // 3),
                f"{1930 + i % 60}.0",
                str(rng.choice(["M", "F"])),
                str(rng.choice(["PA", "L", "AP", "AP_horizontal"])),
                str(rng.choice([PHILIPS, IMAGING])),
                str([f" {x}" if j else str(x) for j, x in enumerate(picked)]),
            )
        )
    return out
