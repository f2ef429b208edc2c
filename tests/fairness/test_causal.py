import json

import numpy as np
import pandas as pd
import pytest

from synthfair.errors import ConfigError, SynthfairError
from synthfair.fairness import true_tv_decomposition, tv_decomposition


def make_scm(direct: float = 1.0, confounding: bool = True):
    """A Standard Fairness Model: Z in {0,1,2} -> X (binary); (X, Z) -> W in {0,1,2}; (X, Z, W) -> Y (0/1).

    All noise is drawn first, in a fixed order, so one rng seed gives the same units under any intervention.
    """

    def simulate(n, rng, x=None, w_x=None):
        u_z, u_x, u_w, u_y = rng.random((4, n))
        z = (u_z > 0.3).astype(int) + (u_z > 0.7)
        p_x = np.array([0.2, 0.5, 0.8])[z] if confounding else np.full(n, 0.5)
        x_value = (u_x < p_x).astype(int) if x is None else np.full(n, x)
        x_seen_by_w = x_value if w_x is None else np.full(n, w_x)
        p_w = 0.2 + 0.4 * x_seen_by_w + 0.1 * z  # P(W >= 1); P(W = 2) = p_w / 2
        w = (u_w < p_w).astype(int) + (u_w < p_w / 2)
        p_y = 0.1 + direct * 0.2 * x_value + 0.15 * w + 0.1 * z
        return pd.DataFrame({"x": x_value, "z": z, "w": w, "y": (u_y < p_y).astype(int)})

    return simulate


def _identity_gap(frame_or_dec) -> np.ndarray:
    f = frame_or_dec
    return np.abs(f["tv"] - (f["ctf_de"] - f["ctf_ie"] - f["ctf_se"]))


@pytest.mark.parametrize(
    ("direct", "confounding"), [(1.0, True), (0.0, True), (1.0, False)], ids=["full", "no-DE", "no-SE"]
)
def test_plugin_recovers_the_true_decomposition(direct, confounding):
    simulate = make_scm(direct, confounding)
    truth = true_tv_decomposition(simulate, x0=0, x1=1, n=1_000_000, seed=0)
    data = simulate(200_000, np.random.default_rng(1))
    dec = tv_decomposition(data, "x", 0, 1, "y", z=["z"], w=["w"], n_boot=30, seed=0)
    for name in ("tv", "ctf_de", "ctf_ie", "ctf_se"):
        assert getattr(dec, name).value == pytest.approx(getattr(truth, name), abs=0.015), name
    assert truth.tv == pytest.approx(truth.ctf_de - truth.ctf_ie - truth.ctf_se, abs=1e-12)
    if direct == 0.0:
        assert truth.ctf_de == 0.0 and abs(dec.ctf_de.value) < 0.01
    if not confounding:
        assert abs(truth.ctf_se) < 0.005 and abs(dec.ctf_se.value) < 0.01
    else:
        assert truth.ctf_se < -0.02  # X = 1 comes with larger Z, which raises Y: a visible spurious effect
    assert dec.ctf_de.lo <= dec.ctf_de.value <= dec.ctf_de.hi


def test_identity_holds_on_every_resample():
    data = make_scm()(3_000, np.random.default_rng(2))
    dec = tv_decomposition(data, "x", 0, 1, "y", z=["z"], w=["w"], n_boot=100, seed=0)
    assert _identity_gap({k: getattr(dec, k).value for k in ("tv", "ctf_de", "ctf_ie", "ctf_se")}) < 1e-12
    assert _identity_gap(dec.boot).max() < 1e-12 and len(dec.boot) == 100


