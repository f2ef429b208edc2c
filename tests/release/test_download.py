"""`synthfair download` against a release served by a local HTTP server (with byte ranges) and from disk."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synthfair.cli.main import app, run
from synthfair.errors import SynthfairError
from synthfair.fileio import file_digests, sha256_file
from synthfair.release import download, plan_download, read_subset, serve
from synthfair.release.httpserver import RangeRequestHandler, parse_range

download_module = importlib.import_module("synthfair.release.download")  # the package exports `download()`
SHARDS = 4
SAMPLES_PER_SHARD = 3
METADATA = ["manifest.json", "SHA256SUMS", "samples.parquet", "shardindex.json", "DATASET_CARD.md"]


# --- a tiny release in the real on-disk layout -----------------------------------------------------------


def write_shard(path: Path, shard: int, rng: np.random.Generator) -> list[str]:
    """A WebDataset tar of random "PNG" bytes and JSON records; returns its sample keys."""
    keys = [f"s{shard:03d}_{i:03d}" for i in range(SAMPLES_PER_SHARD)]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key in keys:
            for ext, data in (("png", rng.bytes(int(rng.integers(3000, 9000)))), ("json", b'{"k": 1}')):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    return keys


def make_release(root: Path, seed: int = 0) -> Path:
    """shards/NNNNNN.tar (+ the per-shard files users skip), manifest.json, samples.parquet, SHA256SUMS..."""
    rng = np.random.default_rng(seed)
    (root / "shards").mkdir(parents=True)
    entries, keys, shard_of = [], [], []
    for s in range(SHARDS):
        tar = root / "shards" / f"{s:06d}.tar"
        shard_keys = write_shard(tar, s, rng)
        (root / "shards" / f"{s:06d}_stats.json").write_text("{}")
        pq.write_table(pa.table({"key": shard_keys}), root / "shards" / f"{s:06d}.parquet")
        digests = file_digests(tar, "sha256")
        entries.append(
            {
                "url": f"shards/{s:06d}.tar",
                "sha256": digests["sha256"],
                "filesize": tar.stat().st_size,
                "nsamples": len(shard_keys),
                "failed": 0,
                "first_key": shard_keys[0],
                "last_key": shard_keys[-1],
            }
        )
        keys += shard_keys
        shard_of += [s] * len(shard_keys)
    manifest = {
        "schema": "synthfair.release/1",
        "dataset_version": "0.1.0",
        "nsamples": len(keys),
        "bytes": sum(e["filesize"] for e in entries),
        "shards": entries,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    pq.write_table(pa.table({"key": keys, "shard": pa.array(shard_of, pa.int32())}), root / "samples.parquet")
    (root / "shardindex.json").write_text(json.dumps({"__kind__": "wids-shard-index-v1", "shardlist": []}))
    (root / "DATASET_CARD.md").write_text("# SynthFair (test)\n")
    (root / "plan.parquet").write_bytes(b"not needed by users")
    listed = ["manifest.json", "samples.parquet", "shardindex.json", "DATASET_CARD.md", "plan.parquet"]
    listed += [e["url"] for e in entries] + [f"shards/{s:06d}.parquet" for s in range(SHARDS)]
    sums = "".join(f"{sha256_file(root / name)}  {name}\n" for name in sorted(listed))
    (root / "SHA256SUMS").write_text(sums)
    return root


def tar_path(shard: int) -> str:
    return f"shards/{shard:06d}.tar"


class Corrupting(RangeRequestHandler):
    """Flips the first byte of ``corrupt`` paths: for the first ``times`` responses (None: always)."""

    corrupt: dict[str, int | None] = {}

    def body(self, path, start, end):
        name = self.path.lstrip("/")
        left = self.corrupt.get(name, 0)
        blocks = super().body(path, start, end)
        if name not in self.corrupt or left == 0:
            yield from blocks
            return
        if left is not None:
            self.corrupt[name] = left - 1
        first = next(blocks)
        yield bytes([first[0] ^ 0xFF]) + first[1:]
        yield from blocks


class NoRanges(RangeRequestHandler):
    ranges = False


@pytest.fixture
def release(tmp_path):
    return make_release(tmp_path / "release")


@pytest.fixture
def server(release):
    with serve(release) as srv:
        yield srv


def served(server, path: str | None = None, method: str = "GET"):
    return [s for s in server.wait_idle() if s.method == method and (path is None or s.path == path)]


def assert_complete(dest: Path, release: Path, shards=range(SHARDS), committed=True):
    for s in shards:
        assert sha256_file(dest / tar_path(s)) == sha256_file(release / tar_path(s))
    for name in METADATA if committed else METADATA[2:]:
        if name != "SHA256SUMS":
            assert (dest / name).read_bytes() == (release / name).read_bytes()
    assert not list(dest.rglob("*.part"))
    if committed:  # what was downloaded verifies with the standard tool, without flags
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        listed = {line.split("  ", 1)[1] for line in (dest / "SHA256SUMS").read_text().splitlines()}
        assert listed == {*METADATA[:1], *METADATA[2:], *(tar_path(s) for s in shards)}


# --- tests ------------------------------------------------------------------------------------------------


def test_full_download_over_http(server, release, tmp_path):
    dest = tmp_path / "dest"
    seen = []
    result = download(server.url, dest, workers=3, on_bytes=seen.append)
    assert result.ok and not result.skipped and not result.absent
    assert sorted(result.fetched) == sorted(METADATA + [tar_path(s) for s in range(SHARDS)])
    assert_complete(dest, release)
    assert not (dest / "plan.parquet").exists() and not list(dest.glob("shards/*_stats.json"))
    shard_bytes = sum((release / tar_path(s)).stat().st_size for s in range(SHARDS))
    assert sum(s.sent for s in served(server)) == result.bytes_fetched
    assert sum(seen) == result.bytes_fetched - (release / "manifest.json").stat().st_size
    assert shard_bytes < sum(seen)


def test_second_run_fetches_nothing(server, release, tmp_path):
    dest = tmp_path / "dest"
    download(server.url, dest)
    server.wait_idle()
    server.served.clear()
    result = download(server.url, dest)
    assert result.ok and result.fetched == () and result.bytes_fetched == 0
    assert len(result.skipped) == len(METADATA) + SHARDS
    assert [s.path for s in server.wait_idle()] == [
        "manifest.json"
    ]  # read to see what is current, nothing else


def test_resume_requests_only_the_missing_bytes(server, release, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "CHUNK", 4096)  # several range requests for the rest of the file
    dest = tmp_path / "dest"
    download(server.url, dest)
    data = (release / tar_path(1)).read_bytes()
    (dest / tar_path(1)).unlink()
    (dest / (tar_path(1) + ".part")).write_bytes(data[:5000])
    server.wait_idle()
    server.served.clear()
    plan = plan_download(server.url, dest)
    assert [(f.path, f.state, f.remaining) for f in plan.to_fetch] == [
        (tar_path(1), "partial", len(data) - 5000)
    ]
    result = download(server.url, dest)
    assert result.ok and result.fetched == (tar_path(1),) and result.bytes_fetched == len(data) - 5000
    requests = served(server, tar_path(1))
    assert len(requests) > 1 and all(r.status == 206 for r in requests)
    assert requests[0].start == 5000 and sum(r.sent for r in requests) == len(data) - 5000
    assert (dest / tar_path(1)).read_bytes() == data


def test_resume_from_a_server_without_ranges_starts_over(release, tmp_path):
    dest = tmp_path / "dest"
    data = (release / tar_path(0)).read_bytes()
    (dest / "shards").mkdir(parents=True)
    (dest / (tar_path(0) + ".part")).write_bytes(data[:1000])
    with serve(release, handler=NoRanges) as server:
        result = download(server.url, dest)
    assert result.ok
    assert_complete(dest, release)
    assert [r.status for r in served(server, tar_path(0))][-1] == 200  # the whole file, from the start


def test_part_larger_than_the_file_is_discarded(server, release, tmp_path):
    dest = tmp_path / "dest"
    size = (release / tar_path(2)).stat().st_size
    (dest / "shards").mkdir(parents=True)
    (dest / (tar_path(2) + ".part")).write_bytes(b"x" * (size + 10))
    assert download(server.url, dest).ok
    assert_complete(dest, release)
    assert [(r.status, r.start, r.sent) for r in served(server, tar_path(2))] == [(200, 0, size)]


def test_wrong_part_is_refetched_from_scratch(server, release, tmp_path):
    """A .part whose bytes are wrong is only found out at the end: the second attempt starts over."""
    dest = tmp_path / "dest"
    (dest / "shards").mkdir(parents=True)
    (dest / (tar_path(2) + ".part")).write_bytes(b"x" * 100)
    assert download(server.url, dest).ok
    assert_complete(dest, release)
    assert [r.status for r in served(server, tar_path(2))] == [206, 200]


def test_corrupted_once_is_fetched_again(release, tmp_path):
    Corrupting.corrupt = {tar_path(1): 1}
    with serve(release, handler=Corrupting) as server:
        result = download(server.url, tmp_path / "dest")
    assert result.ok
    assert_complete(tmp_path / "dest", release)
    assert len(served(server, tar_path(1))) == 2 and len(served(server, tar_path(0))) == 1


def test_persistently_corrupted_shard_fails_and_is_not_kept(release, tmp_path, capsys):
    Corrupting.corrupt = {tar_path(2): None}
    dest = tmp_path / "dest"
    with serve(release, handler=Corrupting) as server:
        result = download(server.url, dest)
        assert [f.path for f in result.failed] == [tar_path(2)]
        failure = result.failed[0]
        assert failure.expected_sha256 == sha256_file(release / tar_path(2))
        assert failure.got_sha256 != failure.expected_sha256 and "mismatch" in failure.reason
        assert not (dest / tar_path(2)).exists() and not (dest / (tar_path(2) + ".part")).exists()
        assert_complete(dest, release, shards=[0, 1, 3], committed=False)  # a failed run commits no manifest
        assert not (dest / "manifest.json").exists()
        with pytest.raises(SystemExit) as exit_:  # the CLI exits non-zero, names the file and says re-run
            run(app, ["download", server.url, "--dest", str(dest)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert tar_path(2) in err and failure.expected_sha256 in err and "re-run" in err


def test_corrupted_metadata_fails_against_sha256sums(release, tmp_path):
    Corrupting.corrupt = {"samples.parquet": None}
    with serve(release, handler=Corrupting) as server:
        result = download(server.url, tmp_path / "dest")
    assert [f.path for f in result.failed] == ["samples.parquet"]
    assert not (tmp_path / "dest" / "samples.parquet").exists()


def test_verify_rehashes_and_refetches_a_damaged_file(server, release, tmp_path):
    dest = tmp_path / "dest"
    download(server.url, dest)
    shard = dest / tar_path(3)
    shard.write_bytes(b"\0" * shard.stat().st_size)  # same size: trusted unless re-hashed
    assert download(server.url, dest).fetched == ()
    result = download(server.url, dest, verify_existing=True)
    assert result.fetched == (tar_path(3),)
    assert_complete(dest, release)


def test_files_from_another_release_are_hashed(server, release, tmp_path):
    """Without a matching DEST/manifest.json, present files are not trusted on their size alone."""
    dest = tmp_path / "dest"
    download(server.url, dest)
    (dest / "manifest.json").unlink()
    (dest / tar_path(0)).write_bytes(b"\0" * (dest / tar_path(0)).stat().st_size)
    result = download(server.url, dest)
    assert set(result.fetched) == {tar_path(0), "manifest.json", "SHA256SUMS"}  # SHA256SUMS: nothing vouches
    assert_complete(dest, release)


@pytest.mark.parametrize("kind", ["directory", "json", "parquet"])
def test_subset_fetches_only_its_shards(server, release, tmp_path, kind):
    subset = tmp_path / "subset"
    subset.mkdir()
    if kind == "parquet":
        pq.write_table(pa.table({"key": ["a", "b", "c"], "shard": [3, 1, 3]}), subset / "subset.parquet")
        path = subset / "subset.parquet"
    else:
        (subset / "subset.json").write_text(json.dumps({"shards": [3, 1]}))
        path = subset if kind == "directory" else subset / "subset.json"
    assert read_subset(path) == [1, 3]
    dest = tmp_path / "dest"
    result = download(server.url, dest, subset=path)
    assert result.ok and result.plan.shards == (1, 3)
    assert_complete(dest, release, shards=[1, 3])
    assert sorted(s.path for s in served(server) if s.path.startswith("shards/")) == [
        tar_path(1),
        tar_path(3),
    ]


def test_subset_with_unknown_shards_names_them(server, tmp_path):
    (tmp_path / "subset.json").write_text(json.dumps({"shards": [1, 7, 9]}))
    with pytest.raises(SynthfairError, match="7, 9"):
        download(server.url, tmp_path / "dest", subset=tmp_path / "subset.json")


def test_dry_run_writes_nothing_and_reports_bytes(server, release, tmp_path):
    dest = tmp_path / "dest"
    result = download(server.url, dest, dry_run=True)
    assert not dest.exists()
    assert [s.path for s in server.wait_idle()] == ["manifest.json"]
    sizes = [(release / tar_path(s)).stat().st_size for s in range(SHARDS)]
    manifest_size = (release / "manifest.json").stat().st_size
    assert result.plan.bytes_to_fetch == sum(sizes) + manifest_size
    assert result.fetched == () and len(result.planned) == len(METADATA) + SHARDS

    (dest / "shards").mkdir(parents=True)
    (dest / (tar_path(0) + ".part")).write_bytes((release / tar_path(0)).read_bytes()[:100])
    before = sorted(p.name for p in dest.rglob("*"))
    output = CliRunner().invoke(app, ["download", server.url, "--dest", str(dest), "--dry-run"])
    assert output.exit_code == 0, output.output
    assert f"{sizes[0] / 1e6 - 100 / 1e6:.2f} of {sizes[0] / 1e6:.2f} MB left (partial)" in output.output
    assert "1 partly downloaded" in output.output
    assert sorted(p.name for p in dest.rglob("*")) == before


@pytest.mark.parametrize("as_uri", [False, True])
def test_local_path_and_file_url(release, tmp_path, as_uri):
    source = release.as_uri() if as_uri else str(release)
    result = download(source, tmp_path / "dest", workers=2)
    assert result.ok
    assert_complete(tmp_path / "dest", release)


def test_missing_optional_metadata_is_noted(release, tmp_path):
    (release / "DATASET_CARD.md").unlink()
    result = download(release, tmp_path / "dest")
    assert result.ok and result.absent == ("DATASET_CARD.md",)


def test_missing_shard_is_a_failure(release, tmp_path):
    (release / tar_path(1)).unlink()
    with serve(release) as server:
        result = download(server.url, tmp_path / "dest")
    assert [f.path for f in result.failed] == [tar_path(1)] and "not found" in result.failed[0].reason


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "no manifest.json at"),
        (b"{not json", "is not JSON"),
        (
            json.dumps({"schema": "synthfair.release/0", "shards": []}).encode(),
            "expected 'synthfair.release/1'",
        ),
        (
            json.dumps({"schema": "synthfair.release/1", "shards": [{"url": "../x.tar"}]}).encode(),
            "shards\\[0\\]",
        ),
    ],
)
def test_bad_manifest_names_the_url(tmp_path, content, match):
    bad = tmp_path / "bad"
    bad.mkdir()
    if content is not None:
        (bad / "manifest.json").write_bytes(content)
    with serve(bad) as server, pytest.raises(SynthfairError, match=match) as info:
        download(server.url, tmp_path / "dest")
    assert server.url in info.value.message and info.value.hint


def test_path_outside_the_release_is_refused(release, tmp_path):
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["shards"][0]["url"] = "../../000000.tar"
    (release / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SynthfairError, match="not a path inside the release"):
        download(release, tmp_path / "dest")


def test_s3_without_s3fs_says_what_to_install(tmp_path):
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed")
    except ImportError:
        pass
    with pytest.raises(SynthfairError) as info:
        download("s3://bucket/release", tmp_path / "dest")
    assert "pip install s3fs" in info.value.hint


def test_cli_downloads_and_reports(server, release, tmp_path):
    dest = tmp_path / "dest"
    result = CliRunner().invoke(app, ["download", server.url, "--dest", str(dest), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert f"{len(METADATA) + SHARDS} files fetched" in result.output
    assert_complete(dest, release)
    again = CliRunner().invoke(app, ["download", server.url, "--dest", str(dest), "--verify"])
    assert again.exit_code == 0 and "0 files fetched" in again.output


@pytest.mark.parametrize(
    "header, size, span",
    [
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=90-", 100, (90, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=95-200", 100, (95, 100)),
        ("bytes=100-", 100, (100, 100)),  # unsatisfiable
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
        (None, 100, None),
    ],
)
def test_parse_range(header, size, span):
    assert parse_range(header, size) == span


def test_a_garbage_sha256sums_is_an_error_and_nothing_unverified_is_kept(release, tmp_path):
    (release / "SHA256SUMS").write_text("this is not a checksum list\n")
    (release / "samples.parquet").write_bytes(b"fake")
    with serve(release) as server, pytest.raises(SynthfairError, match=r"SHA256SUMS, line 1"):
        download(server.url, tmp_path / "dest")
    assert not (tmp_path / "dest" / "samples.parquet").exists()


def test_metadata_that_sha256sums_does_not_list_is_not_fetched(release, tmp_path):
    sums = release / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if "samples" not in line))
    with serve(release) as server:
        result = download(server.url, tmp_path / "dest")
    assert [f.path for f in result.failed] == ["samples.parquet"] and "does not list it" in result.failed[
        0
    ].reason
    assert not (tmp_path / "dest" / "samples.parquet").exists()


def test_a_broken_remote_manifest_keeps_the_verified_local_copy(server, release, tmp_path):
    dest = tmp_path / "dest"
    assert download(server.url, dest).ok
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64  # a broken manifest: its shard 0 can never verify
    (release / "manifest.json").write_text(json.dumps(manifest))
    sums = (release / "SHA256SUMS").read_text().splitlines()
    digest = sha256_file(release / "manifest.json")
    fixed = [f"{digest}  manifest.json" if line.endswith("  manifest.json") else line for line in sums]
    (release / "SHA256SUMS").write_text("\n".join(fixed) + "\n")
    result = download(server.url, dest)
    assert [f.path for f in result.failed] == [tar_path(0)]
    after = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before  # shard, manifest.json and SHA256SUMS as they were


class Dropping(RangeRequestHandler):
    """Sends at most ``limit`` bytes per response, then closes the connection (a flaky proxy)."""

    limit = 3000

    def body(self, path, start, end):
        left = self.limit
        for block in super().body(path, start, end):
            yield block[:left]
            left -= len(block[:left])
            if left <= 0:
                self.close_connection = True
                return


def test_a_server_that_drops_every_response_still_completes(release, tmp_path, monkeypatch):
    """Scaled down (a server dropping after 1 MB, reads of 8 MB): what arrives is kept and read on from,
    in smaller range requests once a whole one is dropped."""
    for name, value in (("CHUNK", 4096), ("MIN_CHUNK", 1024), ("STREAM_READ", 1024)):
        monkeypatch.setattr(download_module, name, value)
    with serve(release, handler=Dropping) as server:
        result = download(server.url, tmp_path / "dest", workers=1)
        assert result.ok, result.failed
    assert_complete(tmp_path / "dest", release)


@pytest.mark.parametrize("size", [-1, True, "10"])
def test_a_manifest_with_a_bad_filesize_is_refused(release, tmp_path, size):
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["shards"][1]["filesize"] = size
    (release / "manifest.json").write_text(json.dumps(manifest))
    with serve(release) as server, pytest.raises(SynthfairError, match=r"shards\[1\] lacks .* filesize >= 0"):
        download(server.url, tmp_path / "dest")
