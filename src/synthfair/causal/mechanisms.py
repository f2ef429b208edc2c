"""Attribute mechanisms: one structural equation per covariate given its parents, with abducible noise.

Parent values become a feature vector ``f`` (`ParentFeatures`); each mechanism is linear in ``f``:

    categorical  V = argmax_k (phi_k + U_k),  phi = W f + b,  U_k ~ Gumbel(0, 1)           (Gumbel-max)
    multilabel   V_l = 1[eta_l + U_l > 0],     eta = W f + b,  U_l ~ Logistic(0, 1)  (binary Gumbel-max)
    continuous   z(V) = mu + sigma U,          mu = a f + a0, log sigma = c f + c0, U ~ Normal(0, 1)
                 z(x) = logit((x - lo + eps) / (hi - lo + 2 eps))                            (invertible)

Abduction draws ``U`` from its posterior given the observed value, so ``predict(f, abduct(f, v)) == v``:

    categorical  top-down Gumbel (Maddison et al. 2014; Oberst & Sontag 2019), observed class k:
                 g_k ~ Gumbel(logsumexp(phi)),
                 g_j = -log(exp(-g_k) + exp(-(phi_j + G_j))), G_j ~ Gumbel(0, 1)   (Gumbel(phi_j) below g_k)
                 U = g - phi
    multilabel   U_l ~ Logistic(0, 1) truncated to (-eta_l, inf) if v_l = 1, to (-inf, -eta_l) if v_l = 0
    continuous   U = (z(x) - mu) / sigma  (deterministic)

A missing value (code -1, NaN) gets noise from the prior. If rounding ever puts the abducted noise on the
wrong side of a decision boundary (probability ~0), it is moved just inside it: the round trip stays exact.

Fitting is deterministic maximum likelihood with an L2 penalty on the weights (not the intercepts), by
full-batch BFGS in float64 from a fixed start: mean NLL + l2 / 2 * |W|^2, on rows where the value is
observed. Classes (labels) never observed in training are not fitted: they get the logit ``unseen_logit``
(probability ~exp(unseen_logit), default e^-50) and zero weights; a label never negative gets -unseen_logit.
With no observed row, a categorical is uniform over its domain; a continuous with < 2 rows has sigma = 1.

Encoded values: categorical int codes (n,), -1 missing; multilabel float (n, L), NaN missing; continuous
float (n,), NaN missing. Noise: (n, K) Gumbel, (n, L) logistic, (n, 1) normal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, log_softmax, logsumexp, softmax

from synthfair.taxonomy import Covariate

_MARGIN = 1e-9  # relative distance from a decision boundary used by the (measure-zero) repair step


class ParentFeatures:
    """Parent values -> features ``f`` (n, D), in parent order.

    categorical: one-hot over the domain (missing -> all zeros); continuous: (x - mean) / std with the fit's
    mean and std, plus a missing flag (missing -> 0, flag 1); multilabel: 0/1 per label (missing -> 0).
    """

    def __init__(self, parents: Sequence[Covariate]):
        self.parents = tuple(parents)

    def fit(self, columns: Mapping[str, np.ndarray]) -> ParentFeatures:
        self.mean_, self.std_ = {}, {}
        for p in self.parents:
            if p.kind == "continuous":
                x = columns[p.name][~np.isnan(columns[p.name])]
                self.mean_[p.name] = float(x.mean()) if len(x) else 0.0
                std = float(x.std()) if len(x) > 1 else 0.0
                self.std_[p.name] = std if std > 0 else 1.0
        return self

    @property
    def feature_names_(self) -> tuple[str, ...]:
        names: list[str] = []
        for p in self.parents:
            if p.kind == "continuous":
                names += [p.name, f"{p.name}:missing"]
            else:
                names += [f"{p.name}{'=' if p.kind == 'categorical' else '.'}{v}" for v in p.values]
        return tuple(names)

    def transform(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        blocks = [np.zeros((n, 0))]
        for p in self.parents:
            col = columns[p.name]
            if p.kind == "categorical":
                block = (col[:, None] == np.arange(len(p.values))).astype(float)  # -1 matches nothing
            elif p.kind == "continuous":
                missing = np.isnan(col)
                x = (np.where(missing, self.mean_[p.name], col) - self.mean_[p.name]) / self.std_[p.name]
                block = np.stack([x, missing.astype(float)], axis=1)
            else:
                block = np.nan_to_num(col, nan=0.0)
            blocks.append(block)
        return np.concatenate(blocks, axis=1)  # (n, D)

    def state_dict(self) -> dict[str, Any]:
        names = list(self.feature_names_)  # for readers of the saved file; not read back
        return {
            "parents": [p.name for p in self.parents],
            "names": names,
            "mean": self.mean_,
            "std": self.std_,
        }

    @classmethod
    def from_state_dict(cls, parents: Sequence[Covariate], state: Mapping[str, Any]) -> ParentFeatures:
        out = cls(parents)
        out.mean_, out.std_ = dict(state["mean"]), dict(state["std"])
        return out


def _minimize(fun, x0: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Minimize ``fun(x) -> (value, gradient)`` by full-batch BFGS (deterministic).

    Dense BFGS suits the few hundred parameters here; scipy's L-BFGS-B core was measured ~20x slower
    when OpenBLAS threads compete for busy cores."""
    if x0.size == 0:
        return x0
    res = minimize(fun, x0, jac=True, method="BFGS", options={"maxiter": max_iter, "gtol": tol})
    return res.x


