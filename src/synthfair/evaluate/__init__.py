"""Soundness evaluation of counterfactual releases: pseudo-oracles, the soundness axioms, realism, privacy,
the phantom's truth, and the report.

    oracles = train_oracles(OracleConfig(), "cache-64/", "oracles/")
    result = evaluate("release/", oracles, "report/", checkpoint="runs/NAME", train_data="cache-64/")
"""

from synthfair.evaluate.evaluate import EvaluateConfig, Evaluation, evaluate
from synthfair.evaluate.oracles import Oracle, OracleConfig, Oracles, train_oracles
from synthfair.evaluate.samples import ReleaseSamples, read_release

__all__ = [
    "EvaluateConfig",
    "Evaluation",
    "Oracle",
    "OracleConfig",
    "Oracles",
    "ReleaseSamples",
    "evaluate",
    "read_release",
    "train_oracles",
]
