"""The TV decomposition of causal fairness analysis (Plecko & Bareinboim 2024; reference/metrics.md B6).

Standard Fairness Model: protected attribute ``X`` (values x0, x1), confounders ``Z``, mediators ``W``,
outcome ``Y``. With discrete ``Z`` and ``W`` the counterfactual effects are identified by the plug-in
(g-formula) estimators, written with ``m(x, z, w) = P(y | x, z, w)``:

    TV     = P(y | x1) - P(y | x0)
    Ctf-DE = sum_{z,w} [m(x1, z, w) - m(x0, z, w)] P(w | x0, z) P(z | x0)
    Ctf-IE = sum_{z,w} m(x1, z, w) [P(w | x0, z) - P(w | x1, z)] P(z | x0)
    Ctf-SE = sum_z m(x1, z) [P(z | x0) - P(z | x1)]
    TV     = Ctf-DE - Ctf-IE - Ctf-SE        (exact, also with the fall-backs below)

    dec = tv_decomposition(data, x="race", x0="white", x1="black", y="pred", z=["age_bin"], w=["finding"])
    dec.ctf_de.value, dec.ctf_de.lo, dec.ctf_de.hi

``true_tv_decomposition`` computes the same quantities from a simulator of the SCM by Monte Carlo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthfair.errors import ConfigError, SynthfairError, did_you_mean
from synthfair.fileio import jsonable
from synthfair.stats import interval, resample

EFFECTS = ("tv", "ctf_de", "ctf_ie", "ctf_se")


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its percentile bootstrap interval (NaN without resamples)."""

    value: float
    lo: float = math.nan
    hi: float = math.nan


@dataclass(frozen=True)
class TVDecomposition:
    """Plug-in TV decomposition; ``boot`` holds one row per resample (columns tv, ctf_de, ctf_ie, ctf_se).

    ``n_empty_cells``: (z, w) cells seen with x0 but not with x1, where ``m(x1, z, w)`` falls back to
    ``m(x1, z)``; ``n_empty_strata``: z strata seen with x0 but not with x1, where ``m(x1, z)`` falls back to
    ``P(y | x1)`` (and ``P(w | x1, z)`` to ``P(w | x1)``). Both on the full data.
    """

    tv: Estimate
    ctf_de: Estimate
    ctf_ie: Estimate
    ctf_se: Estimate
    n: int  # rows with x in {x0, x1}
    n_empty_cells: int
    n_empty_strata: int
    boot: pd.DataFrame

    def to_dict(self) -> dict:
        """JSON-ready point estimates and intervals (NaN -> None), without the resamples."""
        out: dict = {
            k: {s: jsonable(getattr(getattr(self, k), s)) for s in ("value", "lo", "hi")} for k in EFFECTS
        }
        out.update(n=self.n, n_empty_cells=self.n_empty_cells, n_empty_strata=self.n_empty_strata)
        return out


@dataclass(frozen=True)
class TrueTVDecomposition:
    """Population (Monte Carlo) values of the decomposition from a simulator of the SCM."""

    tv: float
    ctf_de: float
    ctf_ie: float
    ctf_se: float
    n: int


