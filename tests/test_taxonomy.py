import copy
import math
from pathlib import Path

import pytest
import yaml

from synthfair.errors import TaxonomyError
from synthfair.taxonomy import GROUPS, KINDS, Taxonomy, load_taxonomy

# A tiny taxonomy: YAML order age, sex, labels, site; site and sex are roots.
TINY = {
    "schema": "synthfair.taxonomy/1",
    "groups": {"patient": "who", "acquisition": "how", "site": "where"},
    "covariates": {
        "age": {
            "kind": "continuous",
            "group": "patient",
            "unit": "years",
            "range": [0, 100],
            "bins": [0, 50, 100],
        },
        "sex": {"kind": "categorical", "group": "patient", "values": ["female", "male"]},
        "labels": {"kind": "multilabel", "group": "patient", "values": ["edema", "effusion"]},
        "site": {"kind": "categorical", "group": "site", "values": ["a", "b"]},
    },
    "graph": {"site": [], "age": ["site"], "sex": [], "labels": ["age", "sex"]},
    "sources": {
        "src": {
            "description": "a test source",
            "covariates": {
                "sex": {"field": "Sex", "map": {"F": "female", "M": "male", "U": None}},
                "labels": {
                    "field": ["Edema", "Effusion"],
                    "map": {
                        "Edema": "edema",
                        "Effusion": "effusion",
                        "Pleural Effusion": "effusion",
                        "Other": None,
                    },
                },
                "age": {"field": "Age"},
            },
        }
    },
}

DELETE = object()


