import numpy as np
import pytest

from synthfair.errors import ConfigError
from synthfair.model.data import CacheDataset, batch_indices, oversampled
from synthfair.taxonomy import load_taxonomy


def _record(cardiomegaly=0, effusion=0, view="PA"):
    return {
        "sex": "female",
        "view": view,
        "findings": {"cardiomegaly": cardiomegaly, "pleural_effusion": effusion},
    }


def test_oversampling_repeats_images_by_the_product_of_their_factors():
    records = [_record(), _record(cardiomegaly=1), _record(cardiomegaly=1, view="LATERAL")]
    records.append(_record(effusion=1))
    order = oversampled(records, {"findings.cardiomegaly": 3, "view=LATERAL": 2}, load_taxonomy())
    assert order.tolist() == [0, 1, 1, 1] + [2] * 6 + [3]
    assert oversampled(records, {}, load_taxonomy()).tolist() == [0, 1, 2, 3]  # no keys: the plain order


@pytest.mark.parametrize(
    "oversample, message",
    [
        ({"findings.cardiomegly": 3}, "cardiomegly"),  # a typo names the key
        ({"view=SIDEWAYS": 2}, "SIDEWAYS"),
        ({"view": 2}, "neither a label column nor categorical=value"),
        ({"findings.cardiomegaly": 0}, "factor 0"),
        ({"findings.cardiomegaly": 1.5}, "factor 1.5"),
    ],
)
def test_bad_oversampling_keys_and_factors_are_refused_with_the_value(oversample, message):
    with pytest.raises(ConfigError, match=message):
        oversampled([_record()], oversample, load_taxonomy())


def test_an_oversampled_order_reaches_the_rare_images_more_often(cache):
    dataset = CacheDataset(cache, split=None)
    records = [dataset.covariates(i) for i in range(len(dataset))]
    rare = [i for i, r in enumerate(records) if r["race"] == "black"]
    assert 0 < len(rare) < len(records) / 2
    order = oversampled(records, {"race=black": 4}, load_taxonomy())
    drawn = [int(order[i]) for step in range(50) for i in batch_indices(step, len(order), 4, seed=0)]
    share = np.isin(drawn, rare).mean()
    plain = len(rare) / len(records)
    assert share == pytest.approx(4 * plain / (1 + 3 * plain), abs=0.02)  # whole epochs of the repeated order