def tv_decomposition(
    data: pd.DataFrame,
    x: str,
    x0,
    x1,
    y: str,
    z: Sequence[str],
    w: Sequence[str],
    n_boot: int = 200,
    seed: int = 0,
) -> TVDecomposition:
    """Plug-in estimates of TV, Ctf-DE, Ctf-IE and Ctf-SE with percentile bootstrap intervals.

    ``y`` is 0/1 (labels or thresholded predictions) or a score in [0, 1] (probabilities are then means).
    ``z`` and ``w`` are categorical columns (may be empty); rows whose ``x`` is neither ``x0`` nor ``x1``
    are left out. Resamples draw all rows with replacement from ``numpy.random.default_rng(seed)``.
    """
    frame = _check_data(data, x, x0, x1, y, list(z), list(w))
    is_x1 = (frame[x] == x1).to_numpy()
    zc = _codes(frame, list(z))
    wc = _codes(frame, list(w))
    yv = frame[y].to_numpy(float)
    shape = (int(zc.max()) + 1, int(wc.max()) + 1)
    point, empty_cells, empty_strata = _plugin(is_x1, zc, wc, yv, shape)
    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, len(EFFECTS)), np.nan)
    for b in range(n_boot):
        r = resample(rng, len(frame))
        if is_x1[r].all() or not is_x1[r].any():
            continue  # a resample without one of the two groups has no decomposition
        boot[b] = _plugin(is_x1[r], zc[r], wc[r], yv[r], shape)[0]
    estimates = {k: Estimate(float(point[i]), *interval(boot[:, i])) for i, k in enumerate(EFFECTS)}
    return TVDecomposition(
        **estimates,
        n=len(frame),
        n_empty_cells=empty_cells,
        n_empty_strata=empty_strata,
        boot=pd.DataFrame(boot, columns=list(EFFECTS)),
    )


def true_tv_decomposition(
    simulate: Callable[..., pd.DataFrame],
    x0,
    x1,
    n: int = 1_000_000,
    seed: int = 0,
    x: str = "x",
    y: str = "y",
) -> TrueTVDecomposition:
    """The population decomposition of an SCM, by Monte Carlo over the same exogenous noise.

    ``simulate(n, rng, x=None, w_x=None) -> DataFrame`` samples ``n`` units of the Standard Fairness Model
    and returns at least the columns ``x`` and ``y``. ``x=v`` forces X to v (do(X = v)); ``w_x=v`` forces
    the value of X that the mediators' mechanisms see (default: the X in force), so ``x=x1, w_x=x0`` gives
    ``y_{x1, W_{x0}}``. The simulator must draw the same exogenous noise, in the same order, whatever the
    interventions, so that one seed gives the same units in every run (checked: do(X = X) must reproduce
    the natural run). ``y`` may be 0/1 or a probability. Counterfactuals are conditioned on X in the
    natural run:

        Ctf-DE = E[y_{x1, W_x0} | x0] - E[y_x0 | x0]     Ctf-IE = E[y_{x1, W_x0} | x0] - E[y_x1 | x0]
        Ctf-SE = E[y_x1 | x0] - E[y_x1 | x1]             TV = E[y | x1] - E[y | x0]
    """

    def run(**do) -> pd.DataFrame:
        return simulate(n, np.random.default_rng(seed), **do)

    natural = run()
    at0, at1 = (natural[x] == x0).to_numpy(), (natural[x] == x1).to_numpy()
    if not (at0.any() and at1.any()):
        raise SynthfairError(
            f"the natural run has no unit with {x}={x0!r} or none with {x}={x1!r}", "raise n"
        )
    y_mix = run(x=x1, w_x=x0)[y].to_numpy(float)  # y_{x1, W_{x0}}
    y_x0 = run(x=x0)[y].to_numpy(float)
    y_x1 = run(x=x1)[y].to_numpy(float)
    y_nat = natural[y].to_numpy(float)
    if not (np.allclose(y_x0[at0], y_nat[at0]) and np.allclose(y_x1[at1], y_nat[at1])):
        raise SynthfairError(
            "simulate(x=v) differs from the natural run on units whose X already is v",
            "draw every exogenous noise from rng in a fixed order, whatever the intervention",
        )
    return TrueTVDecomposition(
        tv=float(y_nat[at1].mean() - y_nat[at0].mean()),
        ctf_de=float(y_mix[at0].mean() - y_x0[at0].mean()),
        ctf_ie=float(y_mix[at0].mean() - y_x1[at0].mean()),
        ctf_se=float(y_x1[at0].mean() - y_x1[at1].mean()),
        n=n,
    )


