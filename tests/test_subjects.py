import pickle

import numpy as np
import pytest

from synthfair.errors import SynthfairError
from synthfair.subjects import load_subjects, save_subjects, shared_subjects, subject_digests


def test_records_round_trip_and_intersect(tmp_path):
    a = subject_digests(["p1", "p2", "p3", "p2"])
    assert a.dtype == np.uint64 and len(a) == 3 and np.all(a[:-1] < a[1:])
    save_subjects(tmp_path, a)
    assert np.array_equal(load_subjects(tmp_path), a)
    assert shared_subjects(a, subject_digests(["p3", "p9"])) == 1
    assert shared_subjects(a, subject_digests(["q1"])) == 0
    assert load_subjects(tmp_path / "nowhere") is None


@pytest.mark.parametrize(
    "payload, message",
    [
        (lambda f: np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True), "not a subject record"),
        (lambda f: pickle.dump([1, 2], f), "not a subject record"),
        (lambda f: np.save(f, np.arange(4, dtype=np.int32)), "not uint64"),
    ],
)
def test_hostile_records_are_refused_never_unpickled(tmp_path, payload, message):
    with open(tmp_path / "subjects.npy", "wb") as f:
        payload(f)
    with pytest.raises(SynthfairError, match=message):
        load_subjects(tmp_path)
