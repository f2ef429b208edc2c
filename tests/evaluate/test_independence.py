import shutil

import pytest
import torch

from synthfair.errors import SynthfairError
from synthfair.evaluate.independence import GUIDANCE_DIR, check_independence
from synthfair.evaluate.oracles import Oracle, OracleConfig, Oracles, _network, _outputs
from synthfair.subjects import save_subjects, subject_digests


@pytest.fixture
def oracles(tmp_path):
    torch.manual_seed(0)
    net = _network(OracleConfig(), _outputs("categorical", ("female", "male")))
    sex = Oracle("sex", "categorical", ("female", "male"), net)
    made = Oracles({"sex": sex}, OracleConfig(), {}, subject_digests(f"s2_{i}" for i in range(10)))
    made.save(tmp_path / "oracles")
    return Oracles.load(tmp_path / "oracles")


def _model(tmp_path, trained_on):
    model = tmp_path / "model"
    model.mkdir()
    save_subjects(model, subject_digests(trained_on))
    return model


def _guide(model, name, subjects, weights_from=None):
    guide = model / GUIDANCE_DIR / name
    guide.mkdir(parents=True)
    if weights_from is not None:
        shutil.copy(weights_from, guide / "sex.safetensors")
    else:
        (guide / "sex.safetensors").write_bytes(b"other weights")
    if subjects is not None:
        save_subjects(guide, subject_digests(subjects))


def test_independent_oracles_pass_and_model_overlap_is_flagged(tmp_path, oracles):
    assert oracles.subjects is not None and len(oracles.subjects) == 10
    model = _model(tmp_path, [f"s1_{i}" for i in range(20)])
    _guide(model, "classifiers", [f"s1_{i}" for i in range(20)])
    result = check_independence(oracles, model)
    assert result.guides == ("classifiers",) and result.shared_with_model == 0 and result.flags == ()
    shutil.rmtree(model)
    model = _model(tmp_path, ["s2_3", "s1_0"])
    result = check_independence(oracles, model)
    assert result.shared_with_model == 1 and "1 of the image model's training subjects" in result.flags[0]


@pytest.mark.parametrize(
    "guide_subjects, same_weights, message",
    [
        (["s1_0", "s2_4"], False, "share 1 training subjects with guidance classifier g"),
        (["s1_0"], True, "is the model's guidance classifier g"),
        (None, False, "no subject record"),
    ],
)
def test_oracles_that_trained_or_guided_the_model_are_refused(
    tmp_path, oracles, guide_subjects, same_weights, message
):
    model = _model(tmp_path, ["s1_0"])
    _guide(model, "g", guide_subjects, oracles.weight_files()[0] if same_weights else None)
    with pytest.raises(SynthfairError, match=message):
        check_independence(oracles, model)


def test_unknown_subjects_are_flagged(tmp_path, oracles):
    oracles.subjects = None
    model = tmp_path / "model"
    model.mkdir()
    flags = check_independence(oracles, model).flags
    assert len(flags) == 2 and "unknown" in flags[0] and "unknown" in flags[1]


def test_the_guides_and_subjects_of_every_route_are_checked(tmp_path, oracles):
    """A routed model directory holds other image models (`synthfair.model.routes`): their guidance
    classifiers are refused as oracles too, and their training subjects are compared as well."""
    from synthfair.model.registry import MODEL_FILE

    model = _model(tmp_path, ["s1_0"])
    route = model / "routes" / "hvae"
    route.mkdir(parents=True)
    (route / MODEL_FILE).write_text("{}")
    save_subjects(route, subject_digests(["s2_3"]))
    result = check_independence(oracles, model)
    assert result.shared_with_model == 1 and "1 of route hvae's training subjects" in result.flags[0]
    _guide(route, "g", ["s1_0"], oracles.weight_files()[0])
    with pytest.raises(SynthfairError, match="is the model's guidance classifier g"):
        check_independence(oracles, model)


def test_a_guide_kept_as_digests_is_checked_like_its_weights(tmp_path, oracles):
    from synthfair.model.finetune import keep_digests

    model = _model(tmp_path, ["s1_0"])
    _guide(model, "g", ["s1_0"], oracles.weight_files()[0])
    keep_digests(model / GUIDANCE_DIR / "g")
    assert not list((model / GUIDANCE_DIR / "g").glob("*.safetensors"))
    with pytest.raises(SynthfairError, match="is the model's guidance classifier g/sex.safetensors"):
        check_independence(oracles, model)
