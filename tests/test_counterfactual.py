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
    mixed = engine(
        [images[3], images[0], images[2]],
        [factuals[3], factuals[0], factuals[2]],
        [{}, do, {"age": 80.0}],
        seeds=[1, 7, 2],
    )
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


def _flip(record, name="sex"):
    return {name: "male" if record[name] == "female" else "female"}


def _change(results, images):
    return np.mean([np.abs(r.image - x).mean() for r, x in zip(results, images, strict=True)])


def test_factored_guidance_guides_only_the_groups_it_names(trained_run, samples):
    images, factuals = samples
    plain = CounterfactualEngine.load(trained_run, EngineConfig(steps=5, batch_size=4))
    sex_only = CounterfactualEngine.load(
        trained_run, EngineConfig(steps=5, batch_size=4, group_guidance={"sex": 3.0})
    )
    dos = [{"age": 80.0}, _flip(factuals[1])]
    a, b = plain(images[:2], factuals[:2], dos, [0, 1]), sex_only(images[:2], factuals[:2], dos, [0, 1])
    assert a[0].image.tobytes() == b[0].image.tobytes()  # age is not guided by either
    assert np.abs(a[1].image - b[1].image).mean() > 1e-5
    away = CounterfactualEngine.load(
        trained_run, EngineConfig(steps=5, batch_size=4, group_guidance={"sex": 3.0}, guide="factual")
    )
    assert away(images[1:2], factuals[1:2], dos[1:], [1])[0].image.tobytes() != b[1].image.tobytes()
    null = away(images[:1], factuals[:1], [{}], [0])[0]  # the null intervention stays exact
    np.testing.assert_allclose(null.image, images[0], atol=1e-5)


def test_guidance_of_a_group_the_model_does_not_have_is_refused(trained_run):
    with pytest.raises(ConfigError, match=r"'sexx'.*did you mean 'sex'") as err:
        CounterfactualEngine.load(trained_run, EngineConfig(steps=5, group_guidance={"sexx": 3.0}))
    assert "groups: age, sex" in err.value.hint


def test_skip_keeps_more_of_the_image_and_the_null_exact(trained_run, samples):
    images, factuals = samples
    dos = [_flip(f) for f in factuals]
    full = CounterfactualEngine.load(trained_run, EngineConfig(steps=10, batch_size=5))(
        images, factuals, dos, range(5)
    )
    late = CounterfactualEngine.load(trained_run, EngineConfig(steps=10, skip=0.6, batch_size=5))
    skipped = late(images, factuals, dos, range(5))
    assert 0 < _change(skipped, images) < _change(full, images)
    np.testing.assert_allclose(late(images[:1], factuals[:1], [{}], [0])[0].image, images[0], atol=1e-5)


def test_local_edits_are_masked_and_global_ones_are_not(trained_run, samples):
    images, factuals = samples
    plain = CounterfactualEngine.load(trained_run, EngineConfig(steps=6, batch_size=4))
    masked = CounterfactualEngine.load(
        trained_run, EngineConfig(steps=6, batch_size=4, mask=True, mask_threshold=0.6)
    )
    finding = {"findings": {"cardiomegaly": 1 - (factuals[0]["findings"] or {}).get("cardiomegaly", 0)}}
    dos, seeds = [finding, _flip(factuals[1])], [3, 4]
    a, b = plain(images[:2], factuals[:2], dos, seeds), masked(images[:2], factuals[:2], dos, seeds)
    assert a[1].image.tobytes() == b[1].image.tobytes()  # sex acts everywhere: no mask
    untouched = b[0].image == images[0]
    assert 0.2 < untouched.mean() < 1.0  # the finding's edit is confined to part of the image
    assert np.abs(a[0].image - images[0])[untouched].mean() > 0  # where the unmasked edit also changed things


def test_network_evaluations_are_counted_exactly(trained_run, samples):
    images, factuals = samples
    guidance = {"sex": 2.0, "age": 3.0}
    config = EngineConfig(
        steps=6, skip=0.34, batch_size=1, group_guidance=guidance, mask=True, mask_evaluations=2
    )
    engine = CounterfactualEngine.load(trained_run, config)
    calls = []
    forward = engine.model.unet.forward
    engine.model.unet.forward = lambda x, *a, **k: calls.append(x.shape[0]) or forward(x, *a, **k)
    finding = {"findings": {"cardiomegaly": 1 - (factuals[0]["findings"] or {}).get("cardiomegaly", 0)}}
    for do, local in ((_flip(factuals[0]) | {"age": 33.0}, False), (finding, True), ({}, False)):
        calls.clear()
        result = engine(images[:1], factuals[:1], [do], [0])[0]
        assert sum(calls) == config.evaluations(result.changed, local), (do, calls)
    assert config.evaluations(("sex", "age")) == 4 * 4  # 4 replayed steps x (maps + cond + 2 references)
    with pytest.raises(ConfigError, match="skip"):
        EngineConfig(steps=4, skip=0.9)
    with pytest.raises(ConfigError, match="ddpm"):
        EngineConfig(abduction="ddim", mask=True)


def test_recommended_settings_come_from_the_model_directory(trained_run, tmp_path):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_run / "model", model)
    assert EngineConfig.recommended(model) == EngineConfig()  # no engine.json: the defaults
    (model / "engine.json").write_text(json.dumps({"steps": 7, "group_guidance": {"sex": 2}, "mask": True}))
    assert EngineConfig.recommended(model).steps == 7 and EngineConfig.recommended(model).scale("sex") == 2.0
    assert EngineConfig.recommended(model, steps=3, guidance=None).steps == 3  # None: not given
    assert CounterfactualEngine.load(model).config.mask
    (model / "engine.json").write_text(json.dumps({"stpes": 7}))
    with pytest.raises(ConfigError, match="engine.json.*did you mean 'steps'"):
        EngineConfig.recommended(model)
    (model / "engine.json").write_bytes(b"\xff{")
    with pytest.raises(ConfigError, match="not JSON"):
        EngineConfig.recommended(model)
    assert EngineConfig.recommended("phantom-64").steps >= 1  # a shipped model's name works too
