import numpy as np
import pytest
from scipy import ndimage

from synthfair.phantom.simulator import Phantom, PhantomConfig

SIZE = 64


def _roles(ph):
    return ph.spec.roles


def _find(ph, predicate, n=200, seed=0):
    for s in ph.sample_subjects(n, seed):
        if predicate(ph.covariates(s)):
            return s
    raise AssertionError("no subject matches")


def test_same_seed_same_bytes_different_seed_differs(procedural_phantom):
    ph = procedural_phantom
    a = ph.render(ph.subject(7, 3), size=SIZE)
    fresh = Phantom(ph.config, anatomy=ph.anatomy)
    b = fresh.render(fresh.subject(7, 3), size=SIZE)
    c = ph.render(ph.subject(8, 3), size=SIZE)
    assert a.dtype == np.uint16 and a.shape == (SIZE, SIZE)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_subject_depends_only_on_seed_and_index(procedural_phantom):
    ph = procedural_phantom
    assert ph.sample_subjects(5, 1)[4].traits == ph.sample_subjects(2, 1, start=3)[1].traits


def test_null_intervention_gives_identical_bytes(procedural_phantom):
    ph = procedural_phantom
    s = ph.subject(0, 1)
    factual = ph.covariates(s)
    cf = ph.counterfactual(s, {name: factual[name] for name in ph.taxonomy.names}, size=SIZE)
    assert cf.changed == ()
    assert cf.image.tobytes() == ph.render(s, size=SIZE).tobytes()


