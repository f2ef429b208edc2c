import hashlib
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthfair import shardjob
from synthfair.errors import SynthfairError

STATUS = pa.schema([("key", pa.string()), ("status", pa.string())])


def _samples(shard, n=5, fail=()):
    for i in range(n):
        key = f"s{shard}_{i}"
        if i in fail:
            yield {"key": key, "status": "failed"}, None
        else:
            yield {"key": key, "status": "ok"}, {"__key__": key, "txt": f"sample {key}".encode() * 50}


def _summarize(written):
    return {"shard": written.shard, "sha256": written.sha256, "bytes": written.filesize}


def _files(out):
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def test_a_shard_is_its_tar_status_and_stats_written_last(tmp_path):
    (tmp_path / "shards").mkdir()
    stats = shardjob.write_shard(tmp_path, 0, _samples(0, fail=(2,)), STATUS, _summarize)
    tar = shardjob.tar_path(tmp_path, 0)
    assert stats == json.loads(shardjob.stats_path(tmp_path, 0).read_text())
    assert (
        stats["sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest()
        and stats["bytes"] == tar.stat().st_size
    )
    with tarfile.open(tar) as members:
        assert [m.name for m in members] == [f"s0_{i}.txt" for i in (0, 1, 3, 4)]  # the failed one: no member
        assert {m.mtime for m in members} == {0}
    statuses = pq.read_table(shardjob.status_path(tmp_path, 0)).to_pylist()
    assert [s["status"] for s in statuses] == ["ok", "ok", "failed", "ok", "ok"]  # failures kept
    assert shardjob.is_done(tmp_path, 0) and not list((tmp_path / "shards").glob(".*"))


def test_the_committer_writes_the_same_bytes_and_stats_in_order(tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    for out in (one, many):
        (out / "shards").mkdir(parents=True)
    expected = [shardjob.write_shard(one, s, _samples(s), STATUS, _summarize) for s in range(4)]
    with shardjob.Committer() as committer:
        for s in range(4):
            committer.write(many, s, _samples(s), STATUS, _summarize)
    assert committer.stats == expected
    assert _files(one) == _files(many)


def test_a_failed_shard_keeps_the_previous_commit_and_leaves_only_temporaries(tmp_path):
    (tmp_path / "shards").mkdir()

    def broken(shard):
        yield from _samples(shard, n=2)
        raise RuntimeError("the engine died")

    with pytest.raises(RuntimeError, match="engine died"), shardjob.Committer() as committer:
        committer.write(tmp_path, 0, _samples(0), STATUS, _summarize)
        committer.write(tmp_path, 1, broken(1), STATUS, _summarize)
    assert shardjob.is_done(tmp_path, 0) and not shardjob.is_done(tmp_path, 1)
    assert not shardjob.tar_path(tmp_path, 1).exists()
    # a killed run's temporary is removed when the shard is redone
    leftover = tmp_path / "shards" / ".000001.tar.abcd1234.tmp"
    leftover.write_bytes(b"half a tar")
    shardjob.write_shard(tmp_path, 1, _samples(1), STATUS, _summarize)
    assert not leftover.exists() and shardjob.is_done(tmp_path, 1)


def test_a_commit_that_fails_is_raised_not_lost(tmp_path):
    (tmp_path / "shards").mkdir()

    def summarize(written):
        raise OSError(f"no space left for shard {written.shard}")

    with pytest.raises(OSError, match="shard 0"), shardjob.Committer() as committer:
        committer.write(tmp_path, 0, _samples(0), STATUS, summarize)
    assert not shardjob.is_done(tmp_path, 0)
    with pytest.raises(OSError, match="shard 0"), shardjob.Committer() as committer:
        committer.write(tmp_path, 0, _samples(0), STATUS, summarize)
        committer.write(tmp_path, 1, _samples(1), STATUS, _summarize)  # hears of shard 0's failure
    assert not shardjob.is_done(tmp_path, 1) and not list((tmp_path / "shards").glob(".*.tmp"))


def test_a_claim_refuses_another_request_naming_what_differs(tmp_path):
    shardjob.claim(tmp_path / "cache.json", {"size": 64, "seed": 1}, "cache")
    shardjob.claim(tmp_path / "cache.json", {"size": 64, "seed": 1}, "cache")  # the same: resumes
    with pytest.raises(SynthfairError, match="another seed"):
        shardjob.claim(tmp_path / "cache.json", {"size": 64, "seed": 2}, "cache")


def test_members_are_readable_by_webdataset(tmp_path):
    import webdataset as wds

    (tmp_path / "shards").mkdir()
    shardjob.write_shard(tmp_path, 0, _samples(0), STATUS, _summarize)
    url = str(shardjob.tar_path(tmp_path, 0))
    keys = [s["__key__"] for s in wds.WebDataset(url, shardshuffle=False)]
    assert keys == [f"s0_{i}" for i in range(5)]
