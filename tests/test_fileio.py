import os
import stat
from pathlib import Path

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


def test_atomic_write_honours_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.json", lambda f: f.write(b"{}"))
        assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644  # readable by a web server
        os.umask(0o077)
        atomic_write(tmp_path / "private.json", lambda f: f.write(b"{}"))
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_remove_temporaries_takes_only_what_atomic_write_leaves(tmp_path):
    from synthfair.fileio import remove_temporaries

    (tmp_path / "sub").mkdir()
    left = [tmp_path / ".index.json.k3j_x9a2.tmp", tmp_path / "sub" / ".a.parquet.abcdefgh.tmp"]
    kept = [tmp_path / ".hidden.tmp", tmp_path / "data.tmp", tmp_path / "index.json"]
    for path in left + kept:
        path.write_bytes(b"x")
    assert remove_temporaries(tmp_path) == 1 and not left[0].exists() and left[1].exists()
    assert remove_temporaries(tmp_path, recursive=True) == 1 and not left[1].exists()
    assert all(path.exists() for path in kept)


def test_hashing_writer_digests_what_was_written(tmp_path):
    import hashlib

    from synthfair.fileio import HashingWriter

    def write(f):
        hashed = HashingWriter(f, "sha256", "md5")
        for block in (b"abc", b"", b"x" * 70000):
            hashed.write(block)
        write.digests = hashed.hexdigests()

    atomic_write(tmp_path / "t.bin", write)
    data = (tmp_path / "t.bin").read_bytes()
    assert write.digests == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def test_a_staged_file_is_in_place_only_once_committed(tmp_path):
    from synthfair.fileio import staged_write

    (tmp_path / "f.bin").write_bytes(b"old")
    staged = staged_write(tmp_path / "f.bin", lambda f: f.write(b"new"))
    assert (tmp_path / "f.bin").read_bytes() == b"old"  # other work happens here
    assert [p.name for p in tmp_path.glob(".f.bin.*.tmp")] == [Path(staged.tmp).name]
    staged.commit()
    assert (tmp_path / "f.bin").read_bytes() == b"new" and not list(tmp_path.glob("*.tmp"))
    staged_write(tmp_path / "f.bin", lambda f: f.write(b"newer")).discard()
    assert (tmp_path / "f.bin").read_bytes() == b"new" and not list(tmp_path.glob(".*.tmp"))

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        staged_write(tmp_path / "f.bin", fail)
    assert not list(tmp_path.glob(".*.tmp"))


def test_hashing_writer_raises_the_background_write_error_and_refuses_writes_after_its_digests(tmp_path):
    from synthfair.fileio import HashingWriter

    class Full:
        def write(self, data):
            raise OSError("No space left on device")

    hashed = HashingWriter(Full(), "sha256", block=4)
    with pytest.raises(OSError, match="No space left"), hashed:
        for _ in range(50):  # more blocks than the queue holds: the writer never waits forever
            hashed.write(b"12345678")
        hashed.hexdigests()
    with open(tmp_path / "t.bin", "wb") as f, HashingWriter(f, "sha256") as hashed:
        hashed.write(bytearray(b"abc"))
        hashed.hexdigests()
        with pytest.raises(ValueError, match="after hexdigests"):
            hashed.write(b"more")
    assert (tmp_path / "t.bin").read_bytes() == b"abc"
