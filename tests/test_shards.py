"""Untrusted shards: every bad member is a clear error naming the shard and member, never a silent gap."""

from __future__ import annotations

import io
import json
import random
import struct
import tarfile
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthfair.data import release_images
from synthfair.evaluate.samples import iter_shard
from synthfair.release import layout
from synthfair.shards import ShardError, decode_png, shard_samples


def png16(value: int = 1000, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 16-bit pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def write_tar(path, members) -> None:
    """members: (name, bytes) for files, or (name, TarInfo-type, linkname) for others."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            info = tarfile.TarInfo(member[0])
            if len(member) == 2:
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
            else:
                info.type, info.linkname = member[1], member[2]
                tar.addfile(info)


def good(key: str) -> list[tuple[str, bytes]]:
    record = json.dumps({"key": key, "kind": "factual"}).encode()
    return [(f"{key}.png", png16()), (f"{key}.json", record)]


BAD = {
    "symlink": ([("a.png", tarfile.SYMTYPE, "/etc/passwd")], "is a symlink"),
    "hard link": ([("a.png", tarfile.LNKTYPE, "b.png")], "is a hard link"),
    "directory": ([("a.png", tarfile.DIRTYPE, "")], "is a directory"),
    "fifo": ([("a.png", tarfile.FIFOTYPE, "")], "is a FIFO"),
    "folder in name": ([("x/a.png", png16())], "not named key.ext"),
    "duplicate": ([("a.png", png16()), ("a.png", png16())], "appears twice"),
    "bad json": ([("a.png", png16()), ("a.json", b"{not json")], "not a JSON record"),
    "json list": ([("a.png", png16()), ("a.json", b"[1, 2]")], "not an object"),
    "bad png": ([("a.png", b"\x89PNG garbage"), ("a.json", b"{}")], "PNG"),
    "png bomb": ([("a.png", png_header_only(70000, 70000)), ("a.json", b"{}")], "70000x70000 image"),
    "big png": ([("a.png", png_header_only(12000, 12000)), ("a.json", b"{}")], "more than"),
    "empty png": ([("a.png", b""), ("a.json", b"{}")], "PNG"),
    "no png": ([("a.json", b"{}")], "has no png member"),
}


@pytest.mark.parametrize("case", BAD)
def test_every_bad_member_is_an_error_naming_shard_and_member(tmp_path, case):
    members, words = BAD[case]
    tar = tmp_path / "000000.tar"
    write_tar(tar, good("ok") + members)
    with pytest.raises(ShardError) as err:
        list(iter_shard(tar))
    assert str(tar) in str(err.value) and words in str(err.value) and err.value.hint


def test_a_sample_missing_from_its_shard_is_an_error_not_a_gap(tmp_path):
    release = tmp_path / "release"
    layout.tar_path(release, 0).parent.mkdir(parents=True)
    write_tar(layout.tar_path(release, 0), good("k1") + [("k2.png", tarfile.SYMTYPE, "/etc/passwd")])
    with pytest.raises(ShardError, match="is a symlink"):  # every member's header is checked, wanted or not
        release_images(release, pd.DataFrame({"key": ["k1"], "shard": [0]}))
    write_tar(layout.tar_path(release, 0), good("k1"))
    images = release_images(release, pd.DataFrame({"key": ["k1"], "shard": [0]}))
    assert images["k1"][0].shape == (8, 8) and images["k1"][1]["key"] == "k1"
    with pytest.raises(ShardError, match="1 expected samples are missing .*'k2'"):
        release_images(release, pd.DataFrame({"key": ["k1", "k2"], "shard": [0, 0]}))


def test_png_bounds_are_checked_before_decoding():
    assert decode_png(png16(65535), "x").max() == 1.0
    with pytest.raises(ShardError, match="more than"):
        decode_png(png_header_only(70000, 70000), "x")


def test_fuzzed_shards_give_clean_errors(tmp_path):
    """Seeded mutants of a valid shard: each reads or raises a ShardError, never another exception."""
    tar = tmp_path / "valid.tar"
    write_tar(tar, good("a") + good("b") + good("c"))
    valid = tar.read_bytes()
    rng = random.Random(7)
    outcomes = {"read": 0, "refused": 0}
    for i in range(300):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            if rng.random() < 0.2:
                del data[at:]
            elif data:
                data[at] = rng.randrange(256)
        try:
            for _key, parts in shard_samples(io.BytesIO(bytes(data)), f"m{i}.tar"):
                for ext, payload in parts.items():
                    if ext == "png":
                        decode_png(payload, f"m{i}.tar")
            outcomes["read"] += 1
        except ShardError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 300


def test_the_reader_reaches_any_sample_of_a_finalized_release_locally_and_over_http(finalized_release):
    from synthfair.evaluate.samples import read_release
    from synthfair.release import serve
    from synthfair.shards import ShardReader

    everything = read_release(finalized_release)  # before: each shard read in order
    reader = ShardReader.from_shard_index(finalized_release / layout.SHARD_INDEX_FILE)
    assert len(reader) == len(everything.keys) == 24
    for i in (23, 0, 11, 5):  # any order
        key, image, record = reader[i]
        assert key == everything.keys[i] and record == everything.records[i]
        assert np.array_equal(image, everything.images[i])
    shard, position = reader.locate(13)
    assert reader.sample(shard, everything.keys[13])[0] == reader.keys(shard)[position]
    with pytest.raises(IndexError):
        reader[24]
    with serve(finalized_release) as server:
        remote = layout.shard_reader(server.url)
        assert len(remote) == 24 and remote[17][0] == everything.keys[17]
        assert np.array_equal(remote[17][1], everything.images[17])


BAD_ENTRIES = [
    ({"url": "../x.tar", "nsamples": 1}, "relative url"),
    ({"url": "/etc/passwd", "nsamples": 1}, "relative url"),
    ({"url": "shards/000000.tar", "nsamples": -1}, "nsamples >= 0"),
]


def test_a_shard_index_that_disagrees_or_leaves_the_release_is_refused(finalized_release):
    from synthfair.shards import ShardReader

    index = json.loads((finalized_release / layout.SHARD_INDEX_FILE).read_text())
    path = finalized_release / "bad.json"  # beside the shards its URLs are relative to
    try:
        for entry, words in BAD_ENTRIES:
            path.write_text(json.dumps({**index, "shardlist": [entry]}))
            with pytest.raises(ShardError, match=words):
                ShardReader.from_shard_index(path)
        wrong = {**index["shardlist"][0], "nsamples": 99}
        path.write_text(json.dumps({**index, "shardlist": [wrong]}))
        with pytest.raises(ShardError, match="holds 7 samples, its list says 99"):
            ShardReader.from_shard_index(path)[0]
        path.write_text("[]")
        with pytest.raises(ShardError, match="not a wids shard index"):
            ShardReader.from_shard_index(path)
    finally:
        path.unlink(missing_ok=True)
