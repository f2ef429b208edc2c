import copy

import pytest
import yaml

from synthfair.errors import ConfigError
from synthfair.phantom.detector import CORNERS, DeviceProfile
from synthfair.phantom.scm import PhantomSCM
from synthfair.phantom.spec import PhantomSpec, ViewSpec, default_spec_path, load_spec
from synthfair.taxonomy import load_taxonomy

TAX = load_taxonomy()
DEFAULT = yaml.safe_load(default_spec_path().read_text())


def _write(tmp_path, edit) -> str:
    """phantom.yaml with ``edit(data)`` applied, written under tmp_path."""
    data = copy.deepcopy(DEFAULT)
    edit(data)
    path = tmp_path / "phantom.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_default_loads():
    spec = load_spec(TAX)
    assert isinstance(spec, PhantomSpec)
    assert isinstance(spec.scm, PhantomSCM)
    assert spec.raw == DEFAULT
    for role in ("age", "sex", "race", "findings", "view", "device"):
        assert getattr(spec.roles, role) in TAX
    assert all(isinstance(v, ViewSpec) for v in spec.views.values())
    assert all(isinstance(d, DeviceProfile) for d in spec.devices.values())
    assert all(d.marker_corner in CORNERS for d in spec.devices.values())
    assert set(spec.devices) <= set(TAX[spec.roles.device].values)


def test_default_path_and_explicit_copy_agree(tmp_path):
    spec = load_spec(TAX, _write(tmp_path, lambda d: None))
    assert spec.views == load_spec(TAX).views
    assert spec.devices == load_spec(TAX).devices


def test_every_view_value_has_a_view_entry():
    spec = load_spec(TAX)
    assert set(spec.views) == set(TAX[spec.roles.view].values)
    for view in spec.views.values():
        assert view.depth_axis in (0, 1)
        assert view.source_side in (-1, 1)
        assert view.sid_mm > 0


def test_missing_view_entry(tmp_path):
    view = DEFAULT["roles"]["view"]
    last = TAX[view].values[-1]
    path = _write(tmp_path, lambda d: d["views"].pop(last))
    with pytest.raises(ConfigError, match=rf"views has no entry for {view}='{last}'"):
        load_spec(TAX, path)


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, lambda d: d.__setitem__("view", d.pop("views")))
    with pytest.raises(ConfigError, match=r"unknown key 'view' \(did you mean 'views'\?\)") as err:
        load_spec(TAX, path)
    assert path in str(err.value)


def test_bad_marker_corner(tmp_path):
    device = next(iter(DEFAULT["devices"]))
    path = _write(tmp_path, lambda d: d["devices"][device].update(marker_corner="top_rigth"))
    with pytest.raises(ConfigError, match=rf"devices\.{device}\.marker_corner='top_rigth'") as err:
        load_spec(TAX, path)
    assert "did you mean 'top_right'" in str(err.value)


@pytest.mark.parametrize("window", [[30.0, 2.0], [5.0, 5.0]])
def test_device_window_must_increase(tmp_path, window):
    device = next(iter(DEFAULT["devices"]))
    path = _write(tmp_path, lambda d: d["devices"][device].update(window=window))
    with pytest.raises(ConfigError, match=rf"devices\.{device}: window must increase"):
        load_spec(TAX, path)


def test_device_contrast_must_be_positive(tmp_path):
    device = next(iter(DEFAULT["devices"]))
    path = _write(tmp_path, lambda d: d["devices"][device].update(contrast=0))
    with pytest.raises(ConfigError, match="contrast be > 0"):
        load_spec(TAX, path)


@pytest.mark.parametrize(
    "role, target, kind",
    [
        ("age", TAX.of_kind("categorical")[0], "expected continuous"),
        ("view", TAX.of_kind("continuous")[0], "expected categorical"),
        ("findings", TAX.of_kind("categorical")[0], "expected multilabel"),
        ("device", TAX.of_kind("multilabel")[0], "expected categorical"),
    ],
)
def test_role_pointing_at_a_covariate_of_the_wrong_kind(tmp_path, role, target, kind):
    path = _write(tmp_path, lambda d: d["roles"].update({role: target}))
    with pytest.raises(ConfigError, match=rf"roles\.{role}='{target}' is \w+, {kind}"):
        load_spec(TAX, path)


