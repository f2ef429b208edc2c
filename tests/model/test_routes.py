"""Routes: a model directory whose engine sends some interventions to another image model (here a tiny
HVAE beside a tiny diffusion model), with the same bytes as that model's own engine; hostile route names
and links are refused; a release names every route's weights."""

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest

from conftest import TINY_HVAE
from synthfair.counterfactual import HVAE_EVALUATIONS, CounterfactualEngine, EngineConfig
from synthfair.errors import ConfigError, SynthfairError
from synthfair.model.data import CacheDataset
from synthfair.model.hvae import HVAEConfig
from synthfair.model.registry import load_model, weights_file
from synthfair.model.routes import add_route, route_dir, route_dirs
from synthfair.model.train import TrainConfig, train


@pytest.fixture(scope="module")
def hvae_run(cache, tmp_path_factory):
    config = TrainConfig(
        hvae=HVAEConfig(**TINY_HVAE), steps=4, batch_size=4, checkpoint_every=4, cond_dropout=0.0, seed=3
    )
    out = tmp_path_factory.mktemp("hvae") / "run"
    train(config, cache, out)
    return out


@pytest.fixture
def routed(trained_run, hvae_run, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_run / "model", model)
    (model / "engine.json").write_text(json.dumps({"steps": 6, "batch_size": 4}))
    add_route(model, "hvae", hvae_run / "model", ["view"])
    return model


@pytest.fixture(scope="module")
def samples(cache):
    data = CacheDataset(cache)
    return [data.image(i) for i in range(6)], [data.covariates(i) for i in range(6)]


def test_add_route_copies_the_model_and_keeps_the_other_settings(routed, hvae_run):
    settings = json.loads((routed / "engine.json").read_text())
    assert settings == {"steps": 6, "batch_size": 4, "routes": {"view": "hvae"}}
    assert route_dirs(routed) == [routed / "routes" / "hvae"]
    assert (hvae_run / "model" / "scm").is_dir() and not (routed / "routes" / "hvae" / "scm").exists()
    assert (
        weights_file(route_dir(routed, "hvae")).read_bytes() == weights_file(hvae_run / "model").read_bytes()
    )
    add_route(routed, "hvae", hvae_run / "model", ["device"])  # again: replaced, the routes merged
    assert json.loads((routed / "engine.json").read_text())["routes"] == {"view": "hvae", "device": "hvae"}


def test_routed_counterfactuals_are_the_route_models_own(routed, samples):
    """A change of routed covariates only is the route model's counterfactual, byte for byte; any other
    change (or one that spans a route and the rest) is the directory's own model's."""
    images, factuals = samples
    engine = CounterfactualEngine.load(routed)
    turned = [
        {"view": "LATERAL" if f["view"] != "LATERAL" else "PA"} for f in factuals
    ]  # a leaf: no descendant
    dos = [turned[0], {"age": 30.0}, turned[2], {**turned[3], "age": 80.0}, turned[4], {}]
    results = engine(images, factuals, dos, seeds=list(range(6)))
    routes = [engine.route(r.changed) for r in results]
    assert routes[0] == routes[2] == routes[4] == "hvae" and results[0].changed == ("view",)
    assert routes[1] is routes[3] is routes[5] is None  # age; view and age together; the null

    own = CounterfactualEngine(engine.model, engine.scm, dataclasses.replace(engine.config, routes={}))
    hvae = CounterfactualEngine(engine.routes["hvae"].model, engine.scm, EngineConfig(batch_size=4))
    for rows, other in (([0, 2, 4], hvae), ([1, 3, 5], own)):
        alone = other([images[i] for i in rows], [factuals[i] for i in rows], [dos[i] for i in rows], rows)
        for i, result in zip(rows, alone, strict=True):
            assert np.array_equal(results[i].image, result.image)
            assert results[i].covariates == result.covariates
    assert engine.evaluations(("view",)) == HVAE_EVALUATIONS
    assert engine.evaluations(("age",)) == own.evaluations(("age",)) == engine.config.evaluations(("age",))
    assert not np.array_equal(results[0].image, images[0])


@pytest.mark.parametrize(
    "routes, message",
    [
        ({"view": "../hvae"}, "route name '../hvae' is not a plain name"),
        ({"view": "other"}, "route 'other': no model at"),
        ({"shoe_size": "hvae"}, "routes: unknown covariate 'shoe_size'"),
        ({"view=SIDEWAYS": "hvae"}, "routes: 'view=SIDEWAYS' names no value of view"),
        ({"age=30": "hvae"}, "routes: 'age=30' names no value of age"),
    ],
)
def test_bad_routes_are_refused(routed, routes, message):
    settings = json.loads((routed / "engine.json").read_text())
    (routed / "engine.json").write_text(json.dumps({**settings, "routes": routes}))
    with pytest.raises(ConfigError, match=message):
        CounterfactualEngine.load(routed)


def test_a_route_that_leads_outside_its_model_directory_is_refused(routed, hvae_run):
    shutil.rmtree(routed / "routes" / "hvae")
    (routed / "routes" / "hvae").symlink_to(hvae_run / "model", target_is_directory=True)
    with pytest.raises(ConfigError, match="route 'hvae': .* leads outside"):
        CounterfactualEngine.load(routed)


