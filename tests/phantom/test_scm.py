import copy
from collections import Counter

import numpy as np
import pytest
import yaml

from synthfair.errors import ConfigError
from synthfair.phantom.scm import PhantomSCM
from synthfair.phantom.spec import default_spec_path
from synthfair.taxonomy import load_taxonomy

TAX = load_taxonomy()
SPEC = yaml.safe_load(default_spec_path().read_text())
ROLES = SPEC["roles"]
AGE = TAX.of_kind("continuous")[0]
FINDINGS = TAX.of_kind("multilabel")[0]
SITE = TAX.by_group("site")[0]
SITES = tuple(SPEC["scm"][SITE]["logits"])  # the simulated sites


def _scm(spec=None) -> PhantomSCM:
    return PhantomSCM(TAX, copy.deepcopy(SPEC["scm"]) if spec is None else spec)


def _noises(scm, n, seed=0):
    rng = np.random.default_rng(seed)
    return [scm.sample_noise(rng) for _ in range(n)]


def _other_value(name, value):
    """A value of covariate ``name`` different from ``value``, in its domain and in the phantom's support."""
    cov = TAX[name]
    if cov.kind == "continuous":
        return 90.0 if value < 50 else 20.0
    if cov.kind == "multilabel":
        return {label: 1 - flag for label, flag in value.items()}
    support = [v for v in SPEC["scm"][name]["logits"] if v != value]
    return support[0]


def test_noise_shapes_per_kind():
    scm = _scm()
    noise = scm.sample_noise(np.random.default_rng(0))
    assert set(noise) == set(TAX.names)
    for name, u in noise.items():
        cov = TAX[name]
        if cov.kind == "categorical":
            expected = len(cov.values)
        elif cov.kind == "continuous":
            expected = 1
        else:
            expected = len(SPEC["scm"][name]["labels"])  # one per simulated label
        assert u.shape == (expected,), name
        assert scm.noise_size(name) == expected


def test_same_seed_same_noise_and_covariates():
    scm = _scm()
    a, b = _noises(scm, 20, seed=7), _noises(scm, 20, seed=7)
    for na, nb in zip(a, b, strict=True):
        assert all(np.array_equal(na[k], nb[k]) for k in TAX.names)
        assert scm.predict(na) == scm.predict(nb)
    c = _noises(scm, 20, seed=8)
    assert [scm.predict(n) for n in a] != [scm.predict(n) for n in c]


def test_predicted_values_are_in_the_taxonomy_domain():
    scm = _scm()
    for noise in _noises(scm, 300):
        values = scm.predict(noise)
        assert set(values) == set(TAX.names)
        for name, value in values.items():
            assert TAX[name].check(value, where="test") == value
        labels = values[FINDINGS]
        simulated = set(scm.simulated_labels(FINDINGS))
        assert all(flag == 0 for label, flag in labels.items() if label not in simulated)


@pytest.mark.parametrize("name", TAX.names)
def test_do_changes_only_the_node_and_its_descendants(name):
    scm = _scm()
    downstream = {name, *TAX.descendants(name)}
    for noise in _noises(scm, 100):
        factual = scm.predict(noise)
        do = {name: _other_value(name, factual[name])}
        cf = scm.predict(noise, do)  # recomputed from noise alone, no factual to copy from
        assert cf == scm.predict(noise, do, factual=factual)
        assert cf[name] == TAX[name].check(do[name])
        for other in TAX.names:
            if other not in downstream:
                assert cf[other] == factual[other], (name, other)


def test_root_intervention_on_the_site():
    source = SITE
    assert TAX.parents(source) == ()
    scm = _scm()
    changed = Counter()
    for noise in _noises(scm, 200):
        factual = scm.predict(noise)
        cf = scm.predict(noise, {source: SITES[-1]}, factual=factual)
        assert cf == scm.predict(noise, {source: SITES[-1]})
        for other in TAX.names:
            changed[other] += cf[other] != factual[other]
    assert set(+changed) <= {source, *TAX.descendants(source)}
    assert {source, AGE, ROLES["race"], ROLES["device"]} <= set(+changed)  # the intervention propagates