def test_intervention_propagates_to_descendants_only(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    descendants = set(ph.taxonomy.descendants(r.age))
    moved = set()
    for s in ph.sample_subjects(60, 2):
        cf = ph.covariates(s, {r.age: 94.0})
        factual = ph.covariates(s)
        changed = {k for k in ph.taxonomy.names if cf[k] != factual[k]}
        assert changed <= descendants | {r.age}
        moved |= changed
    assert r.findings in moved and r.view in moved  # age -> findings -> view


def test_intervened_node_is_cut_from_its_parents(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    s = _find(ph, lambda c: not any(c[r.findings].values()))
    cf = ph.covariates(s, {r.findings: {r.pleural_effusion: 1}})
    factual = ph.covariates(s)
    for parent in ph.taxonomy.parents(r.findings):
        assert cf[parent] == factual[parent]
    assert cf[r.findings][r.pleural_effusion] == 1


def _change_fraction_inside(ph, s, do, region_patterns, dilate_mm=12.0, rows=None):
    """Share of the image change that lies inside the (dilated) projection of the named structures."""
    r = _roles(ph)
    factual = ph.covariates(s)
    do = {**do, r.view: factual[r.view]}  # hold the view fixed: we test the edit, not its propagation
    cf = ph.counterfactual(s, do, size=SIZE)
    diff = np.abs(cf.image.astype(float) - ph.render(s, size=SIZE).astype(float))
    assert diff.sum() > 0, f"{do} changed nothing"
    region = ph.project_structures(s, factual, region_patterns, SIZE) > 0
    if rows is not None:
        ys = np.nonzero(region.any(axis=1))[0]
        top, bottom = ys.min(), ys.max()
        keep = np.zeros_like(region)
        keep[int(top + rows * (bottom - top)) :] = True
        region &= keep
    px = ph.config.fov_mm / SIZE
    region = ndimage.binary_dilation(region, iterations=max(1, int(dilate_mm / px)))
    return diff[region].sum() / diff.sum(), diff[~region]


@pytest.mark.parametrize(
    ("role", "patterns", "rows", "margin_mm"),
    [
        ("cardiomegaly", ("heart",), None, 45.0),  # the dilated heart reaches past the factual one
        ("pleural_effusion", ("lung_*",), 0.45, 12.0),  # the lower part of the lung fields
        ("consolidation", ("lung_*",), None, 12.0),
    ],
)
def test_finding_changes_pixels_mainly_in_its_region(procedural_phantom, role, patterns, rows, margin_mm):
    ph = procedural_phantom
    r = _roles(ph)
    label = getattr(r, role)
    erect_frontal = lambda v: ph.spec.views[v].depth_axis == 1 and not ph.spec.views[v].supine  # noqa: E731
    s = _find(ph, lambda c: c[r.findings][label] == 0 and erect_frontal(c[r.view]))
    inside, outside = _change_fraction_inside(ph, s, {r.findings: {label: 1}}, patterns, margin_mm, rows)
    assert inside > 0.9
    assert np.percentile(outside, 99) < 0.02 * 65535


def test_age_changes_bones(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    s = _find(ph, lambda c: c[r.age] < 40 and ph.spec.views[c[r.view]].depth_axis == 1)
    factual = ph.covariates(s)
    do = {r.age: 90.0, r.findings: factual[r.findings]}
    inside, _ = _change_fraction_inside(
        ph,
        s,
        do,
        ("rib_*", "vertebrae_*", "sternum", "clavicula_*", "scapula_*", "costal_cartilages"),
        dilate_mm=8.0,
    )
    assert inside > 0.9


def test_ap_magnifies_the_heart(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    s = ph.subject(0, 0)
    cov = ph.covariates(s)
    widths = {}
    for view in ("PA", "AP"):
        heart = ph.project_structures(s, {**cov, r.view: view}, ("heart",), 128) > 0
        widths[view] = np.ptp(np.nonzero(heart.any(axis=0))[0])
    assert widths["AP"] > widths["PA"] * 1.05


def test_device_changes_the_image_not_the_anatomy(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    s = ph.subject(0, 4)
    cov = ph.covariates(s)
    other = next(d for d in ph.spec.devices if d != cov[r.device])
    cf = ph.counterfactual(s, {r.device: other}, size=SIZE)
    assert cf.changed == (r.device,)
    assert cf.image.tobytes() != ph.render(s, size=SIZE).tobytes()
    np.testing.assert_array_equal(ph.line_integrals(s, cf.covariates, SIZE), ph.line_integrals(s, cov, SIZE))


def test_race_has_no_direct_image_effect_by_default(procedural_phantom, tmp_path):
    import yaml

    ph = procedural_phantom
    r = _roles(ph)
    s = ph.subject(0, 5)
    cov = ph.covariates(s)
    other = next(v for v in ph.taxonomy[r.race].values if v != cov[r.race])
    held = {r.race: other, r.findings: cov[r.findings], r.view: cov[r.view]}
    assert ph.counterfactual(s, held, SIZE).image.tobytes() == ph.render(s, size=SIZE).tobytes()

    spec = yaml.safe_load(_spec_path().read_text())
    spec["race_effect"] = {other: 0.05}
    path = tmp_path / "phantom.yaml"
    path.write_text(yaml.safe_dump(spec))
    shortcut = Phantom(
        PhantomConfig(anatomy="procedural", spacing_mm=ph.config.spacing_mm, spec=str(path)),
        anatomy=ph.anatomy,
    )
    assert shortcut.counterfactual(s, held, SIZE).image.tobytes() != shortcut.render(s, size=SIZE).tobytes()


def _spec_path():
    from synthfair.phantom.spec import default_spec_path

    return default_spec_path()


def test_every_view_and_device_renders(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    s = ph.subject(3, 0)
    for view in ph.spec.views:
        for device in ph.spec.devices:
            img = ph.counterfactual(s, {r.view: view, r.device: device}, size=32).image
            assert img.shape == (32, 32) and img.std() > 0


@pytest.mark.slow
@pytest.mark.network
def test_real_ct_phantom_is_deterministic_and_localized():
    ph = Phantom(PhantomConfig(anatomy="ct"))
    r = _roles(ph)
    s = _find(
        ph,
        lambda c: (
            c[r.findings][r.cardiomegaly] == 0
            and not ph.spec.views[c[r.view]].supine
            and ph.spec.views[c[r.view]].depth_axis == 1
        ),
    )
    assert ph.render(s, size=SIZE).tobytes() == Phantom(ph.config).render(s, size=SIZE).tobytes()
    inside, _ = _change_fraction_inside(ph, s, {r.findings: {r.cardiomegaly: 1}}, ("heart",), 45.0)
    assert inside > 0.9


def test_unidentified_traits_name_what_the_factual_image_does_not_show(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    healthy = {r.age: 25.0, r.sex: "male", r.findings: {r.cardiomegaly: 0, r.pleural_effusion: 0}}
    assert ph.unidentified_traits(healthy, healthy) == ()
    sick = {**healthy, r.findings: {r.cardiomegaly: 1, r.pleural_effusion: 1}}
    assert ph.unidentified_traits(healthy, sick) == ("heart_severity", "effusion_side", "effusion_severity")
    assert ph.unidentified_traits(sick, healthy) == ()  # removing a finding that shows: identified
    assert ph.unidentified_traits(healthy, {**healthy, r.sex: r.female}) == ("breast_size", "breast_ptosis")
    assert ph.unidentified_traits(healthy, {**healthy, r.age: 80.0}) == ("calcification_max",)
    older = {**healthy, r.age: 50.0}  # calcification already shows: its maximum is identified
    assert ph.unidentified_traits(older, {**older, r.age: 80.0}) == ()


def test_posterior_renders_vary_only_in_the_drawn_traits(procedural_phantom):
    ph = procedural_phantom
    r = _roles(ph)
    subject = _find(ph, lambda c: not c[r.findings].get(r.pleural_effusion))
    cf = ph.counterfactual(subject, {r.findings: {r.pleural_effusion: 1}}, SIZE)
    traits = ph.unidentified_traits(cf.factual, cf.covariates)
    draws = ph.posterior_renders(subject, cf.covariates, traits, 4, np.random.default_rng(0), SIZE)
    assert draws.shape == (4, SIZE, SIZE) and draws.dtype == np.uint16
    assert len({d.tobytes() for d in draws}) > 1
    same = ph.posterior_renders(subject, cf.factual, traits, 2, np.random.default_rng(0), SIZE)
    assert same[0].tobytes() == same[1].tobytes() == ph.render(subject, size=SIZE).tobytes()
    with pytest.raises(Exception, match="uniform traits"):
        ph.posterior_renders(subject, cf.covariates, ("yaw",), 1, np.random.default_rng(0), SIZE)