def write(tmp_path: Path, data: dict, name: str = "taxonomy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edited(key: str, value) -> dict:
    """A copy of TINY with the dotted ``key`` set to ``value`` (or deleted)."""
    data = copy.deepcopy(TINY)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.fixture
def tiny(tmp_path) -> Taxonomy:
    return Taxonomy.load(write(tmp_path, TINY))


# --- the packaged taxonomy ---------------------------------------------------------------------------------


def test_default_taxonomy_loads():
    tax = load_taxonomy()
    assert tax.names == ("age", "sex", "race", "findings", "view", "device", "source")
    assert tax.path.is_file() and tax.path.name == "taxonomy.yaml"
    assert set(tax.groups) == set(GROUPS)
    assert tax["age"].range == (0.0, 120.0) and tax["age"].unit == "years"
    assert "no_finding" not in tax["findings"].values
    assert load_taxonomy() is tax  # cached


def test_default_graph_order_puts_parents_first():
    tax = load_taxonomy()
    order = tax.topological_order()
    assert order == ("sex", "source", "age", "race", "findings", "view", "device")
    for cov in tax:
        assert all(order.index(p) < order.index(cov.name) for p in cov.parents)


def test_repo_root_symlink_points_at_the_packaged_file():
    link = Path(__file__).resolve().parents[1] / "taxonomy.yaml"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == load_taxonomy().path.resolve()


def test_default_phantom_maps_are_identities():
    tax = load_taxonomy()
    for name, mapping in tax.sources["phantom"].items():
        if mapping.map is not None:
            assert all(raw == value for raw, value in mapping.map.items()), name
            assert all(tax[name].check(value) == value for value in mapping.map.values())


# --- graph ------------------------------------------------------------------------------------------------


def test_graph_queries(tiny):
    # ready first: sex and site are roots; sex comes first in YAML order
    assert tiny.topological_order() == ("sex", "site", "age", "labels")
    assert tiny.parents("labels") == ("age", "sex")
    assert tiny.children("site") == ("age",)
    assert tiny.ancestors("labels") == ("sex", "site", "age")
    assert tiny.descendants("site") == ("age", "labels")
    assert tiny.descendants("labels") == ()
    assert tiny.by_group("patient") == ("age", "sex", "labels")
    assert tiny.by_group("acquisition") == ()
    assert tiny.of_kind("continuous") == ("age",)
    assert [c.name for c in tiny] == list(tiny.names) and len(tiny) == 4 and "age" in tiny


def test_ties_follow_yaml_order(tmp_path):
    data = copy.deepcopy(TINY)
    data["covariates"] = dict(reversed(list(data["covariates"].items())))  # site, labels, sex, age
    assert Taxonomy.from_dict(data).topological_order() == ("site", "sex", "age", "labels")


def test_unknown_names_suggest(tiny):
    with pytest.raises(TaxonomyError, match="did you mean 'sex'"):
        tiny["sx"]
    with pytest.raises(TaxonomyError, match="did you mean 'site'"):
        tiny.by_group("sit")
    with pytest.raises(TaxonomyError, match="did you mean 'multilabel'"):
        tiny.of_kind("multi_label")
    assert set(KINDS) == {"continuous", "categorical", "multilabel"}


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, fragments",
    [
        ("covarites", {}, ["unknown key 'covarites'", "did you mean 'covariates'", "allowed keys"]),
        (
            "schema",
            "synthfair.taxonomy/2",
            ["schema", "'synthfair.taxonomy/2'", "use schema: synthfair.taxonomy/1"],
        ),
        ("groups.site", DELETE, ["groups", "missing required key 'site'"]),
        ("groups.sites", "x", ["groups.sites", "did you mean 'site'"]),
        ("covariates.age.rnage", [0, 1], ["covariates.age.rnage", "did you mean 'range'", "allowed keys"]),
        ("covariates.sex.kind", "categorial", ["covariates.sex.kind", "'categorial'", "'categorical'"]),
        (
            "covariates.sex.group",
            "patients",
            ["covariates.sex.group", "'patients'", "did you mean 'patient'"],
        ),
        (
            "covariates.sex.values",
            ["female", "male", "female"],
            ["covariates.sex.values", "duplicate", "'female'"],
        ),
        ("covariates.sex.values", [], ["covariates.sex.values", "non-empty list"]),
        ("covariates.sex.values", [True, "male"], ["covariates.sex.values[0]", "True", "quote it"]),
        ("covariates.sex.range", [0, 1], ["covariates.sex.range", "only for continuous"]),
        ("covariates.age.values", ["young"], ["covariates.age.values", "range: [lo, hi]"]),
        ("covariates.age.range", DELETE, ["covariates.age", "'range'", "add range: [lo, hi]"]),
        ("covariates.age.range", [100, 0], ["covariates.age.range", "lo < hi", "[100, 0]"]),
        ("covariates.age.bins", [0, 50, 150], ["covariates.age.bins", "['150']", "outside range [0, 100]"]),
        ("covariates.age.bins", [10, 50, 100], ["covariates.age.bins", "do not cover", "start bins at 0"]),
        ("covariates.age.bins", [0, 60, 50, 100], ["covariates.age.bins", "increasing", "[0, 60, 50, 100]"]),
        (
            "covariates.Age",
            {"kind": "continuous", "group": "patient"},
            ["covariates.Age", "lower_snake_case"],
        ),
        ("graph.age", ["labels"], ["graph", "cycle: age -> labels -> age", "acyclic"]),
        ("graph.age", ["age"], ["cycle: age -> age"]),
        ("graph.labels", ["age", "sx"], ["graph.labels", "parent 'sx'", "did you mean 'sex'"]),
        ("graph.sex", DELETE, ["graph", "['sex']", "missing from the graph", "`sex: []`"]),
        ("graph.race", [], ["graph.race", "unknown graph node 'race'", "declare it under covariates"]),
        ("graph.age", "site", ["graph.age", "list of parents", "'site'"]),
        ("sources.src.covarites", {}, ["sources.src.covarites", "did you mean 'covariates'"]),
        ("sources.src.covariates.sx", {"field": "S"}, ["sources.src.covariates.sx", "did you mean 'sex'"]),
        (
            "sources.src.covariates.sex.fields",
            "S",
            ["sources.src.covariates.sex.fields", "did you mean 'field'"],
        ),
        ("sources.src.covariates.sex.field", [], ["sources.src.covariates.sex.field", "field name"]),
        (
            "sources.src.covariates.sex.map.F",
            "femal",
            ["sources.src.covariates.sex.map.F", "'femal'", "'female'"],
        ),
        ("sources.src.covariates.labels.map.Edema", "oedema", ["labels.map.Edema", "'oedema'", "'edema'"]),
        (
            "sources.src.covariates.age.map",
            {"adult": 200},
            ["sources.src.covariates.age.map.adult", "200", "[0, 100]"],
        ),
    ],
)
def test_invalid_taxonomy_names_file_key_value_and_fix(tmp_path, key, value, fragments):
    path = write(tmp_path, edited(key, value))
    with pytest.raises(TaxonomyError) as info:
        Taxonomy.load(path)
    message = str(info.value)
    assert str(path) in message
    assert info.value.hint, message  # every validation error says what to do
    for fragment in fragments:
        assert fragment in message


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "taxonomy.yaml"
    path.write_text("schema: synthfair.taxonomy/1\nschema: synthfair.taxonomy/1\n")
    with pytest.raises(TaxonomyError, match="duplicate key 'schema'") as info:
        Taxonomy.load(path)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("schema: [unclosed\n")
    with pytest.raises(TaxonomyError, match="invalid YAML") as info:
        Taxonomy.load(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "nope.yaml")