def test_intervened_node_ignores_its_parents():
    scm = _scm()
    view, race = ROLES["view"], ROLES["race"]
    moved = 0  # subjects whose race the site does move when race is not intervened on
    for noise in _noises(scm, 100):
        factual = scm.predict(noise)
        # do on a child: its parents keep their factual values
        cf = scm.predict(noise, {view: "LATERAL"})
        for parent in TAX.parents(view):
            assert cf[parent] == factual[parent]
        # changing a parent does not move an intervened child
        for site in SITES:
            both = scm.predict(noise, {SITE: site, race: factual[race], view: factual[view]})
            assert both[race] == factual[race] and both[view] == factual[view]
            moved += scm.predict(noise, {SITE: site})[race] != factual[race]
    assert moved > 0


def test_null_intervention_reproduces_the_factual():
    scm = _scm()
    for noise in _noises(scm, 100):
        factual = scm.predict(noise)
        for name in TAX.names:
            assert scm.predict(noise, {name: factual[name]}) == factual
            assert scm.predict(noise, {name: factual[name]}, factual=factual) == factual
        assert scm.predict(noise, dict(factual)) == factual


def test_partial_multilabel_do_keeps_other_labels_mechanism():
    scm = _scm()
    label = ROLES["cardiomegaly"]
    others = [lab for lab in scm.simulated_labels(FINDINGS) if lab != label]
    for noise in _noises(scm, 200):
        for age in (20.0, 90.0):
            aged = scm.predict(noise, {AGE: age})
            for flag in (0, 1):
                cf = scm.predict(noise, {AGE: age, FINDINGS: {label: flag}})
                assert cf[FINDINGS][label] == flag
                assert all(cf[FINDINGS][o] == aged[FINDINGS][o] for o in others)


def _age_dependent_labels():
    labels = SPEC["scm"][FINDINGS]["labels"]
    return [lab for lab, spec in labels.items() if spec.get("effects", {}).get(AGE, {}).get("coef", 0) > 0]


def test_older_never_has_fewer_age_dependent_findings():
    scm = _scm()
    labels = _age_dependent_labels()
    assert labels
    young_total = old_total = 0
    for noise in _noises(scm, 500):
        young = scm.predict(noise, {AGE: 20})[FINDINGS]
        old = scm.predict(noise, {AGE: 90})[FINDINGS]
        for label in labels:
            assert old[label] >= young[label]  # same noise: per subject, not just on average
            young_total += young[label]
            old_total += old[label]
    assert old_total > young_total


@pytest.fixture(scope="module")
def population():
    scm = _scm()
    return [scm.predict(noise) for noise in _noises(scm, 4000, seed=1)]


def test_sicker_patients_get_ap_films(population):
    view, findings = ROLES["view"], ROLES["findings"]
    sick = [v[view] == "AP" for v in population if any(v[findings].values())]
    well = [v[view] == "AP" for v in population if not any(v[findings].values())]
    assert len(sick) > 100 and len(well) > 100
    assert np.mean(sick) > np.mean(well) + 0.1


def test_site_confounds_race(population):
    race, races = ROLES["race"], TAX[ROLES["race"]].values
    by_site = {}
    for v in population:
        by_site.setdefault(v[SITE], Counter())[v[race]] += 1
    assert set(by_site) == set(SITES)
    dist = {s: np.array([c[r] for r in races]) / sum(c.values()) for s, c in by_site.items()}
    sites = sorted(dist)
    for i, a in enumerate(sites):
        for b in sites[i + 1 :]:
            assert 0.5 * np.abs(dist[a] - dist[b]).sum() > 0.2, (a, b)
    # phantom.yaml: site c serves a mostly Asian population
    assert max(dist, key=lambda s: dist[s][races.index("asian")]) == "phantom_site_c"


# -- spec errors ---------------------------------------------------------------------------------------


