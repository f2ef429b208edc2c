import json
import math

import numpy as np
import pandas as pd
import pytest

from synthfair.errors import ConfigError, TaxonomyError
from synthfair.fairness import log_disparity, representation, smoothed_edf

TARGET = "findings.cardiomegaly"


def _rows(spec: list[tuple[str, int, int]]) -> pd.DataFrame:
    """(sex, count, positives) -> `count` rows of that sex, the first `positives` of them with target 1."""
    rows = [(sex, int(i < pos)) for sex, n, pos in spec for i in range(n)]
    return pd.DataFrame(rows, columns=["sex", TARGET])


@pytest.fixture
def frames():
    data = _rows([("female", 3, 1), ("male", 1, 0), ("other_x", 1, 1)])  # n = 5
    reference = _rows([("female", 5, 2), ("male", 4, 2), ("other", 1, 0)])  # n = 10
    return data, reference


def test_counts_shares_and_log_disparity_by_hand(frames):
    data, reference = frames
    table = representation(data, reference, by=["sex"], min_count=2).table.set_index("sex")
    assert table.loc["female", ["count", "count_reference"]].tolist() == [3, 5]
    assert table.loc["female", "share"] == pytest.approx(0.6)
    assert table.loc["female", "share_reference"] == pytest.approx(0.5)
    # logit(0.6) - logit(0.5) = log(1.5); logit(0.2) - logit(0.4) = log(0.25) - log(2/3)
    assert table.loc["female", "log_disparity"] == pytest.approx(math.log(1.5))
    assert table.loc["male", "log_disparity"] == pytest.approx(math.log(0.25) - math.log(2 / 3))


def test_flags_missing_implausible_small(frames):
    data, reference = frames
    rep = representation(data, reference, by=["sex"], min_count=2)
    table = rep.table.set_index("sex")
    assert table.loc["other", "log_disparity"] == -math.inf and table.loc["other", "missing"]
    assert table.loc["other_x", "log_disparity"] == math.inf and table.loc["other_x", "implausible"]
    assert table["small"].to_dict() == {"female": False, "male": True, "other": False, "other_x": True}
    assert (rep.n_missing, rep.n_implausible, rep.n_small, rep.n_groups) == (1, 1, 2, 4)
    assert rep.max_abs_log_disparity == pytest.approx(abs(math.log(0.25) - math.log(2 / 3)))


def test_log_disparity_equal_shares_is_zero_even_at_the_ends():
    ld = log_disparity(np.array([0.0, 1.0, 0.3, 0.0]), np.array([0.0, 1.0, 0.3, 0.2]))
    assert ld.tolist() == [0.0, 0.0, 0.0, -math.inf]


def test_continuous_covariate_is_binned_by_the_taxonomy():
    data = pd.DataFrame({"age": [19.9, 20.0, 120.0, np.nan], "sex": ["female"] * 4})
    reference = pd.DataFrame({"age": [5.0, 45.0], "sex": ["female", "male"]})
    table = representation(data, reference, by=["age", "sex"]).table
    assert sorted(table["age"].unique()) == ["(missing)", "[0, 20)", "[20, 40)", "[40, 60)", "[80, 120]"]
    assert table.set_index(["age", "sex"]).loc[("[40, 60)", "male"), "missing"]


def test_out_of_range_age_is_an_error():
    data = pd.DataFrame({"age": [130.0]})
    with pytest.raises(TaxonomyError, match="age=130"):
        representation(data, data, by=["age"])


def test_prevalence_and_edf_by_hand(frames):
    data, reference = frames
    rep = representation(data, reference, by=["sex"], target=TARGET)
    table = rep.table.set_index("sex")
    assert table.loc["female", "prevalence"] == pytest.approx(1 / 3)
    assert table.loc["female", "prevalence_reference"] == pytest.approx(2 / 5)
    assert np.isnan(table.loc["other", "prevalence"])
    # data: r = (pos + 1/2) / (n + 1): female 1.5/4, male 0.5/2, other_x 1.5/2
    r = np.array([0.375, 0.25, 0.75])
    expected = max(np.ptp(np.log(r)), np.ptp(np.log(1 - r)))  # = max(log 3, log 3) = log 3
    assert rep.edf == pytest.approx(expected) == pytest.approx(math.log(3))
    # reference: female 2.5/6, male 2.5/5, other 0.5/2
    r_ref = np.array([2.5 / 6, 0.5, 0.25])
    assert rep.edf_reference == pytest.approx(max(np.ptp(np.log(r_ref)), np.ptp(np.log(1 - r_ref))))


def test_smoothed_edf_on_intersections_and_edge_cases():
    y = [1, 0, 0, 0, 1, 1]
    groups = pd.DataFrame({"a": list("xxxyyy"), "b": list("ppqqqq")})  # groups xp, xq, yq
    r = np.array([(1 + 0.5) / 3, (0 + 0.5) / 2, (2 + 0.5) / 4])
    assert smoothed_edf(y, groups) == pytest.approx(max(np.ptp(np.log(r)), np.ptp(np.log(1 - r))))
    assert smoothed_edf([1, 0, 1], ["g", "g", "g"]) == 0.0  # one group
    assert smoothed_edf([1, 1, 0, 0], list("aabb"), concentration=0.0) == math.inf  # unsmoothed 0 and 1
    with pytest.raises(ConfigError, match="not 0 or 1"):
        smoothed_edf([0.3, 1], ["a", "b"])


def test_errors_name_the_column(frames):
    data, reference = frames
    with pytest.raises(ConfigError, match="did you mean 'sex'"):
        representation(data, reference, by=["sexx"])
    with pytest.raises(ConfigError, match="target 'findings.edema'"):
        representation(data, reference, by=["sex"], target="findings.edema")


def test_to_dict_is_json_ready(frames):
    data, reference = frames
    out = representation(data, reference, by=["sex"], target=TARGET).to_dict()
    text = json.dumps(out, allow_nan=False)
    assert '"-inf"' in text and out["by"] == ["sex"]
