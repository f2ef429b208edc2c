"""Attribute mechanisms on synthetic data drawn from known linear equations."""

import json

import numpy as np
import pytest
from scipy.special import expit, softmax

from synthfair.causal.mechanisms import (
    CategoricalMechanism,
    ContinuousMechanism,
    MultilabelMechanism,
    ParentFeatures,
)
from synthfair.taxonomy import Covariate

N = 5000
W_TRUE = np.array([[1.0, -0.5], [0.0, 0.0], [-1.0, 1.5]])  # 3 classes, 2 features
B_TRUE = np.array([0.5, 0.0, -0.3])


def _features(n=N, seed=0, d=2):
    return np.random.default_rng(seed).standard_normal((n, d))


def _categorical_data(seed=0, n_classes=4):
    """Classes 0..2 from a Gumbel-max SCM; class 3 (if any) never occurs."""
    rng = np.random.default_rng(seed)
    X = _features(seed=seed)
    y = np.argmax(X @ W_TRUE.T + B_TRUE + rng.gumbel(size=(N, 3)), axis=1)
    return X, y


def _fitted_categorical(n_classes=4):
    X, y = _categorical_data(n_classes=n_classes)
    return CategoricalMechanism(n_classes).fit(X, y), X, y


def _multilabel_data(seed=0):
    """Label 0: logistic in feature 0; label 1: never positive; label 2: constant rate."""
    rng = np.random.default_rng(seed)
    X = _features(seed=seed)
    eta = np.stack([-1.0 + 1.2 * X[:, 0], np.full(N, -np.inf), np.full(N, -0.5)], axis=1)
    return X, (eta + rng.logistic(size=eta.shape) > 0).astype(float)


def _continuous_data(seed=0, lo=0.0, hi=120.0, eps=0.12):
    rng = np.random.default_rng(seed)
    X = _features(seed=seed)
    mech = ContinuousMechanism(lo, hi, eps)
    z = 0.2 + 0.5 * X[:, 0] + np.exp(-0.7 + 0.3 * X[:, 1]) * rng.standard_normal(N)
    return mech, X, mech.from_z(z)


def test_parent_features_encode_each_kind_and_missing():
    cat = Covariate("c", "categorical", "patient", values=("a", "b", "c"))
    cont = Covariate("x", "continuous", "patient", range=(0.0, 100.0))
    multi = Covariate("m", "multilabel", "patient", values=("p", "q"))
    columns = {
        "c": np.array([0, 2, -1]),
        "x": np.array([10.0, np.nan, 30.0]),
        "m": np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, np.nan]]),
    }
    features = ParentFeatures([cat, cont, multi]).fit(columns)
    assert features.mean_ == {"x": 20.0} and features.std_ == {"x": 10.0}
    assert features.feature_names_ == ("c=a", "c=b", "c=c", "x", "x:missing", "m.p", "m.q")
    expected = [
        [1, 0, 0, -1, 0, 1, 0],
        [0, 0, 1, 0, 1, 0, 1],  # missing x -> 0 and flag
        [0, 0, 0, 1, 0, 0, 0],  # missing category -> all zeros; missing label -> 0
    ]
    np.testing.assert_array_equal(features.transform(columns, 3), expected)
    assert ParentFeatures([]).fit({}).transform({}, 4).shape == (4, 0)


def test_categorical_fit_recovers_logits_and_unseen_class_is_impossible():
    mech, X, _ = _fitted_categorical()
    centered = mech.coef_[:3] - mech.coef_[:3].mean(axis=0)
    np.testing.assert_allclose(centered, W_TRUE - W_TRUE.mean(axis=0), atol=0.12)
    assert mech.intercept_[3] == -50.0 and np.all(mech.coef_[3] == 0)
    probs = mech.probabilities(X)
    assert probs[:, 3].max() < 1e-15
    np.testing.assert_allclose(np.exp(mech.log_prob(X, np.argmax(probs, 1))), probs.max(1))