def test_unknown_covariate_key():
    spec = copy.deepcopy(SPEC["scm"])
    spec["agee"] = spec.pop(AGE)
    with pytest.raises(ConfigError, match=r"scm\.agee is not a covariate.*did you mean 'age'"):
        PhantomSCM(TAX, spec, where="phantom.yaml:scm")


def test_missing_covariate():
    spec = copy.deepcopy(SPEC["scm"])
    del spec["device"]
    with pytest.raises(ConfigError, match=r"scm\.device has no structural equation"):
        PhantomSCM(TAX, spec, where="phantom.yaml:scm")


def test_effect_from_a_non_parent():
    spec = copy.deepcopy(SPEC["scm"])
    spec[FINDINGS]["labels"]["cardiomegaly"]["effects"]["device"] = {"philips": 0.5}
    with pytest.raises(ConfigError) as err:
        PhantomSCM(TAX, spec, where="phantom.yaml:scm")
    message = str(err.value)
    assert "phantom.yaml:scm.findings.labels.cardiomegaly.effects.device" in message
    assert "is not a parent of 'findings'" in message
    assert str(list(TAX.parents(FINDINGS))) in message


def test_unknown_value_in_logits():
    spec = copy.deepcopy(SPEC["scm"])
    spec["view"]["logits"]["OBLIQUE"] = 0.0
    with pytest.raises(ConfigError, match="OBLIQUE"):
        PhantomSCM(TAX, spec)


@pytest.mark.parametrize(
    "path, value, needle",
    [
        (("view", "effects", "source"), {"phantom_site_z": {"AP": 1.0}}, "phantom_site_z"),
        (("view", "effects", "source"), {"phantom_site_b": {"OBLIQUE": 1.0}}, "OBLIQUE"),
        (("view", "effects", "source"), {"phantom_site_b": 0.7}, "must be a mapping"),
        (("findings", "labels"), {"cardiomegally": {"intercept": -2.0}}, "cardiomegally"),
        (("age", "effects", "source"), {"phantom_site_a": {"AP": 1.0}}, "must be a number"),
        (("age", "lo"), 500, "500"),
    ],
)
def test_bad_values_in_equations(path, value, needle):
    spec = copy.deepcopy(SPEC["scm"])
    _set(spec, path, value)
    with pytest.raises(ConfigError, match=needle):
        PhantomSCM(TAX, spec)


def _set(spec, path, value):
    node = spec
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()
_AGE_EFFECT = ("findings", "labels", "cardiomegaly", "effects", "age")


@pytest.mark.parametrize(
    "path, value",
    [
        pytest.param(
            ("age", "lo"),
            _DELETE,
            id="missing-lo",
        ),
        pytest.param(
            (*_AGE_EFFECT, "per"),
            _DELETE,
            id="missing-per",
        ),
        pytest.param(
            ("sex", "logits", "female"),
            "high",
            id="text-logit",
        ),
        pytest.param(
            ("findings", "labels", "cardiomegaly", "intercept"),
            "low",
            id="text-intercept",
        ),
        pytest.param(
            (*_AGE_EFFECT, "per"),
            0,
            id="zero-per",
        ),
        pytest.param(
            ("sex", "logits"),
            _DELETE,
            id="no-logits",
        ),
        pytest.param(
            ("age", "hi"),
            10,
            id="lo-above-hi",
        ),
    ],
)
def test_malformed_equation_is_a_config_error(path, value):
    spec = copy.deepcopy(SPEC["scm"])
    _set(spec, path, value)
    with pytest.raises(ConfigError, match=rf"scm\.{path[0]}"):
        PhantomSCM(TAX, spec, where="phantom.yaml:scm")


@pytest.mark.parametrize(
    "do",
    [
        {AGE: 200.0},
        {AGE: "old"},
        {"view": "OBLIQUE"},
        {FINDINGS: {"not_a_finding": 1}},
        {FINDINGS: {"cardiomegaly": 2}},
        {"agee": 50.0},
        {AGE: None},
    ],
)
def test_do_outside_the_domain(do):
    scm = _scm()
    noise = scm.sample_noise(np.random.default_rng(0))
    with pytest.raises(ConfigError):
        scm.predict(noise, do)