# --- values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("age", 45, 45.0),
        ("age", 0, 0.0),
        ("age", 100.0, 100.0),
        ("age", None, None),
        ("age", math.nan, None),
        ("sex", "female", "female"),
        ("sex", None, None),
        ("labels", {"edema"}, {"edema": 1, "effusion": 0}),
        ("labels", [], {"edema": 0, "effusion": 0}),
        ("labels", {"effusion": 1.0, "edema": False}, {"edema": 0, "effusion": 1}),
        ("labels", {"edema": 1, "effusion": None}, {"edema": 1}),
    ],
)
def test_check_accepts_values_in_the_domain(tiny, name, value, expected):
    assert tiny[name].check(value) == expected


@pytest.mark.parametrize(
    "name, value, fragments",
    [
        ("age", -1, ["age=-1", "[0, 100] years"]),
        ("age", 100.5, ["age=100.5"]),
        ("age", "45", ["age='45'"]),
        ("age", True, ["age=True"]),
        ("sex", "Female", ["sex='Female'", "['female', 'male']", "did you mean 'female'"]),
        ("sex", 1, ["sex=1"]),
        ("labels", {"edma": 1}, ["labels='edma'", "did you mean 'edema'"]),
        ("labels", {"edema": -1}, ["labels['edema']=-1", "not 0 or 1", "uncertain"]),
        ("labels", "edema", ["labels='edema'", "set of labels"]),
    ],
)
def test_check_rejects_values_outside_the_domain(tiny, name, value, fragments):
    with pytest.raises(TaxonomyError) as info:
        tiny[name].check(value, where="index.parquet row 7")
    message = str(info.value)
    assert message.startswith("index.parquet row 7: ")
    for fragment in fragments:
        assert fragment in message


def test_check_record(tiny):
    record = {"age": 30, "sex": None, "labels": {"edema"}}
    assert tiny.check_record(record) == {"age": 30.0, "sex": None, "labels": {"edema": 1, "effusion": 0}}
    with pytest.raises(TaxonomyError, match="row 3: unknown covariate 'sexe' \\(did you mean 'sex'\\?\\)"):
        tiny.check_record({"sexe": "male"}, where="row 3")
    with pytest.raises(TaxonomyError, match="site='c'"):
        tiny.check_record({"site": "c"})


@pytest.mark.parametrize(
    "value, label", [(0, "[0, 50)"), (49.9, "[0, 50)"), (50, "[50, 100]"), (100, "[50, 100]")]
)
def test_bin_label(tiny, value, label):
    assert tiny["age"].bin_labels == ("[0, 50)", "[50, 100]")
    assert tiny["age"].bin_label(value) == label


def test_bin_label_of_missing_out_of_range_and_unbinned(tiny):
    assert tiny["age"].bin_label(None) is None
    with pytest.raises(TaxonomyError, match="age=101"):
        tiny["age"].bin_label(101)
    with pytest.raises(TaxonomyError, match="no bins"):
        tiny["sex"].bin_label("male")


def test_flat_columns_flatten_and_unflatten(tiny):
    assert tiny.columns() == ("age", "sex", "labels.edema", "labels.effusion", "site")
    assert tiny.columns("labels") == ("labels.edema", "labels.effusion")
    assert tiny.label_columns() == ("labels.edema", "labels.effusion")
    record = {"age": 40.0, "sex": "female", "labels": {"edema": 1}, "site": None}
    flat = tiny.flatten(record)
    assert flat == {"age": 40.0, "sex": "female", "labels.edema": 1, "labels.effusion": None, "site": None}
    assert tiny.flatten(record, label=lambda v: int(v or 0))["labels.effusion"] == 0
    assert tiny.unflatten(flat) == {**record, "labels": {"edema": 1, "effusion": None}}
    assert tiny.unflatten({"age": 3.0}) == {"age": 3.0}  # covariates without columns are left out
    assert tiny.column("labels.edema") == (tiny["labels"], "edema")
    assert tiny.column("age") == (tiny["age"], None)
    with pytest.raises(TaxonomyError, match="labels.edma.*did you mean 'labels.edema'"):
        tiny.column("labels.edma")