@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: logits up to ~hundreds apart
def test_categorical_abduct_then_predict_is_exact(scale):
    mech, X, y = _fitted_categorical()
    X = X * scale
    rng = np.random.default_rng(1)
    y = np.where(rng.random(N) < 0.05, 3, rng.integers(0, 4, N))  # includes the unseen class
    y_missing = np.where(rng.random(N) < 0.1, -1, y)
    noise = mech.abduct(X, y_missing, np.random.default_rng(2))
    assert noise.shape == (N, 4) and np.isfinite(noise).all()
    observed = y_missing >= 0
    np.testing.assert_array_equal(mech.predict(X, noise)[observed], y_missing[observed])


def test_categorical_counterfactual_follows_the_model():
    """Factual y ~ P(.|f); the abducted noise is posterior, so predictions at f' follow P(.|f')."""
    mech, _, _ = _fitted_categorical()
    f, f_new = np.tile([[0.5, -1.0]], (20000, 1)), np.tile([[-1.0, 1.0]], (20000, 1))
    rng = np.random.default_rng(3)
    y = mech.predict(f, mech.sample_noise(len(f), rng))
    y_cf = mech.predict(f_new, mech.abduct(f, y, rng))
    freq = np.bincount(y_cf, minlength=4) / len(y_cf)
    np.testing.assert_allclose(freq, mech.probabilities(f_new[:1])[0], atol=0.012)


def test_two_class_gumbel_max_flip_rate_matches_logistic_theory():
    """Two classes: y = 1[delta + eps > 0], eps ~ Logistic, so P(y'=1 | y=0) = 1 - s(-delta') / s(-delta)."""
    mech = CategoricalMechanism(2)
    mech.coef_, mech.intercept_, mech.n_fit_ = np.zeros((2, 1)), np.array([0.0, -1.0]), 0
    mech.coef_[1, 0] = 1.0
    f, f_new = np.zeros((20000, 1)), np.ones((20000, 1))  # delta = -1 -> delta' = 0
    rng = np.random.default_rng(4)
    y = mech.predict(f, mech.sample_noise(len(f), rng))
    y_cf = mech.predict(f_new, mech.abduct(f, y, rng))
    assert np.all(y_cf[y == 1] == 1)  # monotone: the effect only pushes up
    theory = 1 - expit(0.0) / expit(1.0)
    assert abs(y_cf[y == 0].mean() - theory) < 0.015


def test_multilabel_fit_and_never_positive_label():
    X, Y = _multilabel_data()
    mech = MultilabelMechanism(3).fit(X, Y)
    np.testing.assert_allclose([mech.intercept_[0], *mech.coef_[0]], [-1.0, 1.2, 0.0], atol=0.12)
    assert mech.intercept_[1] == -50.0 and np.all(mech.coef_[1] == 0)
    assert abs(mech.intercept_[2] + 0.5) < 0.1
    Y_missing = Y.copy()
    Y_missing[:100, 0] = np.nan
    assert MultilabelMechanism(3).fit(X, Y_missing).n_fit_ == [N - 100, N, N]


def test_multilabel_abduct_then_predict_is_exact_and_missing_gets_prior_noise():
    X, Y = _multilabel_data()
    mech = MultilabelMechanism(3).fit(X, Y)
    rng = np.random.default_rng(5)
    Y = rng.integers(0, 2, Y.shape).astype(float)  # also positives of the never-positive label
    Y[rng.random(Y.shape) < 0.2] = np.nan
    noise = mech.abduct(X * 30, Y, rng)
    observed = ~np.isnan(Y)
    np.testing.assert_array_equal(mech.predict(X * 30, noise)[observed], Y[observed])
    prior = noise[np.isnan(Y)]
    assert abs(prior.mean()) < 0.1 and abs(prior.std() - np.pi / np.sqrt(3)) < 0.15


def test_multilabel_flip_rate_matches_theory():
    mech = MultilabelMechanism(1)
    mech.coef_, mech.intercept_, mech.n_fit_ = np.ones((1, 1)), np.array([-2.0]), [0]
    f, f_new = np.zeros((20000, 1)), np.full((20000, 1), 1.5)  # eta -2 -> -0.5
    rng = np.random.default_rng(6)
    y = mech.predict(f, mech.sample_noise(len(f), rng))
    y_cf = mech.predict(f_new, mech.abduct(f, y, rng))
    assert np.all(y_cf[y[:, 0] == 1] == 1)
    assert abs(y_cf[y[:, 0] == 0].mean() - (1 - expit(0.5) / expit(2.0))) < 0.01


