"""Bias-controlled subsets of a release: a `BiasSpec` in, the chosen samples and their achieved statistics
out, with a matched no-bias baseline.

    spec = load_bias_spec("bias.yaml")
    biased, baseline = sample_with_baseline("release/", spec)
    write_subset(biased, "subset/"); write_subset(baseline, "subset/baseline/")
"""

from synthfair.sampling.sampler import Subset, read_samples, sample, sample_with_baseline, write_subset
from synthfair.sampling.spec import (
    BiasSpec,
    Correlation,
    Flip,
    SplitSpec,
    bias_spec_from_dict,
    load_bias_spec,
)

__all__ = [
    "BiasSpec",
    "Correlation",
    "Flip",
    "SplitSpec",
    "Subset",
    "bias_spec_from_dict",
    "load_bias_spec",
    "read_samples",
    "sample",
    "sample_with_baseline",
    "write_subset",
]
