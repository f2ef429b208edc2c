"""The attribute SCM fitted on records simulated from the phantom's true SCM (phantom.yaml)."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from synthfair.causal import AttributeSCM, SCMConfig, index_records
from synthfair.causal.scm import encode_records
from synthfair.config import read_yaml
from synthfair.errors import ConfigError, SynthfairError, TaxonomyError
from synthfair.phantom.spec import load_spec
from synthfair.taxonomy import Taxonomy, load_taxonomy

TAX = load_taxonomy()
SPEC = load_spec(TAX)
TRUTH, ROLES = SPEC.scm, SPEC.roles
SITE = TAX.by_group("site")[0]
SITES = tuple(SPEC.raw["scm"][SITE]["logits"])  # the simulated sites
N = 5000
TYPO = ROLES.cardiomegaly[:-1]  # a label name with a typo


def _simulate(n, seed, do=None):
    rng = np.random.default_rng(seed)
    return [TRUTH.predict(TRUTH.sample_noise(rng), do=do) for _ in range(n)]


def _with_missing(records, seed, rate=0.1):
    """Blank each covariate (and each label) at random: missing completely at random."""
    rng = np.random.default_rng(seed)
    out = copy.deepcopy(records)
    for record in out:
        for spec in TAX:
            if spec.kind == "multilabel" and record[spec.name] is not None:
                for label in spec.values:
                    if rng.random() < rate:
                        record[spec.name][label] = None
            elif rng.random() < rate:
                record[spec.name] = None
    return out


def _frame(records):
    """Records in the index layout: ``<covariate>`` columns, ``findings.<label>`` Int8 with NA."""
    rows = []
    for record in records:
        row = {}
        for spec in TAX:
            value = record[spec.name]
            if spec.kind == "multilabel":
                row.update({f"{spec.name}.{label}": (value or {}).get(label) for label in spec.values})
            else:
                row[spec.name] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if "." in column:
            frame[column] = frame[column].astype("Int8")
    return frame


@pytest.fixture(scope="module")
def records():
    return _simulate(N, seed=0)


@pytest.fixture(scope="module")
def scm(records):
    return AttributeSCM(TAX).fit(_frame(records), seed=0)


@pytest.fixture(scope="module")
def missing_records(records):
    return _with_missing(records, seed=1)


@pytest.fixture(scope="module")
def scm_missing(missing_records):
    return AttributeSCM(TAX).fit(_frame(missing_records), seed=0)


def _label_logits(scm, records, label):
    node = scm.nodes_[ROLES.findings]
    X = node.features.transform(encode_records(TAX, records), len(records))
    return node.mechanism.logits(X)[:, TAX[ROLES.findings].values.index(label)]


# -- round trips -------------------------------------------------------------------------------------------
def test_null_counterfactual_returns_the_observed_record_exactly(scm_missing, missing_records):
    obs = missing_records[:2000]
    for cf, record in zip(
        scm_missing.counterfactual_batch(obs, {}, np.random.default_rng(2)), obs, strict=True
    ):
        assert cf.covariates == record and cf.changed == ()
    single = scm_missing.counterfactual(obs[0], {}, np.random.default_rng(3))
    assert single.covariates == obs[0] and set(single.noise) == set(TAX.names)


def test_abducted_noise_reproduces_every_observed_value_through_the_equations(scm, records):
    """predict(noise) without the factual record: every equation maps the abducted noise back to the value."""
    obs = records[:2000]
    noise = scm.abduct_batch(obs, np.random.default_rng(4))
    for predicted, record in zip(scm.predict_batch(noise), obs, strict=True):
        for spec in TAX:
            if spec.kind == "continuous":
                assert abs(predicted[spec.name] - record[spec.name]) < 1e-9
            else:
                assert predicted[spec.name] == record[spec.name], spec.name


def test_fit_on_records_with_missing_values_counts_observed_rows(scm_missing, missing_records):
    for spec in TAX:
        if spec.kind == "multilabel":
            expected = sum(any(v is not None for v in r[spec.name].values()) for r in missing_records)
        else:
            expected = sum(r[spec.name] is not None for r in missing_records)
        assert scm_missing.n_fit_[spec.name] == expected


def test_missing_values_stay_missing_unless_intervened(scm_missing):
    obs = {**_simulate(1, seed=5)[0], ROLES.age: None}
    obs[ROLES.findings] = {**obs[ROLES.findings], ROLES.pleural_effusion: None}
    other_site = next(s for s in SITES if s != obs[SITE])
    cf = scm_missing.counterfactual(obs, {SITE: other_site}, np.random.default_rng(6))
    assert cf.covariates[ROLES.age] is None and cf.covariates[SITE] == other_site
    assert cf.covariates[ROLES.findings][ROLES.pleural_effusion] is None
    cf = scm_missing.counterfactual(obs, {ROLES.age: 85.0}, np.random.default_rng(6))
    assert cf.covariates[ROLES.age] == 85.0 and ROLES.age in cf.changed
    assert cf.covariates[ROLES.findings][ROLES.pleural_effusion] is None


# -- do(): cut from parents, propagate to descendants, leave the rest ------------------------------------
def test_an_intervened_node_ignores_its_parents(scm, records):
    for site in SITES:
        sampled = scm.do({SITE: site, ROLES.age: 40.0, ROLES.race: "asian"}).sample(
            200, np.random.default_rng(7)
        )
        assert {r[ROLES.age] for r in sampled} == {40.0} and {r[ROLES.race] for r in sampled} == {"asian"}
    cfs = scm.counterfactual_batch(records[:500], {ROLES.age: 40.0}, np.random.default_rng(8))
    assert {cf.covariates[ROLES.age] for cf in cfs} == {40.0}  # whatever the site


def _do_value(name, record):
    spec = TAX[name]
    if spec.kind == "continuous":
        return 90.0
    if spec.kind == "multilabel":
        return {ROLES.cardiomegaly: 1 - record[name][ROLES.cardiomegaly]}
    return next(v for v in spec.values if v != record[name])


@pytest.mark.parametrize("name", TAX.names)
def test_only_the_intervened_node_and_its_descendants_change(scm, records, name):
    obs = records[:1000]
    downstream = {name, *TAX.descendants(name)}
    do = _do_value(name, obs[0])
    cfs = scm.counterfactual_batch(obs, {name: do}, np.random.default_rng(9))
    for cf, record in zip(cfs, obs, strict=True):
        assert set(cf.changed) <= downstream
        for other in set(TAX.names) - downstream:
            assert cf.covariates[other] == record[other]
    if TAX.descendants(name):  # the change propagates in some records
        assert any(set(cf.changed) - {name} for cf in cfs)
    single = scm.counterfactual(obs[0], {name: do}, np.random.default_rng(9))
    assert name in single.changed


def test_do_age_raises_findings_at_the_fitted_flip_rate(scm, records):
    """Cardiomegaly rises with age (fitted coefficient > 0); P(0 -> 1) = 1 - s(-eta') / s(-eta) per record."""
    node = scm.nodes_[ROLES.findings]
    label = TAX[ROLES.findings].values.index(ROLES.cardiomegaly)
    assert node.mechanism.coef_[label, node.features.feature_names_.index(ROLES.age)] > 0
    cfs = scm.counterfactual_batch(records, {ROLES.age: 90.0}, np.random.default_rng(10))
    before = np.array([r[ROLES.findings][ROLES.cardiomegaly] for r in records])
    after = np.array([cf.covariates[ROLES.findings][ROLES.cardiomegaly] for cf in cfs])
    assert after.sum() > before.sum() and np.all(after[before == 1] == 1)
    eta = _label_logits(scm, records, ROLES.cardiomegaly)
    eta_cf = _label_logits(scm, [{**r, ROLES.age: 90.0} for r in records], ROLES.cardiomegaly)
    p_flip = np.where(before == 0, 1 - expit(-eta_cf) / expit(-eta), 0.0)
    assert abs((after - before).sum() - p_flip.sum()) < 4 * np.sqrt((p_flip * (1 - p_flip)).sum())


def test_per_label_do_sets_one_label_and_keeps_the_others(scm, records):
    do = {ROLES.findings: {ROLES.cardiomegaly: 1}}
    obs = records[:1000]
    for cf, record in zip(scm.counterfactual_batch(obs, do, np.random.default_rng(11)), obs, strict=True):
        expected = {**record[ROLES.findings], ROLES.cardiomegaly: 1}
        assert cf.covariates[ROLES.findings] == expected
    sampled = scm.do(do).sample(2000, np.random.default_rng(12))
    assert all(r[ROLES.findings][ROLES.cardiomegaly] == 1 for r in sampled)
    assert 0.02 < np.mean([r[ROLES.findings][ROLES.pleural_effusion] for r in sampled]) < 0.3


@pytest.mark.parametrize("site", SITES)
def test_do_site_matches_the_true_interventional_distributions(scm, site):
    """Fit recovers the truth: race mix, device mix and mean age under do(site) (sampled from both SCMs)."""
    fitted = scm.do({SITE: site}).sample(4000, np.random.default_rng(13))
    truth = _simulate(4000, seed=14, do={SITE: site})
    for name in (ROLES.race, ROLES.device):
        f = pd.Series([r[name] for r in fitted]).value_counts(normalize=True)
        t = pd.Series([r[name] for r in truth]).value_counts(normalize=True)
        assert (f.sub(t, fill_value=0).abs() < 0.05).all(), (name, f, t)
    assert abs(np.mean([r[ROLES.age] for r in fitted]) - np.mean([r[ROLES.age] for r in truth])) < 1.5


def test_fit_recovers_the_age_coefficient(scm):
    truth = SPEC.raw["scm"][ROLES.findings]["labels"][ROLES.cardiomegaly]["effects"][ROLES.age]
    node = scm.nodes_[ROLES.findings]
    coef = node.mechanism.coef_[TAX[ROLES.findings].values.index(ROLES.cardiomegaly)]
    per = coef[node.features.feature_names_.index(ROLES.age)] / node.features.std_[ROLES.age] * truth["per"]
    assert abs(per - truth["coef"]) < 0.12


# -- determinism and persistence ------------------------------------------------------------------------
def test_same_seed_same_noise_and_counterfactuals(scm, records):
    obs, do = records[:200], {ROLES.age: 30.0}
    a = scm.counterfactual_batch(obs, do, np.random.default_rng(15))
    b = scm.counterfactual_batch(obs, do, np.random.default_rng(15))
    c = scm.counterfactual_batch(obs, do, np.random.default_rng(16))
    for x, y in zip(a, b, strict=True):
        assert x.covariates == y.covariates
        for name in TAX.names:
            np.testing.assert_array_equal(x.noise[name], y.noise[name])
    assert not np.array_equal(a[0].noise[SITE], c[0].noise[SITE])
    assert scm.sample(50, np.random.default_rng(17)) == scm.sample(50, np.random.default_rng(17))


def test_per_record_generators_make_noise_independent_of_the_batch(scm, records):
    obs, do = records[:6], {ROLES.age: 85.0}
    batch = scm.counterfactual_batch(obs, do, [np.random.default_rng([21, i]) for i in range(6)])
    alone = scm.counterfactual_batch(obs[4:5], do, [np.random.default_rng([21, 4])])[0]
    assert batch[4].covariates == alone.covariates
    for name in TAX.names:
        np.testing.assert_allclose(batch[4].noise[name], alone.noise[name], rtol=1e-12)
    with pytest.raises(SynthfairError, match="2 generators for 6 records"):
        scm.abduct_batch(obs, [np.random.default_rng(0)] * 2)


def test_save_load_round_trip_and_deterministic_bytes(scm, records, tmp_path):
    intervened = scm.do({ROLES.findings: {ROLES.cardiomegaly: 1}})
    path = intervened.save(tmp_path / "a")
    loaded = AttributeSCM.load(tmp_path / "a", TAX)
    assert loaded.save(tmp_path / "b").read_bytes() == path.read_bytes()
    state = json.loads(path.read_text())
    assert state["taxonomy_sha256"] == TAX.sha256 and state["config"] == {**vars(SCMConfig())}
    assert loaded.sample(100, np.random.default_rng(18)) == intervened.sample(100, np.random.default_rng(18))
    do = {ROLES.age: 75.0}
    a = scm.counterfactual_batch(records[:100], do, np.random.default_rng(19))
    b = loaded.counterfactual_batch(records[:100], do, np.random.default_rng(19))
    assert [x.covariates for x in a] != [x.covariates for x in b]  # loaded keeps do(cardiomegaly=1)
    plain = scm.save(tmp_path / "c")
    b = AttributeSCM.load(plain.parent).counterfactual_batch(records[:100], do, np.random.default_rng(19))
    assert [x.covariates for x in a] == [x.covariates for x in b]


def test_same_index_and_seed_same_fitted_bytes(records, tmp_path):
    frame = _frame(records[:1000])
    config = SCMConfig(max_fit_rows=800)  # a seeded subsample
    first = AttributeSCM(TAX, config).fit(frame, seed=3).save(tmp_path / "a")
    second = AttributeSCM(TAX, config).fit(frame, seed=3).save(tmp_path / "b")
    other = AttributeSCM(TAX, config).fit(frame, seed=4).save(tmp_path / "c")
    assert first.read_bytes() == second.read_bytes() != other.read_bytes()


def test_load_with_another_taxonomy_names_both_hashes(scm, tmp_path):
    scm.save(tmp_path)
    data = read_yaml(TAX.path)
    data["covariates"][ROLES.age]["description"] += " (edited)"  # not a covariate domain: still loads
    AttributeSCM.load(tmp_path, Taxonomy.from_dict(data))
    data["covariates"][ROLES.age]["range"], data["covariates"][ROLES.age]["bins"] = [0, 110], [0, 50, 110]
    other = Taxonomy.from_dict(data)
    with pytest.raises(
        SynthfairError, match=f"covariates {TAX.model_sha256[:12]}.*{other.model_sha256[:12]}"
    ):
        AttributeSCM.load(tmp_path, other)
    with pytest.raises(SynthfairError, match="no attribute SCM"):
        AttributeSCM.load(tmp_path / "nowhere")


def test_fit_on_an_ingested_index(tmp_path):
    from source_files import phantom_row, write_phantom_source
    from synthfair.index import read_index
    from synthfair.index.ingest import ingest

    rows = [phantom_row(i) for i in range(24)] + [phantom_row(24, age="", race="")]
    ingest("phantom", write_phantom_source(tmp_path / "src", rows), tmp_path / "index")
    index = read_index(tmp_path / "index")
    scm = AttributeSCM(TAX).fit(index, seed=0)
    obs = index_records(TAX, index)
    assert any(r[ROLES.age] is None for r in obs) and scm.n_fit_[ROLES.age] == 24
    cfs = scm.counterfactual_batch(obs, {}, np.random.default_rng(20))
    assert [cf.covariates for cf in cfs] == obs


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "do, error, match",
    [
        (
            {ROLES.age + "e": 50.0},
            TaxonomyError,
            f"unknown covariate '{ROLES.age}e'.*did you mean '{ROLES.age}'",
        ),
        ({ROLES.race: "martian"}, TaxonomyError, "martian"),
        ({ROLES.age: 500.0}, TaxonomyError, "500"),
        ({ROLES.findings: {TYPO: 1}}, TaxonomyError, f"{TYPO}.*did you mean '{ROLES.cardiomegaly}'"),
        ({ROLES.findings: {ROLES.cardiomegaly: 2}}, TaxonomyError, "is not 0 or 1"),
        ({ROLES.age: None}, ConfigError, "needs a value"),
    ],
)
def test_bad_interventions_name_the_value(scm, do, error, match):
    with pytest.raises(error, match=match):
        scm.do(do)


def test_bad_records_config_and_unfitted():
    with pytest.raises(ConfigError, match=r"SCMConfig.l2=-1.0"):
        SCMConfig(l2=-1.0)
    with pytest.raises(ConfigError, match=r"SCMConfig.max_iter=.x. is invalid.*integer"):
        SCMConfig(max_iter="x")
    with pytest.raises(SynthfairError, match="not fitted"):
        AttributeSCM(TAX).sample(1, np.random.default_rng(0))


def test_unknown_covariate_in_a_record(scm):
    with pytest.raises(TaxonomyError, match=f"'{ROLES.sex}x'"):
        scm.counterfactual({ROLES.sex + "x": None}, {}, np.random.default_rng(0))
