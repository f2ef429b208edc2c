import json

import pytest

from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError
from synthfair.generate.plan import PlanSpec, label_of, load_plan_spec, make_plan, read_plan, sample_seed
from synthfair.index import read_index


def plan_of(index, **spec):
    return make_plan(read_index(index), dataclass_from_dict(PlanSpec, spec))


def test_plan_rows_keys_shards_and_seeds(phantom_index, small_plan):
    table, meta = read_plan(small_plan)
    rows = table.to_pylist()
    assert meta["spec"]["seed"] == 5 and meta["factual_images"] == 4
    assert len(rows) == 4 * 6 and [r["shard"] for r in rows] == [i // 7 for i in range(24)]
    family = [r for r in rows if r["family"] == rows[0]["family"]]
    assert [r["kind"] for r in family] == ["factual", "reconstruction"] + ["counterfactual"] * 4
    assert [r["key"][len(r["family"]) :] for r in family] == ["_f", "_r", "_c000", "_c001", "_c002", "_c003"]
    assert all("." not in r["key"] for r in rows)
    assert all(r["seed"] == sample_seed(5, r["key"]) for r in rows)
    assert len({r["seed"] for r in rows}) == len(rows)
    factual = json.loads(family[0]["factual"])
    flipped = json.loads(family[2]["intervention"])
    assert flipped == {"sex": "male" if factual["sex"] == "female" else "female"}
    toggled = json.loads(family[5]["intervention"])["findings"]["cardiomegaly"]
    assert toggled == 1 - factual["findings"]["cardiomegaly"]
    phantom = json.loads(family[0]["phantom"])
    assert {"seed", "index", "noise_seed", "config"} <= set(phantom) and phantom["config"][
        "anatomy"
    ] == "procedural"
    # limit takes the smallest sample_hash: the same factual images whatever the index order
    index = read_index(phantom_index)
    expected = sorted(index.nsmallest(4, "sample_hash")["sample_key"])
    assert sorted({r["family"] for r in rows}) == expected


def test_keywords_combinations_noops_and_filters(phantom_index):
    plan = plan_of(
        phantom_index,
        select={"where": {"view": ["PA"], "age": [0, 120]}},
        include_reconstruction=False,
        interventions=[{"view": "all"}, {"sex": "flip", "age": [30, 60]}, {"findings": "toggle"}],
        shard_size=1000,
    )
    rows = plan.table.to_pylist()
    factual_rows = [r for r in rows if r["kind"] == "factual"]
    assert factual_rows and all(json.loads(r["factual"])["view"] == "PA" for r in factual_rows)
    n_labels = 13
    views = set(read_index(phantom_index)["view"])  # all: the values the index holds
    per_family = (len(views) - 1) + 2 + n_labels  # view: all minus the factual's own, sex x age, findings
    assert len(rows) == len(factual_rows) * (1 + per_family)
    assert plan.skipped_noop == len(factual_rows)  # view=PA for a PA image
    assert "no-op" in plan.summary() and f"{len(rows)} samples" in plan.summary()
    assert label_of({"sex": "female", "age": 60.0}) == "age=60,sex=female"
    assert label_of({"findings": {"cardiomegaly": 1}}) == "findings.cardiomegaly=1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"interventions": [{"sax": "flip"}]}, "unknown covariate 'sax'.*did you mean 'sex'"),
        ({"interventions": [{"age": "flip"}]}, "'flip' does not apply to continuous 'age'"),
        ({"interventions": [{"sex": "other"}]}, "sex"),
        ({"interventions": [{"age": [300]}]}, "age"),
        ({"interventions": [{"findings": 1}]}, "names its label or says toggle"),
        ({"interventions": [{"findings.cardiomegally": [1]}]}, "cardiomegally"),
        ({"select": {"splits": ["tset"]}}, "did you mean 'test'"),
        ({"select": {"where": {"view": ["LAT"]}}}, "view"),
        ({"select": {"where": {"age": 50}}}, r"not a \[lo, hi\] range"),
        ({"shard_size": 0}, "shard_size must be >= 1"),
    ],
)
def test_bad_specs_name_the_key_and_the_allowed_values(phantom_index, spec, message):
    with pytest.raises(ConfigError, match=message):
        plan_of(phantom_index, **spec)


def test_spec_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("shard_size: many\n")
    with pytest.raises(ConfigError, match=r"plan.yaml.*shard_size.*expected int"):
        load_plan_spec(path)
    path.write_text("interventions:\n  - {sex: flip}\nsellect: {}\n")
    with pytest.raises(ConfigError, match="sellect"):
        load_plan_spec(path)


def test_an_empty_selection_is_an_error(phantom_index):
    with pytest.raises(ConfigError, match="matches none of the index's 8 images"):
        plan_of(phantom_index, select={"where": {"age": [0, 1]}})


def test_all_and_flip_range_over_the_values_the_index_holds(phantom_index):
    observed = set(read_index(phantom_index)["device"])
    plan = plan_of(phantom_index, interventions=[{"device": "all"}], include_reconstruction=False)
    devices = {json.loads(r)["device"] for r in plan.table["intervention"].to_pylist() if r != "{}"}
    assert devices <= observed and len(devices) >= 1
    explicit = plan_of(phantom_index, interventions=[{"device": ["agfa"]}])  # named: generated anyway
    assert "device=agfa" in explicit.table["label"].to_pylist()
