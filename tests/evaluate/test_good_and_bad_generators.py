"""The evaluator tells good generators from bad ones, in a toy world whose images show their covariates.

A toy image (16 x 16) is bright on the left for men and dark for women, and its right half's brightness
grows with age; a little noise on top. Oracles trained on such images see both. Releases are then written
in the release format by four "generators": perfect (renders the counterfactual covariates), identity (returns
the factual image), amplifying (changes sex and also ages the image) and memorizing (returns training images).
"""

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from source_files import phantom_row, write_phantom_source
from synthfair.evaluate.oracles import OracleConfig, train_oracles
from synthfair.evaluate.realism import privacy
from synthfair.evaluate.samples import read_release
from synthfair.evaluate.soundness import amplification, composition, effectiveness, reversibility
from synthfair.release import layout

SIZE = 16
pytestmark = pytest.mark.slow  # two oracles trained on 200 toy images


def toy(sex: str, age: float, rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((SIZE, SIZE), np.float32)
    image[:, : SIZE // 2] = 0.25 if sex == "female" else 0.75
    image[:, SIZE // 2 :] = 0.1 + 0.8 * age / 100
    return np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def toy_oracles(tmp_path_factory):
    from synthfair.index.ingest import ingest
    from synthfair.index.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    rows = [
        phantom_row(
            i,
            split=("train", "train", "validate")[i % 3],
            sex=("female", "male")[(i // 3) % 2],
            age=str(int(rng.integers(20, 90))),
        )
        for i in range(300)
    ]
    write_phantom_source(root / "src", rows, images=False)
    for row in rows:
        pixels = (toy(row["sex"], float(row["age"]), rng) * 65535).astype(np.uint16)
        Image.fromarray(pixels).save(root / "src" / row["image"])
    ingest("phantom", root / "src", root / "index")
    preprocess(root / "index", root / "cache", PreprocessConfig(size=SIZE))
    config = OracleConfig(covariates=("sex", "age"), epochs=20, batch_size=16, learning_rate=3e-3)
    return train_oracles(config, root / "cache"), root / "cache"


def write_release(out, generator, n=12, seed=1):
    """Factual + a sex flip + an age change per family; images from ``generator(factual, cf, image, rng)``."""
    rng = np.random.default_rng(seed)
    (out / "shards").mkdir(parents=True)
    with wds.TarWriter(str(layout.tar_path(out, 0)), mtime=0) as tar:
        for i in range(n):
            factual = {"sex": ("female", "male")[i % 2], "age": float(30 + 4 * i)}
            image = toy(factual["sex"], factual["age"], rng)
            family = f"toy_{i:03d}"
            members = [("f", "factual", {}, factual, image)]
            for j, do in enumerate(
                ({"sex": "male" if factual["sex"] == "female" else "female"}, {"age": 85.0})
            ):
                cf = {**factual, **do}
                members.append((f"c{j:03d}", "counterfactual", do, cf, generator(factual, cf, image, rng)))
            for suffix, kind, do, covariates, picture in members:
                record = {
                    "key": f"{family}_{suffix}",
                    "family": family,
                    "kind": kind,
                    "seed": i,
                    "parent": None if kind == "factual" else f"{family}_f",
                    "factual": factual,
                    "intervention": do,
                    "covariates": covariates,
                    "changed": sorted(do),
                    "label": ",".join(f"{k}={v}" for k, v in do.items()) or "factual",
                }
                png = Image.fromarray((np.clip(picture, 0, 1) * 65535).astype(np.uint16))
                buf = io.BytesIO()
                png.save(buf, format="PNG")
                tar.write(
                    {"__key__": record["key"], "png": buf.getvalue(), "json": json.dumps(record).encode()}
                )
    layout.stats_path(out, 0).write_text("{}")
    (out / layout.REQUEST_FILE).write_text(json.dumps({"shards": 1}))
    return read_release(out)


def perfect(factual, cf, image, rng):
    return toy(cf["sex"], cf["age"], rng)


def identity(factual, cf, image, rng):
    return image


def amplifying(factual, cf, image, rng):  # also makes everyone 30 years older
    return toy(cf["sex"], min(cf["age"] + 30, 100) if cf["sex"] != factual["sex"] else cf["age"], rng)


def scores(samples, oracles):
    predictions = oracles.predict(samples.images)
    eff = effectiveness(samples, predictions, oracles)
    amp = amplification(samples, predictions, oracles)
    return eff, amp


def test_effectiveness_reaches_the_oracles_for_a_perfect_generator_and_not_for_identity(
    toy_oracles, tmp_path
):
    oracles, _ = toy_oracles
    assert oracles["sex"].metrics["accuracy"] >= 0.9 and oracles["age"].metrics["mae"] < 10  # range 20-90
    good, _ = scores(write_release(tmp_path / "perfect", perfect), oracles)
    same, _ = scores(write_release(tmp_path / "identity", identity), oracles)
    sex_good, sex_same = good[good["covariate"] == "sex"], same[same["covariate"] == "sex"]
    assert sex_good["correct"].mean() >= oracles["sex"].metrics["accuracy"] - 0.1
    assert sex_same["correct"].mean() <= 0.5  # no change: the oracle still sees the factual sex
    age_good, age_same = good[good["covariate"] == "age"], same[same["covariate"] == "age"]
    assert age_good["abs_error"].mean() < age_same["abs_error"].mean() / 2


def test_a_generator_that_changes_a_second_covariate_shows_amplification(toy_oracles, tmp_path):
    oracles, _ = toy_oracles
    _, clean = scores(write_release(tmp_path / "perfect", perfect), oracles)
    _, amplified = scores(write_release(tmp_path / "amplifying", amplifying), oracles)
    on_age = lambda t: t[(t["covariate"] == "age") & t["label"].str.startswith("sex=")]["abs_delta"].mean()  # noqa: E731
    assert on_age(amplified) > 3 * on_age(clean) and on_age(amplified) > 10  # years


def test_composition_and_reversibility_are_zero_for_an_exact_generator(toy_oracles, tmp_path):
    oracles, _ = toy_oracles
    samples = write_release(tmp_path / "perfect", perfect)
    factual_by_seed = {samples.records[i]["seed"]: samples.images[i] for i in samples.of_kind("factual")}

    def exact(images, factuals, dos, seeds):  # the null intervention changes nothing; going back recovers x
        return [
            SimpleNamespace(image=image if not do else factual_by_seed[seed])
            for image, do, seed in zip(images, dos, seeds, strict=True)
        ]

    comp = composition(samples, exact, oracles, samples.of_kind("factual")[:3], cycles=10)
    assert (comp[["l1_1", "l1_10", "feature_1", "feature_10"]] == 0).all().all()
    rev = reversibility(samples, exact, oracles, samples.of_kind("counterfactual")[:4])
    assert len(rev) == 4 and (rev["l1"] == 0).all() and (rev["feature"] == 0).all()


def test_a_copied_training_image_is_flagged_by_the_privacy_check(toy_oracles, tmp_path):
    from synthfair.model.data import CacheDataset

    oracles, cache = toy_oracles
    train = CacheDataset(cache, split="train")
    train_images = np.stack([train.image(i) for i in range(len(train))])
    samples = write_release(tmp_path / "perfect", perfect)
    generated = np.concatenate([samples.images[samples.of_kind("counterfactual")], train_images[:3]])
    result = privacy(oracles.features(generated), oracles.features(train_images))
    assert result.memorized[-3:].all()
    assert result.memorized[:-3].mean() < 0.5
