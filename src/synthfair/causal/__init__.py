"""The causal model of SynthFair's covariates: fitted attribute mechanisms and the attribute SCM."""

from synthfair.causal.mechanisms import (
    CategoricalMechanism,
    ContinuousMechanism,
    MultilabelMechanism,
    ParentFeatures,
)
from synthfair.causal.scm import AttributeSCM, CounterfactualCovariates, SCMConfig, index_records

__all__ = [
    "AttributeSCM",
    "CategoricalMechanism",
    "ContinuousMechanism",
    "CounterfactualCovariates",
    "MultilabelMechanism",
    "ParentFeatures",
    "SCMConfig",
    "index_records",
]
