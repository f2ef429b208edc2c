"""Bias specifications: which subset of a release to draw, and which biases to inject into it.

A bias spec (YAML, or `BiasSpec` in Python)::

    size: 1200                     # samples over all splits (pairs, in paired mode)
    seed: 0                        # every choice is a function of (seed, sample_hash): engine-independent
    target: findings.cardiomegaly  # the label the biases are about (a finding)
    groups: [sex, race]            # the intersection that defines groups (any covariates; age in its bins)
    shares: {female x black: 0.05} # group shares; groups not named share the rest as in the pool
    prevalence: {female x black: 0.6}  # P(target = 1 | group); groups not named get the pool's rate
                                   # (without groups the one group is called all: prevalence: {all: 0.5})
    correlation: {covariate: device, value: philips, strength: 0.9}
                                   # spurious link: P(device = philips | y) = (1 + s) / 2 for y = 1,
                                   # (1 - s) / 2 for y = 0 (Waterbirds' confounder strength 0.95 is s = 0.9)
    label_noise:                   # annotation bias: flip rates per group (drawn once, exactly)
      female x black: {positive_to_negative: 0.25}
    splits:                        # fractions of size; which knobs apply in each split
      train:    {fraction: 0.6, biased: true,  label_noise: true}
      validate: {fraction: 0.2, biased: false, label_noise: true}
      test:     {fraction: 0.2, biased: false, label_noise: false}
    split_by: patient              # patient: hashed patients into the splits (no family or patient in two
                                   # splits); source: the release's own split column
    kinds: [factual, counterfactual]   # which samples may be chosen
    where: {view: [PA, AP]}        # population filter: categorical values, [lo, hi] ranges, finding values
    pairs: null                    # e.g. sex: factual-counterfactual pairs that differ only in sex
    prefer_factual: true           # fill each cell with factual images first, counterfactuals after

Unbiased splits get the matched no-bias settings (`BiasSpec.baseline`): equal group shares (when shares
are set), every group at the biased split's overall prevalence, correlation strength 0, no label noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthfair.config import dataclass_from_dict, read_yaml
from synthfair.errors import ConfigError

SPLITS = ("train", "validate", "test")
KINDS = ("factual", "counterfactual", "reconstruction")
SPLIT_BY = ("patient", "source")


@dataclass(frozen=True)
class SplitSpec:
    fraction: float
    biased: bool = False  # the bias knobs apply (else the matched no-bias settings)
    label_noise: bool = False  # the label flips apply


@dataclass(frozen=True)
class Correlation:
    covariate: str  # a categorical covariate, e.g. device
    value: str  # the value that goes with target = 1, e.g. philips
    strength: float  # in [-1, 1]: P(value | y=1) - P(value | y=0); 0 = independent and balanced


@dataclass(frozen=True)
class Flip:
    positive_to_negative: float = 0.0  # underdiagnosis: a true 1 labelled 0
    negative_to_positive: float = 0.0


def _default_splits() -> dict[str, SplitSpec]:
    return {
        "train": SplitSpec(0.6, biased=True, label_noise=True),
        "validate": SplitSpec(0.2, biased=False, label_noise=True),
        "test": SplitSpec(0.2, biased=False, label_noise=False),
    }


@dataclass(frozen=True)
class BiasSpec:
    size: int
    seed: int = 0
    target: str | None = None
    groups: tuple[str, ...] = ()
    shares: dict[str, float] = field(default_factory=dict)
    prevalence: dict[str, float] = field(default_factory=dict)
    correlation: Correlation | None = None
    label_noise: dict[str, Flip] = field(default_factory=dict)
    splits: dict[str, SplitSpec] = field(default_factory=_default_splits)
    split_by: str = "patient"
    kinds: tuple[str, ...] = ("factual", "counterfactual")
    where: dict[str, Any] = field(default_factory=dict)
    pairs: str | None = None
    prefer_factual: bool = True

    def __post_init__(self) -> None:
        _check(self.size >= 1, f"size must be >= 1, got {self.size}", "e.g. size: 1000")
        needs_target = self.prevalence or self.correlation or self.label_noise
        _check(
            not needs_target or self.target,
            "prevalence, correlation and label_noise need a target",
            "add e.g. target: findings.cardiomegaly",
        )
        _check(
            not self.shares or self.groups,
            "shares are per group, but no groups are set",
            "add e.g. groups: [sex]",
        )
        for name, values in (("prevalence", self.prevalence), ("label_noise", self.label_noise)):
            _check(
                self.groups or set(values) <= {"all"},
                f"{name} names groups {sorted(values)}, but no groups are set",
                f"add groups (e.g. groups: [sex]), or write {name}: {{all: ...}}",
            )
        for name, values in (("shares", self.shares), ("prevalence", self.prevalence)):
            for group, value in values.items():
                _check(0 <= value <= 1, f"{name}.{group} = {value} is not in [0, 1]", "use a probability")
        _check(
            sum(self.shares.values()) <= 1 + 1e-9,
            f"shares sum to {sum(self.shares.values()):.3f} > 1",
            "lower them; groups not named share what is left",
        )
        if self.correlation is not None:
            s = self.correlation.strength
            _check(-1 <= s <= 1, f"correlation.strength = {s} is not in [-1, 1]", "e.g. strength: 0.9")
        for group, flip in self.label_noise.items():
            for rate in (flip.positive_to_negative, flip.negative_to_positive):
                _check(0 <= rate <= 1, f"label_noise.{group} rate {rate} is not in [0, 1]", "a probability")
        _check(bool(self.splits), "no splits", "e.g. splits: {train: {fraction: 1.0, biased: true}}")
        for name, split in self.splits.items():
            _check(name in SPLITS, f"split {name!r} is not one of {list(SPLITS)}", "rename it")
            _check(split.fraction >= 0, f"splits.{name}.fraction = {split.fraction} < 0", "use >= 0")
        total = sum(split.fraction for split in self.splits.values())
        _check(
            abs(total - 1) < 1e-6,
            f"split fractions sum to {total:.4f}, not 1",
            "make splits.*.fraction add up to 1",
        )
        _check(
            self.split_by in SPLIT_BY,
            f"split_by {self.split_by!r} is not one of {list(SPLIT_BY)}",
            "patient (hashed, leakage-free) or source (the release's splits)",
        )
        for kind in self.kinds:
            _check(kind in KINDS, f"kinds: {kind!r} is not one of {list(KINDS)}", "e.g. [factual]")
        _check(
            self.pairs is None or "factual" in self.kinds and "counterfactual" in self.kinds,
            "pairs need factual and counterfactual kinds",
            "kinds: [factual, counterfactual]",
        )

    @property
    def knobs(self) -> dict[str, Any]:
        """The bias knobs that are set (for reports)."""
        knobs = {
            "shares": self.shares,
            "prevalence": self.prevalence,
            "correlation": self.correlation,
            "label_noise": self.label_noise,
        }
        return {k: v for k, v in knobs.items() if v}

    def baseline(self) -> BiasSpec:
        """The matched no-bias spec: same size, splits, target, groups and seed; every knob at zero (equal
        shares where shares were set; prevalence and correlation set by the sampler to no-bias values)."""
        splits = {
            name: replace(split, biased=False, label_noise=False) for name, split in self.splits.items()
        }
        correlation = replace(self.correlation, strength=0.0) if self.correlation else None
        return replace(self, splits=splits, correlation=correlation, label_noise={})


def load_bias_spec(path: str | Path) -> BiasSpec:
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: a bias spec is a mapping, got {type(data).__name__}", "see docs/sampling.md"
        )
    return bias_spec_from_dict(data, where=str(path))


def bias_spec_from_dict(data: Mapping[str, Any], where: str = "bias spec") -> BiasSpec:
    """A spec from plain data; ``label_noise`` values may be a number (the positive -> negative rate)."""
    data = dict(data)
    noise = data.get("label_noise") or {}
    if isinstance(noise, Mapping):
        data["label_noise"] = {
            k: {"positive_to_negative": v} if isinstance(v, (int, float)) else v for k, v in noise.items()
        }
    if isinstance(data.get("splits"), Mapping):
        shorthand = lambda k, v: {"fraction": v, "biased": k == "train", "label_noise": k != "test"}  # noqa: E731
        data["splits"] = {
            k: shorthand(k, v) if isinstance(v, (int, float)) else v for k, v in data["splits"].items()
        }
    return dataclass_from_dict(BiasSpec, data, where=where)


def _check(ok: Any, message: str, hint: str) -> None:
    if not ok:
        raise ConfigError(f"bias spec: {message}", hint)