def test_a_route_of_another_size_or_with_routes_of_its_own_is_refused(routed, trained_run, tmp_path):
    nested = tmp_path / "nested"
    shutil.copytree(routed, nested)
    with pytest.raises(ConfigError, match="has routes of its own"):
        add_route(routed, "nested", nested, ["age"])
    (routed / "routes" / "hvae" / "engine.json").write_text(json.dumps({"routes": {"age": "x"}}))
    with pytest.raises(ConfigError, match="route 'hvae' .* has routes of its own"):
        CounterfactualEngine.load(routed)
    (routed / "routes" / "hvae" / "engine.json").unlink()
    engine = CounterfactualEngine.load(routed)
    small = dataclasses.replace(load_model(route_dir(routed, "hvae")).config, sample_size=8)
    engine.routes["hvae"].model.config = small
    with pytest.raises(ConfigError, match="route 'hvae' makes 8x8 images"):
        CounterfactualEngine(engine.model, engine.scm, engine.config, engine.routes)


def test_a_release_made_with_routes_names_every_route_weights(routed, small_plan, tmp_path):
    """The request, the manifest and the card name every route's weights; each sample's record names the
    model that made it (a counterfactual of routed covariates: the route's; the reconstruction: the main)."""
    import io
    import tarfile

    from synthfair.generate.runner import GenerateConfig, generate
    from synthfair.release import layout
    from synthfair.release.finalize import finalize

    keys = {"age": "hvae", "sex": "hvae", "findings": "hvae", "view": "hvae"}  # every change the plan makes
    settings = json.loads((routed / "engine.json").read_text())
    (routed / "engine.json").write_text(json.dumps({**settings, "routes": keys}))
    release = tmp_path / "release"
    generate(small_plan, routed, release, GenerateConfig())
    finalize(release)
    request = json.loads((release / layout.REQUEST_FILE).read_text())
    digest = hashlib.sha256(weights_file(route_dir(routed, "hvae")).read_bytes()).hexdigest()
    assert request["routes"] == dict(sorted(keys.items())) and request["route_sha256"] == {"hvae": digest}
    manifest = json.loads((release / layout.MANIFEST_FILE).read_text())
    assert (
        manifest["route_sha256"] == {"hvae": digest}
        and f"route `hvae`, weights sha256 `{digest}`" in (release / layout.CARD_FILE).read_text()
    )
    with tarfile.open(layout.tar_path(release, 0)) as tar:
        records = [json.load(io.BytesIO(tar.extractfile(m).read())) for m in tar if m.name.endswith(".json")]
    made = {r["kind"]: r["model"] for r in records if r.get("model")}
    assert made["counterfactual"] == {
        "checkpoint_sha256": digest,
        "config_sha256": request["route_config_sha256"]["hvae"],
        "route": "hvae",
    }
    assert made["reconstruction"]["route"] is None
    assert made["reconstruction"]["checkpoint_sha256"] == request["checkpoint_sha256"]


def test_a_route_of_one_value_comes_before_the_covariate(routed, samples):
    images, factuals = samples
    settings = json.loads((routed / "engine.json").read_text())
    (routed / "engine.json").write_text(json.dumps({**settings, "routes": {"view=LATERAL": "hvae"}}))
    engine = CounterfactualEngine.load(routed)
    assert engine.route(("view",), {"view": "LATERAL"}) == "hvae"
    assert engine.route(("view",), {"view": "PA"}) is None and engine.route(("view",)) is None
    engine.config.routes["view"] = "other"  # the value's route first, then the covariate's
    assert engine.route(("view",), {"view": "LATERAL"}) == "hvae" and engine.route(("view",)) == "other"
    assert engine.evaluations(("view",), covariates={"view": "LATERAL"}) == HVAE_EVALUATIONS
    rows = [i for i, f in enumerate(factuals) if f["view"] != "LATERAL"][:2]
    dos = [{"view": "LATERAL"} for _ in rows]
    hvae = CounterfactualEngine(engine.routes["hvae"].model, engine.scm, EngineConfig(batch_size=4))
    routed_results = CounterfactualEngine.load(routed)(
        [images[i] for i in rows], [factuals[i] for i in rows], dos, rows
    )
    alone = hvae([images[i] for i in rows], [factuals[i] for i in rows], dos, rows)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(routed_results, alone, strict=True))


def test_a_route_keeps_its_guides_as_digests(routed, hvae_run, tmp_path):
    """The classifiers that fine-tuned a route's model travel as their sha256 and subject record: all the
    evaluator's independence check needs (tests/evaluate/test_independence.py), at a few hundred bytes."""
    from synthfair.model.finetune import WEIGHT_DIGESTS, guide_digests

    source = tmp_path / "tuned"
    shutil.copytree(hvae_run / "model", source)
    guide = source / "guidance" / "classifiers"
    guide.mkdir(parents=True)
    (guide / "sex.safetensors").write_bytes(b"classifier weights")
    (guide / "subjects.npy").write_bytes(b"record")
    copied = add_route(routed, "tuned", source, ["device"]) / "guidance" / "classifiers"
    digest = hashlib.sha256(b"classifier weights").hexdigest()
    assert sorted(p.name for p in copied.iterdir()) == ["subjects.npy", WEIGHT_DIGESTS]
    assert guide_digests(copied) == guide_digests(guide) == {digest: "sex.safetensors"}
    (copied / WEIGHT_DIGESTS).write_text("not a digest\n")
    with pytest.raises(SynthfairError, match="line 1: 'not a digest' is not '<sha256>  <file name>'"):
        guide_digests(copied)