def test_plugin_by_hand_without_confounders():
    # x0: (w, y) = (0,0) (0,1) (1,1) (1,1): P(w=1|x0) = 1/2, m0(w=0) = 1/2, m0(w=1) = 1, P(y|x0) = 3/4
    # x1: (w, y) = (0,0) (1,1) (1,0) (1,1): P(w=1|x1) = 3/4, m1(w=0) = 0, m1(w=1) = 2/3, P(y|x1) = 1/2
    data = pd.DataFrame(
        {
            "x": ["a"] * 4 + ["b"] * 4,
            "w": [0, 0, 1, 1, 0, 1, 1, 1],
            "y": [0, 1, 1, 1, 0, 1, 0, 1],
        }
    )
    dec = tv_decomposition(data, "x", "a", "b", "y", z=[], w=["w"], n_boot=0)
    assert dec.tv.value == pytest.approx(-1 / 4)
    assert dec.ctf_de.value == pytest.approx((0 - 1 / 2) / 2 + (2 / 3 - 1) / 2)  # -5/12
    assert dec.ctf_ie.value == pytest.approx(0 * (1 / 2 - 1 / 4) + 2 / 3 * (1 / 2 - 3 / 4))  # -1/6
    assert dec.ctf_se.value == pytest.approx(0.0)
    assert np.isnan(dec.tv.lo) and (dec.n_empty_cells, dec.n_empty_strata) == (0, 0)


def test_scores_empty_cells_and_other_x_values():
    # z = 2 is never seen with x1 (an empty stratum); (z=0, w=1) is never seen with x1 (an empty cell)
    data = pd.DataFrame(
        {
            "x": [0, 0, 0, 0, 0, 1, 1, 1, 1, 2],
            "z": [0, 0, 1, 2, 2, 0, 0, 1, 1, 0],
            "w": [0, 1, 0, 0, 1, 0, 0, 1, 0, 1],
            "y": [0.2, 0.9, 0.5, 0.4, 0.1, 0.3, 0.7, 0.8, 0.6, 1.0],
        }
    )
    dec = tv_decomposition(data, "x", 0, 1, "y", z=["z"], w=["w"], n_boot=50, seed=0)
    assert (dec.n, dec.n_empty_cells, dec.n_empty_strata) == (9, 3, 1)  # cells (0,1), (2,0), (2,1)
    assert dec.tv.value == pytest.approx(0.6 - 0.42)
    values = {k: getattr(dec, k).value for k in ("tv", "ctf_de", "ctf_ie", "ctf_se")}
    assert _identity_gap(values) < 1e-12 and _identity_gap(dec.boot.dropna()).max() < 1e-12
    # Ctf-SE = sum_z m1(z) [P(z|x0) - P(z|x1)], m1(2) := P(y|x1) = 0.6: 0.5 (.4-.5) + 0.7 (.2-.5) + 0.6 (.4-0)
    assert dec.ctf_se.value == pytest.approx(0.5 * -0.1 + 0.7 * -0.3 + 0.6 * 0.4)
    json.dumps(dec.to_dict(), allow_nan=False)


def test_true_decomposition_needs_fixed_noise():
    def unfixed(n, rng, x=None, w_x=None):
        fresh = np.random.default_rng()  # ignores rng: new noise on every call
        x_value = fresh.integers(0, 2, n) if x is None else np.full(n, x)
        return pd.DataFrame({"x": x_value, "y": fresh.integers(0, 2, n)})

    with pytest.raises(SynthfairError, match="differs from the natural run"):
        true_tv_decomposition(unfixed, 0, 1, n=1000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y": "yy"}, "did you mean 'y'"),
        ({"x1": 5}, "no row has x=5"),
        ({"w": ["z"]}, "overlap"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    data = pd.DataFrame({"x": [0, 1], "z": [0, 0], "w": [1, 0], "y": [0.0, 1.5]})
    args = {"x": "x", "x0": 0, "x1": 1, "y": "y", "z": ["z"], "w": ["w"], **kwargs}
    with pytest.raises(ConfigError, match=match):
        tv_decomposition(data, **args)


def test_outcome_outside_unit_interval():
    data = pd.DataFrame({"x": [0, 1], "y": [0.0, 1.5]})
    with pytest.raises(ConfigError, match="not a 0/1 label nor a score"):
        tv_decomposition(data, "x", 0, 1, "y", z=[], w=[])
