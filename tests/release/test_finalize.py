import json
import shutil
import subprocess

import pytest
import webdataset as wds

from synthfair.counterfactual import EngineConfig
from synthfair.errors import SynthfairError
from synthfair.generate.runner import GenerateConfig, generate
from synthfair.release import layout
from synthfair.release.finalize import finalize

CONFIG = GenerateConfig(engine=EngineConfig(steps=3, batch_size=4))


@pytest.fixture(scope="module")
def finalized(small_plan, trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("final") / "release"
    generate(small_plan, trained_run, out, CONFIG)
    result = finalize(out, dataset_version="9.9")
    return out, result


def test_manifest_sums_samples_and_shard_index(finalized):
    out, result = finalized
    assert (result.shards, result.samples, result.failed) == (4, 24, 0)
    manifest = json.loads((out / layout.MANIFEST_FILE).read_text())
    assert manifest["dataset_version"] == "9.9" and manifest["nsamples"] == 24
    assert len(manifest["checkpoint_sha256"]) == 64 and manifest["config"]["engine"]["steps"] == 3
    for shard in manifest["shards"]:
        tar = out / shard["url"]
        assert tar.stat().st_size == shard["filesize"]
    assert [s["nsamples"] for s in manifest["shards"]] == [7, 7, 7, 3]
    index = json.loads((out / layout.SHARD_INDEX_FILE).read_text())
    assert index["__kind__"] == "wids-shard-index-v1" and len(index["shardlist"]) == 4
    done = subprocess.run(["sha256sum", "-c", layout.SUMS_FILE], cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 6 + 2 * 4


def test_samples_parquet_has_covariates_as_columns(finalized):
    import pandas as pd

    out, _ = finalized
    samples = pd.read_parquet(out / layout.SAMPLES_FILE)
    assert len(samples) == 24 and samples["key"].is_unique
    assert {"family", "kind", "shard", "sample_hash", "sex", "age", "findings.cardiomegaly"} <= set(samples)
    flips = samples[samples["label"].str.startswith("sex=")]
    assert (flips["sex"] == flips["label"].str[4:]).all()  # the covariates after the intervention
    assert samples.groupby("kind").size().to_dict() == {
        "counterfactual": 16,
        "factual": 4,
        "reconstruction": 4,
    }


def test_the_dataset_card_numbers_come_from_the_release(finalized):
    out, _ = finalized
    card = (out / layout.CARD_FILE).read_text()
    assert card.startswith("---") and "9.9" in card and "size_categories" in card and "n<1K" in card
    numbers = card.split("<!-- synthfair:numbers:start -->")[1].split("<!-- synthfair:numbers:end -->")[0]
    assert "| 24 | 4 | 4 | 0 |" in numbers  # samples, families, shards, failed
    assert "| counterfactual | 16 | 66.7% |" in numbers
    assert "{" not in card and "}" not in card  # every token filled


def test_webdataset_reads_the_release(finalized):
    out, _ = finalized
    urls = [str(out / "shards" / f"{s:06d}.tar") for s in range(4)]
    keys = [sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False)]
    assert len(keys) == 24 and all(k.count("_") >= 2 for k in keys)


def test_finalize_is_repeatable_and_refuses_an_incomplete_release(finalized, tmp_path):
    out, _ = finalized
    before = (out / layout.SUMS_FILE).read_bytes()
    finalize(out, dataset_version="9.9")
    assert (out / layout.SUMS_FILE).read_bytes() == before
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for shard in (1, 2, 3):
        layout.stats_path(copy, shard).unlink()
    with pytest.raises(SynthfairError, match=r"3 of 4 shards are not done \(shards 1-3\)"):
        finalize(copy)
