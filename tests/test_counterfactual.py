import numpy as np
import pytest

from synthfair.counterfactual import CounterfactualEngine, EngineConfig, parse_do
from synthfair.errors import ConfigError, SynthfairError
from synthfair.model.data import CacheDataset
from synthfair.taxonomy import TaxonomyError


@pytest.fixture(scope="module")
def samples(cache):
    data = CacheDataset(cache)
    return [data.image(i) for i in range(5)], [data.covariates(i) for i in range(5)]


def test_null_intervention_returns_the_factual_image(trained_run, samples):
    engine = CounterfactualEngine.load(trained_run, EngineConfig(steps=8, batch_size=4, abduction="ddim"))
    images, factuals = samples
    results = engine(images, factuals, [{}] * 5, seeds=range(5))
    for image, result in zip(images, results, strict=True):
        np.testing.assert_allclose(result.image, image, atol=1e-5)
        assert result.changed == () and result.covariates == result.factual and result.propagated
        assert 0 < result.reconstruction_error < 0.1


def test_intervention_changes_image_and_covariates_deterministically(trained_run, samples):
    engine = CounterfactualEngine.load(trained_run, EngineConfig(steps=8, batch_size=4, guidance=2.0))
    images, factuals = samples
    do = {"sex": "male" if factuals[0]["sex"] == "female" else "female"}
    first = engine(images[:1], factuals[:1], [do], seeds=[7])[0]
    assert first.covariates["sex"] == do["sex"] and "sex" in first.changed
    assert np.abs(first.image - images[0]).mean() > 1e-4
    again = engine(images[:1], factuals[:1], [do], seeds=[7])[0]
    assert first.image.tobytes() == again.image.tobytes()
    # the same sample in a batch with others: the same bytes
    mixed = engine([images[3], images[0], images[2]], [factuals[3], factuals[0], factuals[2]],
                   [{}, do, {"age": 80.0}], seeds=[1, 7, 2])  # fmt: skip
    assert mixed[1].image.tobytes() == first.image.tobytes()


def test_a_parent_intervention_propagates_to_descendants(trained_run, samples):
    engine = CounterfactualEngine.load(trained_run, EngineConfig(steps=4, batch_size=2))
    images, factuals = samples
    result = engine(images[:1], factuals[:1], [{"source": "phantom_site_b"}], seeds=[0])[0]
    assert result.covariates["source"] == "phantom_site_b"
    for name in ("sex", "findings"):  # not descendants of the site: kept
        assert result.covariates[name] == factuals[0][name]
    no_scm = CounterfactualEngine(engine.model, None, engine.config)
    plain = no_scm(images[:1], factuals[:1], [{"age": 90.0}], seeds=[0])[0]
    assert plain.covariates["age"] == 90.0 and plain.changed == ("age",) and not plain.propagated


def test_parse_do_and_bad_input(trained_run, samples):
    assert parse_do(["age=80", "sex=female", "findings.cardiomegaly=1"]) == {
        "age": 80.0,
        "sex": "female",
        "findings": {"cardiomegaly": 1},
    }
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_do(["age80"])
    with pytest.raises(TaxonomyError, match="did you mean 'sex'"):
        parse_do(["sax=female"])
    with pytest.raises(TaxonomyError):
        parse_do(["age=300"])
    with pytest.raises(ConfigError, match="one label at a time"):
        parse_do(["findings=1"])
    engine = CounterfactualEngine.load(trained_run, EngineConfig(steps=2, batch_size=2))
    images, factuals = samples
    with pytest.raises(SynthfairError, match="does not match the model"):
        engine([np.zeros((8, 8), np.float32)], factuals[:1], [{}], seeds=[0])
    with pytest.raises(SynthfairError, match="one of each"):
        engine(images[:2], factuals[:1], [{}], seeds=[0])


def test_ddpm_abduction_reconstructs_exactly_and_is_seeded_per_sample(trained_run, samples):
    engine = CounterfactualEngine.load(trained_run, EngineConfig(steps=6, batch_size=4, abduction="ddpm"))
    images, factuals = samples
    null = engine(images[:2], factuals[:2], [{}, {}], seeds=[0, 1])
    for image, result in zip(images, null, strict=False):
        np.testing.assert_allclose(result.image, image, atol=1e-5)
        assert result.reconstruction_error == 0
    do = {"age": 85.0}
    alone = engine(images[:1], factuals[:1], [do], seeds=[5])[0]
    mixed = engine([images[2], images[0]], [factuals[2], factuals[0]], [{}, do], seeds=[3, 5])
    assert mixed[1].image.tobytes() == alone.image.tobytes()
    other_seed = engine(images[:1], factuals[:1], [do], seeds=[6])[0]
    assert np.abs(alone.image - images[0]).mean() > 1e-4
    assert alone.image.tobytes() != other_seed.image.tobytes()  # the noise maps are drawn from the seed
    with pytest.raises(ConfigError, match="abduction"):
        EngineConfig(abduction="sde")