def _plugin(is_x1: np.ndarray, zc: np.ndarray, wc: np.ndarray, y: np.ndarray, shape: tuple[int, int]):
    """(array of TV, Ctf-DE, Ctf-IE, Ctf-SE; empty (z, w) cells; empty z strata) for one sample."""
    # 1. counts and outcome sums per (x, z, w) cell, shape (2, Z, W)
    cell = (is_x1.astype(int) * shape[0] + zc) * shape[1] + wc
    size = 2 * shape[0] * shape[1]
    n = np.bincount(cell, minlength=size).reshape(2, *shape).astype(float)
    s = np.bincount(cell, weights=y, minlength=size).reshape(2, *shape)
    n_xz, s_xz = n.sum(axis=2), s.sum(axis=2)  # (2, Z)
    n_x, s_x = n_xz.sum(axis=1), s_xz.sum(axis=1)  # (2,)
    p_y = s_x / n_x  # P(y | x)
    # 2. P(z | x), P(w | x, z), m(x1, z) and m(x1, z, w), with the fall-backs for cells unseen under x1
    p_z = n_xz / n_x[:, None]
    p_w = np.divide(n, n_xz[:, :, None], out=np.zeros_like(n), where=n_xz[:, :, None] > 0)
    p_w[1, n_xz[1] == 0] = n[1].sum(axis=0) / n_x[1]  # z unseen with x1: P(w | x1, z) := P(w | x1)
    m1_z = np.divide(s_xz[1], n_xz[1], out=np.full(shape[0], p_y[1]), where=n_xz[1] > 0)
    m1_zw = np.divide(s[1], n[1], out=np.repeat(m1_z[:, None], shape[1], axis=1), where=n[1] > 0)
    m0_zw = np.divide(s[0], n[0], out=np.zeros(shape), where=n[0] > 0)  # weight 0 where undefined
    # 3. the plug-in formulas (B6)
    weight0 = p_w[0] * p_z[0][:, None]  # P(w | x0, z) P(z | x0)
    tv = p_y[1] - p_y[0]
    ctf_de = np.sum((m1_zw - m0_zw) * weight0)
    ctf_ie = np.sum(m1_zw * (p_w[0] - p_w[1]) * p_z[0][:, None])
    ctf_se = np.sum(m1_z * (p_z[0] - p_z[1]))
    empty_cells = int(np.sum((n[0] > 0) & (n[1] == 0)))
    empty_strata = int(np.sum((n_xz[0] > 0) & (n_xz[1] == 0)))
    return np.array([tv, ctf_de, ctf_ie, ctf_se]), empty_cells, empty_strata


def _codes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One integer code per row for the combination of ``columns`` (all 0 without columns)."""
    if not columns:
        return np.zeros(len(frame), dtype=int)
    return frame.groupby(columns, sort=True, dropna=False).ngroup().to_numpy()


def _check_data(data: pd.DataFrame, x: str, x0, x1, y: str, z: list[str], w: list[str]) -> pd.DataFrame:
    for name in (x, y, *z, *w):
        if name not in data:
            raise ConfigError(
                f"data has no column {name!r}{did_you_mean(name, data.columns)}",
                f"columns: {', '.join(map(str, data.columns))}",
            )
    if set(z) & set(w) or x in (*z, *w) or y in (x, *z, *w):
        raise ConfigError(f"x={x!r}, y={y!r}, z={z} and w={w} overlap", "give each column one role")
    frame = data[data[x].isin([x0, x1])]
    for value in (x0, x1):
        if not (frame[x] == value).any():
            raise ConfigError(
                f"no row has {x}={value!r}", f"values of {x}: {sorted(map(str, data[x].dropna().unique()))}"
            )
    yv = pd.to_numeric(frame[y], errors="coerce")
    bad = yv.isna() | (yv < 0) | (yv > 1)
    if bad.any():
        raise ConfigError(
            f"{y}={frame[y][bad].iloc[0]!r} at row {frame.index[bad][0]!r} is not a 0/1 label "
            "nor a score in [0, 1]",
            "threshold or calibrate the outcome, and drop rows without one",
        )
    return frame.assign(**{y: yv})