@pytest.mark.parametrize(
    "role, value",
    [("female", "woman"), ("cardiomegaly", "cardiomegally"), ("pleural_effusion", "effusion")],
)
def test_role_value_outside_the_domain(tmp_path, role, value):
    path = _write(tmp_path, lambda d: d["roles"].update({role: value}))
    with pytest.raises(ConfigError, match=rf"roles\.{role}.*'{value}'"):
        load_spec(TAX, path)


def test_role_naming_an_unknown_covariate(tmp_path):
    path = _write(tmp_path, lambda d: d["roles"].update(age="agee"))
    with pytest.raises(ConfigError, match=r"roles\.age") as err:
        load_spec(TAX, path)
    assert path in str(err.value)


def test_missing_role(tmp_path):
    path = _write(tmp_path, lambda d: d["roles"].pop("device"))
    with pytest.raises(ConfigError, match="missing required key 'device'"):
        load_spec(TAX, path)


def test_race_effect_with_an_unknown_race(tmp_path):
    path = _write(tmp_path, lambda d: d.__setitem__("race_effect", {"martian": 0.03}))
    with pytest.raises(ConfigError, match=r"race_effect.*'martian'") as err:
        load_spec(TAX, path)
    assert path in str(err.value)


def test_race_effect_is_read(tmp_path):
    race = TAX[DEFAULT["roles"]["race"]].values[1]
    spec = load_spec(TAX, _write(tmp_path, lambda d: d.__setitem__("race_effect", {race: 0.03})))
    assert spec.race_effect == {race: 0.03}


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d["views"].update(OBLIQUE=d["views"]["PA"]), "'OBLIQUE'"),
        (
            lambda d: d["views"]["PA"].update(sid=1000),
            r"views\.PA: unknown key 'sid' .*'sid_mm'",
        ),
        (lambda d: d["devices"].update(acme=d["devices"]["ge"]), "'acme'"),
        (lambda d: d["devices"]["ge"].update(nosie=0.1), r"devices\.ge: unknown key 'nosie'"),
        (lambda d: d["subject"]["body_size"].update(woman=0.9), r"subject\.body_size.*'woman'"),
        (lambda d: d["edits"].update(heart=1.3), r"edits: unknown key 'heart'"),
        (lambda d: d["scm"].pop("device"), r"scm\.device has no structural equation"),
    ],
    ids=["view-value", "view-key", "device-value", "device-key", "body-size", "edits-key", "scm"],
)
def test_errors_name_the_file_and_the_key(tmp_path, edit, needle):
    path = _write(tmp_path, edit)
    with pytest.raises(ConfigError, match=needle) as err:
        load_spec(TAX, path)
    assert path in str(err.value)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["views"]["PA"].update(depth_axis=2), id="depth-axis-2"),
        pytest.param(lambda d: d["views"]["PA"].update(source_side=0), id="source-side-0"),
        pytest.param(lambda d: d["views"]["PA"].update(sid_mm=-100), id="negative-sid"),
    ],
)
def test_view_geometry_is_checked(tmp_path, edit):
    with pytest.raises(ConfigError, match=r"views\.PA"):
        load_spec(TAX, _write(tmp_path, edit))


def test_race_effect_must_be_a_number(tmp_path):
    race = TAX[DEFAULT["roles"]["race"]].values[0]
    with pytest.raises(ConfigError, match="race_effect"):
        load_spec(TAX, _write(tmp_path, lambda d: d.__setitem__("race_effect", {race: "strong"})))


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "phantom.yaml"
    path.write_text("- scm\n- roles\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_spec(TAX, path)
