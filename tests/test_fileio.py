import pytest

from synthfair.fileio import atomic_write


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write(path, lambda f: f.write(b"one"))
    atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_jsonable_turns_numpy_and_non_finite_values_into_plain_json():
    import numpy as np

    from synthfair.fileio import jsonable

    data = {1: (np.int64(3), np.float32(0.5), float("nan"), np.inf), "b": [np.bool_(True), {"c": "x"}]}
    assert jsonable(data) == {"1": [3, 0.5, None, None], "b": [True, {"c": "x"}]}
