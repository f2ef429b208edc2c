"""Which subjects a trained network has seen: a compact, comparable record kept beside its weights.

Every trained network (the image model, a guidance classifier, a pseudo-oracle) writes ``subjects.npy``: the
sorted, unique first 8 bytes (big-endian uint64) of sha256(patient key) of every patient in its training
split. 8 bytes per patient (200 kB for 25,000), no names in clear, and two records intersect exactly
(collisions are ~1e-10 at this size). The evaluator uses them to check that the oracles judging a model
never saw the subjects of the classifiers that trained or guided it (`synthfair.evaluate.independence`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from synthfair.errors import SynthfairError
from synthfair.fileio import atomic_write

SUBJECTS_FILE = "subjects.npy"
MAX_SUBJECTS = 50_000_000  # 400 MB: a larger file is not a subject record


def subject_digests(patient_keys: Iterable[str]) -> np.ndarray:
    """Sorted unique uint64 digests of patient keys."""
    digests = [int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "big") for k in patient_keys]
    return np.unique(np.array(digests, dtype=np.uint64))


def save_subjects(directory: str | Path, digests: np.ndarray) -> Path:
    path = Path(directory) / SUBJECTS_FILE
    atomic_write(path, lambda f: np.save(f, np.asarray(digests, dtype=np.uint64), allow_pickle=False))
    return path


def load_subjects(directory: str | Path) -> np.ndarray | None:
    """The subject record of a network directory, or None if it has none. Never unpickles."""
    path = Path(directory) / SUBJECTS_FILE
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_SUBJECTS * 8 + 1024:
        raise SynthfairError(
            f"{path} is {path.stat().st_size} bytes, larger than any subject record",
            "remove it, or re-create it by training the network again",
        )
    try:
        digests = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise SynthfairError(
            f"{path} is not a subject record: {err}", "re-create it by training again"
        ) from None
    if digests.dtype != np.uint64 or digests.ndim != 1:
        raise SynthfairError(
            f"{path} holds {digests.dtype} of shape {digests.shape}, not uint64 digests",
            "re-create it by training the network again",
        )
    return digests


def shared_subjects(a: np.ndarray, b: np.ndarray) -> int:
    """How many subjects two records share."""
    return int(np.intersect1d(a, b, assume_unique=True).size)
