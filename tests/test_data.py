"""subset_pipeline streams exactly a subset's samples from a real (tiny) release, with its labels."""

import json
import shutil

import pytest
import torch

from synthfair.data import collate, subset_pipeline
from synthfair.errors import SynthfairError
from synthfair.sampling import bias_spec_from_dict, sample, write_subset

SPEC = {
    "size": 4,
    "seed": 1,
    "target": "findings.cardiomegaly",
    "kinds": ["factual", "counterfactual"],
    "splits": {"train": 0.5, "test": 0.5},
}


@pytest.fixture(scope="module")
def subset_dir(finalized_release, tmp_path_factory):
    out = tmp_path_factory.mktemp("subset") / "subset"
    spec = bias_spec_from_dict({**SPEC, "label_noise": {}})
    write_subset(sample(finalized_release, spec), out)
    return out


def test_the_pipeline_yields_exactly_the_splits_samples_with_images_and_labels(subset_dir):
    import pandas as pd

    table = pd.read_parquet(subset_dir / "subset.parquet")
    for split in ("train", "test"):
        samples = list(subset_pipeline(subset_dir, split=split))
        assert sorted(s["__key__"] for s in samples) == sorted(table[table["split"] == split]["key"])
        for s in samples:
            assert s["image"].dtype == torch.float32 and s["image"].shape == (1, 16, 16)
            assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
            assert s["json"]["key"] == s["__key__"] and s["target"] == s["target_true"]
            assert s["target_true"] == s["json"]["covariates"]["findings"]["cardiomegaly"]
    assert len(list(subset_pipeline(subset_dir, split=None))) == len(table)


def test_flipped_labels_are_applied_and_the_true_ones_kept(finalized_release, tmp_path):
    every = {"female": 1.0, "male": 1.0}
    noisy = bias_spec_from_dict({**SPEC, "groups": ["sex"], "prevalence": every, "label_noise": every})
    out = write_subset(sample(finalized_release, noisy), tmp_path / "noisy")
    streamed = list(subset_pipeline(out, split="train"))
    positives = [s for s in streamed if s["target_true"] == 1]
    assert len(positives) == len(streamed) == 2
    assert all(s["target"] == 0 and s["target_flipped"] for s in positives)
    assert all(s["target"] == s["target_true"] for s in subset_pipeline(out, split="test"))


def test_another_copy_of_the_release_and_a_file_url_work(subset_dir, finalized_release, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finalized_release / "shards", copy / "shards")
    local = sorted(s["__key__"] for s in subset_pipeline(subset_dir, "train", release=copy))
    remote = sorted(s["__key__"] for s in subset_pipeline(subset_dir, "train", release=f"file://{copy}"))
    assert local == remote and local


def test_a_dataloader_with_workers_sees_each_sample_once(subset_dir):
    pipeline = subset_pipeline(subset_dir, split=None)
    loader = torch.utils.data.DataLoader(pipeline, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    keys = [key for batch in batches for key in batch["__key__"]]
    assert batches[0]["image"].shape[1:] == (1, 16, 16) and batches[0]["target"].dtype == torch.int64
    assert len(keys) == len(set(keys)) == json.loads((subset_dir / "subset.json").read_text())["size"]


def test_missing_shards_and_splits_are_clear_errors(subset_dir, tmp_path):
    with pytest.raises(SynthfairError, match="no split 'validate'"):
        subset_pipeline(subset_dir, split="validate")
    with pytest.raises(SynthfairError, match="cannot open shard"):
        list(subset_pipeline(subset_dir, split="train", release=tmp_path / "nowhere"))
    with pytest.raises(SynthfairError, match="is not a subset"):
        subset_pipeline(tmp_path, split="train")
