"""The sampler reaches its targets on a synthetic release table in the samples.parquet layout."""

import numpy as np
import pytest

from synthfair.errors import ConfigError
from synthfair.sampling import bias_spec_from_dict, sample, sample_with_baseline, write_subset
from synthfair.sampling.synthetic import synthetic_samples

TARGET = "findings.cardiomegaly"
KNOBS = {
    "size": 1000,
    "seed": 3,
    "target": TARGET,
    "groups": ["sex", "race"],
    "shares": {"female x black": 0.05},
    "prevalence": {"female x black": 0.6},
    "correlation": {"covariate": "device", "value": "philips", "strength": 0.9},
    "label_noise": {"female x black": 0.5},
}


@pytest.fixture(scope="module")
def samples():
    return synthetic_samples(families=20000, seed=1)


@pytest.fixture(scope="module")
def biased(samples):
    return sample(samples, bias_spec_from_dict(KNOBS))


def test_shares_prevalence_and_correlation_reach_their_targets(biased):
    train = biased.stats["train"]
    assert train["size"] == {"target": 600, "achieved": 600}
    assert train["shares"]["female x black"]["achieved"] == pytest.approx(0.05, abs=1 / 600)
    assert train["prevalence"]["female x black"]["achieved"] == pytest.approx(0.6, abs=0.04)
    others = [v["achieved"] for g, v in train["prevalence"].items() if g != "female x black"]
    overall = train["prevalence"]["male x white"]["target"]
    assert np.allclose(others, overall, atol=0.06)  # groups not named: the pool's overall rate
    assert train["correlation"]["achieved_strength"] == pytest.approx(0.9, abs=0.01)
    test = biased.stats["test"]
    assert test["correlation"]["achieved_strength"] == pytest.approx(0.0, abs=0.02)
    shares = [v["achieved"] for v in test["shares"].values()]
    assert np.allclose(shares, 1 / len(shares), atol=0.01)  # balanced evaluation splits


def test_label_flips_are_exact_and_only_where_asked(biased):
    table = biased.table
    group = table[(table["group"] == "female x black") & (table["target_true"] == 1)]
    for split, expected in (("train", 0.5), ("validate", 0.5), ("test", 0.0)):
        flips = group[group["split"] == split]["target_flipped"]
        assert flips.mean() == pytest.approx(expected, abs=1 / max(len(flips), 1)), split
    assert not table[table["group"] != "female x black"]["target_flipped"].any()
    flipped = table[table["target_flipped"]]
    assert (flipped["target"] == 1 - flipped["target_true"]).all()


def test_no_family_or_patient_in_two_splits_and_one_member_per_family(biased, samples):
    table = biased.table
    assert table.groupby("family")["split"].nunique().max() == 1
    assert table["family"].is_unique  # at most one member of a counterfactual family
    assert set(table["kind"]) <= {"factual", "counterfactual"}
    assert (table["kind"] == "factual").mean() > 0.5  # factual images first


def test_counterfactuals_are_what_make_the_targets_reachable(samples):
    factual_only = bias_spec_from_dict({**KNOBS, "kinds": ["factual"]})
    with pytest.raises(ConfigError, match="infeasible"):
        sample(samples, factual_only)


def test_deterministic_by_seed_whatever_the_row_order(samples, biased):
    shuffled = samples.sample(frac=1.0, random_state=0).reset_index(drop=True)
    again = sample(shuffled, bias_spec_from_dict(KNOBS))
    assert again.table["key"].tolist() == biased.table["key"].tolist()
    assert again.table["target"].tolist() == biased.table["target"].tolist()
    other = sample(samples, bias_spec_from_dict({**KNOBS, "seed": 4}))
    assert other.table["key"].tolist() != biased.table["key"].tolist()


def test_an_infeasible_spec_names_the_binding_cell_and_what_is_reachable(samples):
    knobs = {
        "target": TARGET,
        "groups": ["sex"],
        "prevalence": {"female": 0.9},
        "correlation": {"covariate": "device", "value": "philips", "strength": 1.0},
    }
    with pytest.raises(ConfigError) as err:
        sample(samples, bias_spec_from_dict({**knobs, "size": 8000}))
    message, hint = str(err.value), err.value.hint
    assert "split 'train'" in message and f"group female x {TARGET}=1 x device=philips needs" in message
    size = int(hint.split("largest feasible size with these knobs is ")[1].split(";")[0])
    strength = float(hint.split("correlation.strength ")[1].split(")")[0])
    assert 1000 < size < 8000 and 0 < strength < 1
    assert len(sample(samples, bias_spec_from_dict({**knobs, "size": size})).table) == size
    share = float(hint.split("prevalence female ")[1].split(";")[0])
    reachable = {
        **knobs,
        "size": 8000,
        "prevalence": {"female": share},
        "correlation": {**knobs["correlation"], "strength": strength},
    }
    assert len(sample(samples, bias_spec_from_dict(reachable)).table) == 8000


