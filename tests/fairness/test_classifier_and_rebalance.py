import numpy as np
import pandas as pd
import pytest

from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.data import release_images
from synthfair.errors import SynthfairError
from synthfair.fairness import ClassifierConfig, RebalanceSpec, train_classifier, training_set


def test_the_classifier_learns_a_visible_label_and_respects_loss_weights():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 96)
    images = (0.3 + 0.4 * labels[:, None, None] + rng.normal(0, 0.05, (96, 16, 16))).astype(np.float32)
    config = ClassifierConfig(epochs=8, batch_size=16)
    scores = train_classifier(images, labels, config).predict(images)
    assert ((scores >= 0.5) == labels).mean() > 0.9
    again = train_classifier(images, labels, config).predict(images)
    assert np.array_equal(scores, again)  # seeded
    weights = np.where(labels == 1, 1e-3, 1.0)  # positives barely count: everything looks negative
    assert train_classifier(images, labels, config, weights=weights).predict(images).mean() < scores.mean()
    with pytest.raises(SynthfairError, match="both classes"):
        train_classifier(images, np.zeros(96), config)


@pytest.fixture(scope="module")
def train_rows(finalized_release):
    samples = pd.read_parquet(finalized_release / "samples.parquet")
    rows = samples[samples["kind"].isin(["factual", "counterfactual"])].copy()
    rows["target"] = rows["findings.cardiomegaly"].astype(int)
    return rows, release_images(finalized_release, rows)


def test_every_method_spends_the_same_budget(train_rows, trained_run):
    rows, images = train_rows
    minority = rows["sex"].value_counts().idxmin()
    spec = RebalanceSpec(attribute="sex", minority=minority, budget=3)
    engine = CounterfactualEngine.load(trained_run, EngineConfig(steps=2, batch_size=4))
    n = len(rows)
    x, y, w, info = training_set("none", rows, images, spec, "findings.cardiomegaly", 0)
    assert len(x) == n and (w == 1).all() and info["budget"] == 3
    x, y, w, _ = training_set("oversample", rows, images, spec, "findings.cardiomegaly", 0)
    assert len(x) == n + 3
    x, y, w, _ = training_set("reweight", rows, images, spec, "findings.cardiomegaly", 0)
    is_minority = (rows["sex"] == minority).to_numpy()
    assert len(x) == n and w[is_minority].sum() == pytest.approx(is_minority.sum() + 3)
    x, y, w, info = training_set("generate", rows, images, spec, "findings.cardiomegaly", 0, engine=engine)
    assert len(x) == n + 3 and x.shape[1:] == (16, 16) and set(np.unique(y)) <= {0.0, 1.0}
    assert 0 <= info["generated_positive_rate"] <= 1
    with pytest.raises(SynthfairError, match="needs the generator"):
        training_set("generate", rows, images, spec, "findings.cardiomegaly", 0)


def test_methods_train_on_equal_samples_per_epoch_and_generated_labels_carry_the_groups_noise(train_rows):
    rows, images = train_rows
    rows = rows.copy()
    minority = rows["sex"].value_counts().idxmin()
    rows["target_true"] = rows["target"]
    negatives = rows.index[(rows["sex"] == minority) & (rows["target_true"] == 0)]
    rows.loc[negatives[: len(negatives) // 2], "target"] = 1  # half the minority's negatives mislabelled
    spec = RebalanceSpec(attribute="sex", minority=minority, budget=len(rows))
    per_epoch = {
        method: training_set(method, rows, images, spec, "findings.cardiomegaly", 0)[3]["samples_per_epoch"]
        for method in ("none", "reweight", "oversample", "exact")
    }
    assert set(per_epoch.values()) == {2 * len(rows)}
    x, y, _, info = training_set("exact", rows, images, spec, "findings.cardiomegaly", 0)
    assert len(x) == 2 * len(rows) and x.shape[1:] == (16, 16)
    noise = info["generated_label_flips"]["negative_to_positive"]
    truth_negative = round(len(rows) * (1 - info["generated_positive_rate"]))
    assert noise["rate"] == pytest.approx((len(negatives) // 2) / len(negatives), abs=1e-6)
    assert noise["flipped"] == round(noise["rate"] * truth_negative)
    assert info["generated_label_flips"]["positive_to_negative"] == {"rate": 0.0, "flipped": 0}
    generated = y[len(rows) :]
    assert int(generated.sum()) == round(info["generated_positive_rate"] * len(rows)) + noise["flipped"]


def test_an_epoch_draws_the_asked_number_of_samples():
    import torch

    from synthfair.fairness.classifier import _epoch_order

    order = _epoch_order(5, 12, torch.Generator().manual_seed(0))
    assert len(order) == 12 and set(order[:5].tolist()) == set(range(5)) == set(order[5:10].tolist())
    same = _epoch_order(5, 5, torch.Generator().manual_seed(0))
    assert torch.equal(same, torch.randperm(5, generator=torch.Generator().manual_seed(0)))