def test_group_labels_bin_continuous_covariates_and_name_missing_values(tiny):
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"age": [10.0, 60.0, None], "sex": ["female", None, "male"]}, index=[7, 8, 9])
    labels = tiny.group_labels(frame, ["age", "sex"])
    assert labels.index.tolist() == [7, 8, 9]
    assert labels["age"].tolist() == ["[0, 50)", "[50, 100]", "(missing)"]
    assert labels["sex"].tolist() == ["female", "(missing)", "male"]
    assert tiny["age"].bin_codes([10.0, None, 100.0]).tolist() == [0, -1, 1]
    with pytest.raises(TaxonomyError, match="age=101 at position 1"):
        tiny["age"].bin_codes(np.array([1.0, 101.0]))


def test_default_age_bins():
    age = load_taxonomy()["age"]
    assert [age.bin_label(v) for v in (0, 39.5, 40, 119, 120)] == ["[0, 20)", "[20, 40)", "[40, 60)"] + [
        "[80, 120]"
    ] * 2


# --- hash -------------------------------------------------------------------------------------------------


def test_sha256_ignores_formatting_and_comments(tmp_path):
    block = write(tmp_path, TINY, "block.yaml")
    flow = tmp_path / "flow.yaml"
    reordered = dict(reversed(list(TINY.items())))
    flow.write_text("# a comment\n" + yaml.safe_dump(reordered, default_flow_style=True, width=60))
    assert Taxonomy.load(block).sha256 == Taxonomy.load(flow).sha256 == Taxonomy.from_dict(TINY).sha256
    assert len(Taxonomy.load(block).sha256) == 64


@pytest.mark.parametrize(
    "key, value",
    [
        ("covariates.sex.description", "changed"),
        ("graph.sex", ["site"]),
        ("sources.src.covariates.sex.map.X", None),
    ],
)
def test_sha256_changes_with_content(key, value):
    assert Taxonomy.from_dict(edited(key, value)).sha256 != Taxonomy.from_dict(TINY).sha256


def test_sha256_tells_string_and_number_keys_apart():
    a = edited("sources.src.covariates.sex.map", {"1": "female"})
    b = edited("sources.src.covariates.sex.map", {1: "female"})
    assert Taxonomy.from_dict(a).sha256 != Taxonomy.from_dict(b).sha256


# --- source mappings --------------------------------------------------------------------------------------


def test_harmonize_categorical(tiny):
    sex = tiny.mapping("src", "sex")
    assert sex.fields == ("Sex",)
    assert sex.harmonize("F") == "female"
    assert sex.harmonize("U") is None  # mapped to null: missing
    assert sex.harmonize(None) is None
    assert tiny.mapping("src", "age").harmonize(61) == 61.0  # no map: checked as is


def test_harmonize_multilabel(tiny):
    labels = tiny.mapping("src", "labels")
    assert labels.harmonize(["Edema", "Other"]) == {"edema": 1, "effusion": 0}
    assert labels.harmonize({"Effusion": 0, "Pleural Effusion": 1, "Other": 1}) == {"effusion": 1}
    assert labels.harmonize({"Edema": None}) == {}


def test_unmapped_raw_value_names_the_entry_to_extend(tiny):
    with pytest.raises(TaxonomyError) as info:
        tiny.mapping("src", "sex").harmonize("Female", where="train.csv row 12")
    message = str(info.value)
    for fragment in ["train.csv row 12", "'Female'", "'sex'", "'src'", "field Sex"]:
        assert fragment in message
    assert f"add it under sources.src.covariates.sex.map in {tiny.path}" in info.value.hint


def test_unmapped_raw_label(tiny):
    with pytest.raises(TaxonomyError, match="unmapped raw value 'Edemaa'.*did you mean 'Edema'"):
        tiny.mapping("src", "labels").harmonize({"Edemaa": 1})


def test_mapping_lookup_errors(tiny):
    with pytest.raises(TaxonomyError, match="unknown source 'scr' \\(did you mean 'src'\\?\\)"):
        tiny.mapping("scr", "sex")
    with pytest.raises(TaxonomyError) as info:
        tiny.mapping("src", "site")
    assert "sources.src.covariates.site" in info.value.hint