def test_a_size_beyond_the_release_is_infeasible_not_empty(samples):
    for size in (len(samples) + 1, 9223372036854775807):
        with pytest.raises(ConfigError, match=f"size {size} exceeds the .* eligible samples") as err:
            sample(samples, bias_spec_from_dict({"target": TARGET, "size": size}))
        assert "use size <=" in err.value.hint


def test_the_baseline_matches_size_and_zeroes_the_knobs(samples, tmp_path):
    path = tmp_path / "release"
    path.mkdir()
    samples.to_parquet(path / "samples.parquet")
    biased, base = sample_with_baseline(path, bias_spec_from_dict(KNOBS))
    assert len(base.table) == len(biased.table) == 1000 and base.baseline
    train = base.stats["train"]
    assert train["correlation"]["achieved_strength"] == pytest.approx(0, abs=0.02)
    assert not base.table["target_flipped"].any()
    shares = [v["achieved"] for v in train["shares"].values()]
    assert np.allclose(shares, 1 / len(shares), atol=0.01)
    prevalences = [v["target"] for v in train["prevalence"].values()]
    assert np.allclose(prevalences, prevalences[0])  # one rate for every group ...
    overall = (biased.table[biased.table["split"] == "train"]["target_true"]).mean()
    assert prevalences[0] == pytest.approx(overall, abs=0.01)  # ... the biased split's overall rate


def test_paired_mode_returns_factual_counterfactual_pairs_that_differ_only_in_sex(samples):
    spec = bias_spec_from_dict({"size": 200, "pairs": "sex", "target": TARGET, "groups": ["sex"]})
    subset = sample(samples, spec)
    table = subset.table
    assert len(table) == 400 and table.groupby("pair").size().eq(2).all()
    for _, pair in table.groupby("pair"):
        assert sorted(pair["kind"]) == ["counterfactual", "factual"] and pair["sex"].nunique() == 2
        assert pair["split"].nunique() == 1


def test_write_subset_lists_the_shards_it_needs(biased, tmp_path):
    import json

    out = write_subset(biased, tmp_path / "subset")
    meta = json.loads((out / "subset.json").read_text())
    assert meta["shards"] == sorted(biased.table["shard"].unique().tolist())
    assert meta["stats"]["train"]["correlation"]["target_strength"] == 0.9
    assert meta["size"] == 1000 and meta["splits"] == {"test": 200, "train": 600, "validate": 200}


def test_a_release_url_is_read_through_fsspec(samples, tmp_path):
    (tmp_path / "r").mkdir()
    samples.head(2000).to_parquet(tmp_path / "r" / "samples.parquet")
    subset = sample(f"file://{tmp_path / 'r'}", bias_spec_from_dict({"size": 50}))
    assert len(subset.table) == 50 and subset.release.startswith("file://")


def test_patients_never_span_splits_even_when_some_rows_lack_a_patient_key(samples):
    frame = samples.copy()
    frame["patient"] = "p" + (frame["family"].str[-8:].astype(int) // 2).astype(str)  # 2 families per patient
    frame.loc[frame.index[0], "patient"] = None
    table = sample(frame, bias_spec_from_dict({"size": 3000, "seed": 1})).table
    merged = table.merge(frame[["key", "patient"]], on="key")
    assert merged.dropna(subset=["patient"]).groupby("patient")["split"].nunique().max() == 1


def test_pairs_share_their_label_noise_and_count_once(samples, tmp_path):
    (tmp_path / "r").mkdir()
    samples.to_parquet(tmp_path / "r" / "samples.parquet")
    spec = bias_spec_from_dict(
        {"size": 300, "pairs": "sex", "target": TARGET, "groups": ["race"], "label_noise": {"white": 0.5}}
    )
    subset = sample(tmp_path / "r", spec)
    table = subset.table
    assert "sex" in table.columns and subset.stats["train"]["size"]["achieved"] == 180
    assert table.groupby("pair")["target"].nunique().max() == 1  # a pair differs in sex only
    rate = subset.stats["train"]["label_noise"]["white"]["positive_to_negative"]["achieved"]
    assert rate == pytest.approx(0.5, abs=0.05)


def test_group_codes_label_rows_as_the_taxonomy_does_missing_values_included():
    import pandas as pd

    from synthfair.sampling.sampler import _group_labels
    from synthfair.taxonomy import MISSING, load_taxonomy

    taxonomy = load_taxonomy()
    pool = pd.DataFrame(
        {
            "age": [25.0, None, 70.0, 25.0, 95.0],
            "race": ["black", "white", None, "black", "white"],
            TARGET: [0, 1, 0, 1, 1],
        }
    )
    spec = bias_spec_from_dict({"target": TARGET, "size": 5, "groups": ["age", "race"]})
    groups, group = _group_labels(pool, spec, taxonomy)
    expected = taxonomy.group_labels(pool, ["age", "race"]).apply(" x ".join, axis=1).tolist()
    assert [groups[g] for g in group] == expected
    assert groups == sorted(set(expected)) and any(MISSING in g for g in groups)
