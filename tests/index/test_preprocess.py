import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from source_files import phantom_row, write_phantom_source
from synthfair.errors import SynthfairError
from synthfair.images.resize import fit_image
from synthfair.index.ingest import ingest
from synthfair.index.preprocess import PreprocessConfig, iter_cache, preprocess


@pytest.fixture
def index_dir(tmp_path):
    write_phantom_source(tmp_path / "src", [phantom_row(i) for i in range(7)])
    ingest("phantom", tmp_path / "src", tmp_path / "index")
    return tmp_path / "index"


def _tars(cache):
    return {p.name: p.read_bytes() for p in sorted((cache / "shards").glob("*.tar"))}


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_fit_image_makes_a_square_of_the_size(fit):
    image = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    out = fit_image(image, 16, fit)
    assert out.shape == (16, 16) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    if fit == "pad":  # the narrow side is padded with black
        assert out[:, 0].max() == 0 and out[:, 8].min() > 0


def test_shards_hold_16_bit_images_and_covariates(index_dir, tmp_path):
    result = preprocess(index_dir, tmp_path / "cache", PreprocessConfig(size=16, shard_size=3))
    assert (result.shards, result.images, result.processed, result.failed) == (3, 7, 7, 0)
    samples = list(iter_cache(tmp_path / "cache"))
    assert [s["key"] for s in samples] == sorted(s["key"] for s in samples)
    first = samples[0]
    assert first["image"].shape == (16, 16)
    assert (
        len(np.unique(first["image"])) > 64
    )  # 16-bit precision survives (webdataset's PIL decode would not)
    assert first["meta"]["covariates"]["sex"] == "female" and first["meta"]["bits"] == 16
    assert first["meta"]["findings"]["cardiomegaly"] == 0 and first["meta"]["original_size"] == [40, 30]
    assert {s["meta"]["split"] for s in iter_cache(tmp_path / "cache", split="test")} == {"test"}
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert [s["nsamples"] for s in manifest["shards"]] == [3, 3, 1]


def test_bytes_do_not_depend_on_workers_and_resume_redoes_only_missing_shards(index_dir, tmp_path):
    preprocess(index_dir, tmp_path / "one", PreprocessConfig(size=16, shard_size=3, workers=1))
    preprocess(index_dir, tmp_path / "two", PreprocessConfig(size=16, shard_size=3, workers=2))
    assert _tars(tmp_path / "one") == _tars(tmp_path / "two")
    (tmp_path / "two" / "shards" / "000001_stats.json").unlink()  # as if killed while writing shard 1
    (tmp_path / "two" / "shards" / "000001.tar").write_bytes(b"partial")
    leftover = tmp_path / "two" / "shards" / ".000001.tar.ab12cd34.tmp"  # a kill inside atomic_write
    leftover.write_bytes(b"half a shard")
    done = (tmp_path / "two" / "shards" / "000000.tar").stat().st_mtime_ns
    result = preprocess(index_dir, tmp_path / "two", PreprocessConfig(size=16, shard_size=3, workers=1))
    assert result.processed == 3
    assert (tmp_path / "two" / "shards" / "000000.tar").stat().st_mtime_ns == done
    assert _tars(tmp_path / "one") == _tars(tmp_path / "two") and not leftover.exists()


def test_unreadable_images_are_recorded_not_dropped(index_dir, tmp_path):
    (tmp_path / "src" / "images" / "phantom_s0_000002.png").write_bytes(b"not a png")
    result = preprocess(index_dir, tmp_path / "cache", PreprocessConfig(size=16, shard_size=10))
    assert result.failed == 1
    status = pq.read_table(tmp_path / "cache" / "shards" / "000000.parquet").to_pandas()
    assert len(status) == 7
    bad = status.set_index("key").loc["phantom_s0_000002"]
    assert bad["status"] == "failed" and "phantom_s0_000002.png" in bad["error"]
    assert len(list(iter_cache(tmp_path / "cache"))) == 6


def test_another_config_in_the_same_cache_is_refused(index_dir, tmp_path):
    preprocess(index_dir, tmp_path / "cache", PreprocessConfig(size=16))
    with pytest.raises(SynthfairError, match="holds a cache made with another config"):
        preprocess(index_dir, tmp_path / "cache", PreprocessConfig(size=32))
    with pytest.raises(SynthfairError, match="crop, pad or stretch"):
        PreprocessConfig(fit="zoom")


def test_dicom_sources_go_through_with_display_intensities(tmp_path):
    """VinDr-like DICOMs (MONOCHROME1, JPEG 2000, 12-16 bits) decoded once into 16-bit shards."""
    from dicom_files import anatomy
    from vindr_files import image_id, write_vindr_source

    write_vindr_source(tmp_path / "vindr", n_train=4, n_test=2, shape=(32, 40))
    ingest("vindr", tmp_path / "vindr", tmp_path / "index")
    result = preprocess(tmp_path / "index", tmp_path / "cache", PreprocessConfig(size=16, fit="stretch"))
    assert (result.images, result.failed) == (6, 0)
    samples = {s["key"]: s for s in iter_cache(tmp_path / "cache")}
    mono1 = samples[f"vindr_{image_id('train', 0)}"]  # MONOCHROME1, 12 bits
    plain = samples[f"vindr_{image_id('train', 2)}"]  # MONOCHROME2, 12 bits, same anatomy
    assert (mono1["meta"]["photometric"], mono1["meta"]["bits"]) == ("MONOCHROME1", 12)
    np.testing.assert_allclose(mono1["image"], 1.0 - plain["image"], atol=2 / 65535)
    j2k = samples[f"vindr_{image_id('train', 1)}"]  # JPEG 2000, 16 bits stored, MONOCHROME2
    expected = fit_image(anatomy((32, 40), bits=16) / 65535.0, 16, "stretch")
    np.testing.assert_allclose(j2k["image"], expected, atol=1 / 65535)


WORKER_OF_A_KILLED_PARENT = """
import multiprocessing as mp, os, signal, sys, time
from synthfair.environment import die_with_parent

def pid(_):
    return os.getpid()

if __name__ == "__main__":
    pool = mp.get_context("spawn").Pool(1, initializer=die_with_parent)
    print(pool.apply(pid, (0,)), flush=True)
    pool.apply_async(time.sleep, (120,))  # a busy worker: without the death signal it would run on
    time.sleep(1)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_pool_workers_die_with_their_killed_parent(tmp_path):
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(WORKER_OF_A_KILLED_PARENT)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    worker = int(run.stdout.split()[0])
    for _ in range(300):  # the kernel kills it at once; the loop only waits for the reaper
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        if open(f"/proc/{worker}/stat").read().split()[2] == "Z":
            return  # killed, not yet reaped
        time.sleep(0.1)
    raise AssertionError(f"worker {worker} outlived its killed parent by 30 s")
