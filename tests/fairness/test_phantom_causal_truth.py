"""On the phantom, the plug-in TV decomposition of a dataset's labels matches the truth of its SCM.

X = race (black vs white), Y = the cardiomegaly label, Z = the site (race's parent in the taxonomy's graph,
which also sets age, a cause of cardiomegaly), no mediators (race acts on findings directly). The truth
comes from the phantom's own structural equations under do(race), over the same subjects' noise.
"""

import numpy as np
import pandas as pd
import pytest

from synthfair.fairness import true_tv_decomposition, tv_decomposition
from synthfair.phantom.simulator import Phantom, PhantomConfig

PHANTOM = Phantom(PhantomConfig(anatomy="procedural"))


def simulate(n, rng, x=None, w_x=None):
    seed = int(rng.integers(2**31))
    rows = []
    for subject in PHANTOM.sample_subjects(n, seed):
        covariates = PHANTOM.covariates(subject, {"race": x} if x is not None else None)
        rows.append(
            {
                "x": covariates["race"],
                "site": covariates["source"],
                "y": covariates["findings"]["cardiomegaly"],
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.slow  # ~60,000 phantom subjects' covariates (no images)
def test_the_plug_in_decomposition_recovers_the_phantom_scm_truth():
    truth = true_tv_decomposition(simulate, "white", "black", n=30_000, seed=1)
    data = simulate(30_000, np.random.default_rng(2))
    estimate = tv_decomposition(data, "x", "white", "black", "y", z=["site"], w=[], n_boot=50)
    assert truth.tv > 0.03  # the phantom plants more cardiomegaly in black patients
    assert abs(truth.ctf_ie) < 1e-12 and estimate.ctf_ie.value == pytest.approx(0, abs=1e-12)
    for name in ("tv", "ctf_de", "ctf_se"):
        got, want = getattr(estimate, name), getattr(truth, name)
        assert got.value == pytest.approx(want, abs=0.02), name
        assert got.lo - 0.01 <= want <= got.hi + 0.01, name