def _open_uniform(generator: np.random.Generator, shape) -> np.ndarray:
    """Uniform on the open interval (0, 1): ``random()`` gives k / 2^53, shifted by half a step."""
    return generator.random(shape) + 2.0**-54


class CategoricalMechanism:
    """Gumbel-max: ``V = argmax_k (W f + b + U)_k``, ``U_k ~ Gumbel(0, 1)``; see the module docstring."""

    kind = "categorical"
    PARAMS = ("n_classes", "l2", "max_iter", "tol", "unseen_logit")
    LEARNED = ("n_fit_", "coef_", "intercept_")

    def __init__(
        self,
        n_classes: int,
        l2: float = 1e-4,
        max_iter: int = 500,
        tol: float = 1e-8,
        unseen_logit: float = -50.0,
    ):
        self.n_classes, self.l2, self.max_iter, self.tol = n_classes, l2, max_iter, tol
        self.unseen_logit = unseen_logit

    def fit(self, features: np.ndarray, values: np.ndarray) -> CategoricalMechanism:
        """Multinomial logistic regression over the classes seen in the observed rows."""
        obs = values >= 0
        X, y = features[obs], values[obs]
        n, d = X.shape
        self.n_fit_ = int(n)
        self.coef_, self.intercept_ = np.zeros((self.n_classes, d)), np.zeros(self.n_classes)
        seen = np.unique(y)
        if n == 0:
            return self  # uniform over the domain
        onehot = (y[:, None] == seen).astype(float)  # (n, S)
        log_freq = np.log(onehot.mean(axis=0))
        s = len(seen)

        def nll(theta):
            W, b = theta[: s * d].reshape(s, d), theta[s * d :]
            logits = X @ W.T + b
            resid = softmax(logits, axis=1) - onehot  # (n, S)
            value = -(log_softmax(logits, axis=1) * onehot).sum() / n + 0.5 * self.l2 * (W**2).sum()
            grad = np.concatenate([(resid.T @ X / n + self.l2 * W).ravel(), resid.mean(axis=0)])
            return value, grad

        theta = _minimize(
            nll, np.concatenate([np.zeros(s * d), log_freq - log_freq.mean()]), self.max_iter, self.tol
        )
        self.intercept_[:] = self.unseen_logit
        self.coef_[seen], self.intercept_[seen] = theta[: s * d].reshape(s, d), theta[s * d :]
        return self

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.coef_.T + self.intercept_  # (n, K)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(self.logits(features), axis=1)

    def sample_noise(self, n: int, generator: np.random.Generator) -> np.ndarray:
        return generator.gumbel(size=(n, self.n_classes))

    def predict(self, features: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(features) + noise, axis=1)

    def abduct(self, features: np.ndarray, values: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Posterior Gumbel noise by the top-down construction (module docstring); prior where missing."""
        phi = self.logits(features)  # (n, K)
        G = self.sample_noise(len(phi), generator)  # (n, K); also the prior noise of missing rows
        rows = np.flatnonzero(values >= 0)
        k, phi_o = values[rows], phi[rows]
        top = logsumexp(phi_o, axis=1) + G[rows, k]  # 1. the max g_k ~ Gumbel(logsumexp(phi))
        g = -np.logaddexp(-top[:, None], -(phi_o + G[rows]))  # 2. g_j ~ Gumbel(phi_j) truncated below g_k
        g[np.arange(len(rows)), k] = top
        noise = G.copy()
        noise[rows] = _force_argmax(phi_o, g - phi_o, k)  # 3. U = g - phi (rounding repaired)
        return noise

    def log_prob(self, features: np.ndarray, values: np.ndarray) -> np.ndarray:
        """log P(V = v | f) per row; NaN where missing."""
        logp = log_softmax(self.logits(features), axis=1)
        picked = logp[np.arange(len(values)), np.maximum(values, 0)]
        return np.where(values >= 0, picked, np.nan)

    def state_dict(self) -> dict[str, Any]:
        return _state(self)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> CategoricalMechanism:
        return _from_state(cls, state)


def _force_argmax(phi: np.ndarray, noise: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Make ``argmax(phi + noise) == k`` in every row (only rounding can break it; then raise noise_k)."""
    for _ in range(8):  # one pass is enough in practice
        s = phi + noise
        bad = np.flatnonzero(np.argmax(s, axis=1) != k)
        if len(bad) == 0:
            return noise
        rival = np.max(np.where(np.arange(s.shape[1]) == k[bad, None], -np.inf, s[bad]), axis=1)
        noise[bad, k[bad]] = rival + _MARGIN * (1 + np.abs(rival)) - phi[bad, k[bad]]
    if np.all(np.argmax(phi + noise, axis=1) == k):
        return noise
    raise RuntimeError("abduction failed to reproduce the observed class")


class MultilabelMechanism:
    """One logistic model per label: ``V_l = 1[(W f + b)_l + U_l > 0]``, ``U_l ~ Logistic(0, 1)``."""

    kind = "multilabel"
    PARAMS = ("n_labels", "l2", "max_iter", "tol", "unseen_logit")
    LEARNED = ("n_fit_", "coef_", "intercept_")

    def __init__(
        self,
        n_labels: int,
        l2: float = 1e-4,
        max_iter: int = 500,
        tol: float = 1e-8,
        unseen_logit: float = -50.0,
    ):
        self.n_labels, self.l2, self.max_iter, self.tol = n_labels, l2, max_iter, tol
        self.unseen_logit = unseen_logit

    def fit(self, features: np.ndarray, values: np.ndarray) -> MultilabelMechanism:
        """Per label: L2 logistic regression on the rows where that label is observed."""
        d = features.shape[1]
        self.coef_, self.intercept_ = np.zeros((self.n_labels, d)), np.zeros(self.n_labels)
        self.n_fit_ = [int(n) for n in (~np.isnan(values)).sum(axis=0)]
        for label in range(self.n_labels):
            obs = ~np.isnan(values[:, label])
            self.coef_[label], self.intercept_[label] = self._fit_label(features[obs], values[obs, label])
        return self

    def _fit_label(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        n, d = X.shape
        if n == 0 or y.sum() == 0:
            return np.zeros(d), self.unseen_logit  # never positive: probability ~exp(unseen_logit)
        if y.sum() == n:
            return np.zeros(d), -self.unseen_logit  # never negative

        def nll(theta):
            eta = X @ theta[:d] + theta[d]
            resid = expit(eta) - y
            value = (
                -(y * log_expit(eta) + (1 - y) * log_expit(-eta)).mean()
                + 0.5 * self.l2 * theta[:d] @ theta[:d]
            )
            return value, np.append(X.T @ resid / n + self.l2 * theta[:d], resid.mean())

        rate = y.mean()
        theta = _minimize(nll, np.append(np.zeros(d), np.log(rate / (1 - rate))), self.max_iter, self.tol)
        return theta[:d], float(theta[d])

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.coef_.T + self.intercept_  # (n, L)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return expit(self.logits(features))

    def sample_noise(self, n: int, generator: np.random.Generator) -> np.ndarray:
        return generator.logistic(size=(n, self.n_labels))

    def predict(self, features: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return (self.logits(features) + noise > 0).astype(float)

    def abduct(self, features: np.ndarray, values: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Logistic noise truncated to the side of ``-eta`` consistent with each observed label.

        With r ~ Uniform(0, 1): v = 1 -> survival S(U) = r sigmoid(eta), U = log(1 - S) - log S;
        v = 0 -> CDF F(U) = r sigmoid(-eta), U = log F - log(1 - F); missing -> U = log r - log(1 - r).
        """
        eta = self.logits(features)
        log_r = np.log(_open_uniform(generator, eta.shape))
        log_s = log_r + log_expit(eta)  # 1. v = 1: log S, S ~ Uniform(0, sigmoid(eta))
        log_f = log_r + log_expit(-eta)  # 2. v = 0: log F, F ~ Uniform(0, sigmoid(-eta))
        noise = np.where(values == 1, np.log1p(-np.exp(log_s)) - log_s, log_f - np.log1p(-np.exp(log_f)))
        noise = np.where(np.isnan(values), log_r - np.log1p(-np.exp(log_r)), noise)  # 3. missing: prior
        for _ in range(8):  # 4. rounding at a boundary (probability ~0): move just inside it
            wrong = ~np.isnan(values) & ((eta + noise > 0) != (values == 1))
            if not wrong.any():
                return noise
            side = np.where(values == 1, 1.0, -1.0)
            noise = np.where(wrong, -eta + side * _MARGIN * (1 + np.abs(eta)), noise)
        raise RuntimeError("abduction failed to reproduce the observed labels")

    def log_prob(self, features: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sum over observed labels of log P(V_l = v_l | f), per row."""
        eta = self.logits(features)
        logp = np.where(values == 1, log_expit(eta), log_expit(-eta))
        return np.where(np.isnan(values), 0.0, logp).sum(axis=1)

    def state_dict(self) -> dict[str, Any]:
        return _state(self)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> MultilabelMechanism:
        return _from_state(cls, state)


class ContinuousMechanism:
    """Heteroscedastic logit-normal: ``z(V) = mu(f) + sigma(f) U``, ``U ~ Normal(0, 1)``; V in [lo, hi]."""

    kind = "continuous"
    PARAMS = ("lo", "hi", "eps", "l2", "max_iter", "tol")
    LEARNED = ("n_fit_", "mu_coef_", "mu_intercept_", "log_sigma_coef_", "log_sigma_intercept_")
    LOG_SIGMA = (-9.0, 5.0)  # clip of log sigma (z units): keeps a degenerate fit finite

    def __init__(
        self, lo: float, hi: float, eps: float, l2: float = 1e-4, max_iter: int = 500, tol: float = 1e-8
    ):
        self.lo, self.hi, self.eps, self.l2, self.max_iter, self.tol = lo, hi, eps, l2, max_iter, tol

    def to_z(self, x: np.ndarray) -> np.ndarray:
        p = (x - self.lo + self.eps) / (self.hi - self.lo + 2 * self.eps)
        return np.log(p) - np.log1p(-p)

    def from_z(self, z: np.ndarray) -> np.ndarray:
        x = self.lo - self.eps + (self.hi - self.lo + 2 * self.eps) * expit(z)
        return np.clip(x, self.lo, self.hi)

    def fit(self, features: np.ndarray, values: np.ndarray) -> ContinuousMechanism:
        """Gaussian maximum likelihood in z: mean NLL = mean(log sigma + (z - mu)^2 / (2 sigma^2))."""
        obs = ~np.isnan(values)
        X, z = features[obs], self.to_z(values[obs])
        n, d = X.shape
        self.n_fit_ = int(n)
        self.mu_coef_, self.mu_intercept_ = np.zeros(d), 0.0
        self.log_sigma_coef_, self.log_sigma_intercept_ = np.zeros(d), 0.0
        if n < 2:
            self.mu_intercept_ = float(z.mean()) if n else 0.0
            return self
        lo, hi = self.LOG_SIGMA

        def nll(theta):
            a, c = theta[:d], theta[d + 1 : 2 * d + 1]
            raw = X @ c + theta[2 * d + 1]
            log_sigma = np.clip(raw, lo, hi)
            r = (z - X @ a - theta[d]) * np.exp(-log_sigma)  # standardized residual
            g_mu = -r * np.exp(-log_sigma) / n
            g_ls = (1 - r**2) * ((raw >= lo) & (raw <= hi)) / n
            value = (log_sigma + 0.5 * r**2).mean() + 0.5 * self.l2 * (a @ a + c @ c)
            grad = [X.T @ g_mu + self.l2 * a, [g_mu.sum()], X.T @ g_ls + self.l2 * c, [g_ls.sum()]]
            return value, np.concatenate(grad)

        start = np.concatenate([np.zeros(d), [z.mean()], np.zeros(d), [np.log(max(z.std(), 1e-3))]])
        theta = _minimize(nll, start, self.max_iter, self.tol)
        self.mu_coef_, self.mu_intercept_ = theta[:d], float(theta[d])
        self.log_sigma_coef_, self.log_sigma_intercept_ = theta[d + 1 : 2 * d + 1], float(theta[2 * d + 1])
        return self

    def location_scale(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of z, each (n,)."""
        log_sigma = np.clip(features @ self.log_sigma_coef_ + self.log_sigma_intercept_, *self.LOG_SIGMA)
        return features @ self.mu_coef_ + self.mu_intercept_, np.exp(log_sigma)

    def sample_noise(self, n: int, generator: np.random.Generator) -> np.ndarray:
        return generator.standard_normal(size=(n, 1))

    def predict(self, features: np.ndarray, noise: np.ndarray) -> np.ndarray:
        mu, sigma = self.location_scale(features)
        return self.from_z(mu + sigma * noise[:, 0])

    def abduct(
        self, features: np.ndarray, values: np.ndarray, generator: np.random.Generator | None = None
    ) -> np.ndarray:
        """U = (z(x) - mu) / sigma exactly; where x is missing, prior noise (drawn for every row so the
        stream does not depend on which rows are missing), or NaN without a generator."""
        n = len(values)
        prior = np.full((n, 1), np.nan) if generator is None else self.sample_noise(n, generator)
        mu, sigma = self.location_scale(features)
        with np.errstate(invalid="ignore"):
            u = (self.to_z(values) - mu) / sigma
        return np.where(np.isnan(values), prior[:, 0], u)[:, None]

    def log_prob(self, features: np.ndarray, values: np.ndarray) -> np.ndarray:
        """log density of x (change of variables from z); NaN where missing."""
        mu, sigma = self.location_scale(features)
        width = self.hi - self.lo + 2 * self.eps
        p = (values - self.lo + self.eps) / width
        u = (self.to_z(values) - mu) / sigma
        return (
            -0.5 * u**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi) - np.log(p) - np.log1p(-p) - np.log(width)
        )

    def state_dict(self) -> dict[str, Any]:
        return _state(self)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ContinuousMechanism:
        return _from_state(cls, state)


def _state(mech) -> dict[str, Any]:
    """``kind``, the ``__init__`` parameters and the learned attributes (arrays as nested lists)."""
    learned = {k.rstrip("_"): getattr(mech, k) for k in mech.LEARNED}
    learned = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in learned.items()}
    return {"kind": mech.kind, "params": {k: getattr(mech, k) for k in mech.PARAMS}, **learned}


def _from_state(cls, state: Mapping[str, Any]):
    out = cls(**state["params"])
    for key in cls.LEARNED:
        value = state[key.rstrip("_")]
        setattr(out, key, np.array(value, dtype=float) if "coef" in key or key == "intercept_" else value)
    return out


MECHANISMS = {m.kind: m for m in (CategoricalMechanism, MultilabelMechanism, ContinuousMechanism)}