def test_continuous_fit_recovers_location_and_scale():
    mech, X, x = _continuous_data()
    mech.fit(X, x)
    np.testing.assert_allclose([mech.mu_intercept_, *mech.mu_coef_], [0.2, 0.5, 0.0], atol=0.05)
    np.testing.assert_allclose(
        [mech.log_sigma_intercept_, *mech.log_sigma_coef_], [-0.7, 0.0, 0.3], atol=0.05
    )


def test_continuous_round_trip_within_1e9_including_the_range_ends():
    mech, X, x = _continuous_data()
    mech.fit(X, x)
    x = x.copy()
    x[:3] = [0.0, 120.0, 60.0]
    noise = mech.abduct(X, x)  # deterministic: no generator needed
    np.testing.assert_array_equal(noise, mech.abduct(X, x, np.random.default_rng(0)))
    np.testing.assert_allclose(mech.predict(X, noise), x, rtol=0, atol=1e-9)
    x[5] = np.nan
    assert (
        np.isnan(mech.abduct(X, x)[5, 0]) and np.isfinite(mech.abduct(X, x, np.random.default_rng(0))).all()
    )


def test_continuous_density_integrates_to_one():
    mech, X, x = _continuous_data()
    mech.fit(X, x)
    grid = np.linspace(0.0, 120.0, 200001)
    density = np.exp(mech.log_prob(np.tile(X[:1], (len(grid), 1)), grid))
    assert abs(np.trapezoid(density, grid) - 1) < 1e-3


def _fit_all():
    X, y = _categorical_data()
    Xm, Y = _multilabel_data()
    mc, Xc, x = _continuous_data()
    return [
        (CategoricalMechanism(4).fit(X, y), X, y),
        (MultilabelMechanism(3).fit(Xm, Y), Xm, Y),
        (mc.fit(Xc, x), Xc, x),
    ]


@pytest.fixture(scope="module")
def fitted():
    return _fit_all()


@pytest.mark.parametrize("which", [0, 1, 2], ids=["categorical", "multilabel", "continuous"])
def test_state_dict_json_round_trip_gives_identical_outputs(fitted, which):
    mech, X, values = fitted[which]
    state = json.loads(json.dumps(mech.state_dict()))
    loaded = type(mech).from_state_dict(state)
    a = mech.abduct(X, values, np.random.default_rng(7))
    np.testing.assert_array_equal(a, loaded.abduct(X, values, np.random.default_rng(7)))
    np.testing.assert_array_equal(mech.predict(X, a), loaded.predict(X, a))
    np.testing.assert_array_equal(mech.log_prob(X, values), loaded.log_prob(X, values))


def test_same_data_same_fit_and_same_seed_same_noise(fitted):
    first, second = fitted, _fit_all()
    for (a, X, values), (b, _, _) in zip(first, second, strict=True):
        assert a.state_dict() == b.state_dict()
        na, nb = a.abduct(X, values, np.random.default_rng(8)), b.abduct(X, values, np.random.default_rng(8))
        np.testing.assert_array_equal(na, nb)
        if a.kind != "continuous":  # continuous abduction is deterministic
            assert not np.array_equal(na, a.abduct(X, values, np.random.default_rng(9)))


def test_categorical_with_no_observed_row_is_uniform():
    mech = CategoricalMechanism(3).fit(np.zeros((4, 1)), np.full(4, -1))
    np.testing.assert_allclose(mech.probabilities(np.zeros((1, 1))), [[1 / 3] * 3])
    assert mech.n_fit_ == 0 and softmax(mech.logits(np.zeros((1, 1)))).shape == (1, 3)


@pytest.mark.parametrize("which", [0, 1], ids=["categorical", "multilabel"])
def test_round_trip_stays_exact_where_rounding_hits_the_decision_boundary(fitted, which):
    """Logits ~1e17 make the sampled noise round onto the boundary; abduction moves it just inside."""
    mech, X, _ = fitted[which]
    X = X[:500] * 1e17
    rng = np.random.default_rng(10)
    if mech.kind == "categorical":
        values = rng.integers(0, mech.n_classes, len(X))
    else:
        values = rng.integers(0, 2, (len(X), mech.n_labels)).astype(float)
    np.testing.assert_array_equal(mech.predict(X, mech.abduct(X, values, rng)), values)
