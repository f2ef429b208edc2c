"""Counterfactual fine-tuning (CFT): training-time classifiers read the intended value off the model's
counterfactuals.

As in causal-gen (Ribeiro, Xia, Monteiro, Pawlowski and Glocker, ICML 2023), adapted to diffusion: the
counterfactual of a training image is the model's one-step prediction of the clean image from the noised
factual under the intervened condition,

    x_t = sqrt(a_t) x + sqrt(1 - a_t) noise,    x_cf = (x_t - sqrt(1 - a_t) eps(x_t, t, pa*)) / sqrt(a_t),

for t in [t_min, t_max] (low enough that x_cf is an image, high enough that the condition shapes it).
Frozen classifiers (``synthfair oracles train`` on the model's own training subjects, never the evaluation
oracles: `synthfair.evaluate.independence` enforces it) score x_cf: cross-entropy towards the intervened
value, and towards their own predictions on the factual image for every other covariate (soft labels,
Xia et al., MICCAI 2024), so that fine-tuning makes the intervention effective without amplifying the rest.
The training loop adds ``weight`` x this loss to the denoising loss, which keeps likelihood and
reconstruction.

One intervention per training image, drawn by the step's generator: a covariate the classifiers know, set to
another value (categorical), a label flipped (findings), or an age drawn uniformly from the classifier's
training range.

For an HVAE the counterfactual is the model's actual one (abduction and decoding, differentiated through)
and the ELBO can be held by a constraint instead of a fixed weight (causal-gen's Lagrangian, damped as in
Platt and Barr's modified method of multipliers): with ``elbo_target`` set, the loss is

    weight x classifier loss + (lambda + damping x v) x v,    v = negative ELBO - elbo_target,

with ``damping x v`` held constant in the gradient; after each applied update lambda grows by
``lagrange_lr x v`` (never below 0). The classifiers may pull only as far as the likelihood allows. With
``elbo_margin`` instead, the target is the starting model's own negative ELBO, measured on the run's first
batches, plus the margin: the same recipe on any data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import atomic_write, sha256_file
from synthfair.model.conditioning import ConditionEncoder
from synthfair.nets import three_channels

GUIDES = "classifiers"  # the classifiers' folder inside model/guidance/ (read by the independence check)
WEIGHT_DIGESTS = "weights.sha256"  # in a routed copy of a guide folder: its weights' sha256, not the weights
MAX_DIGEST_BYTES = 1 << 16


@dataclass(frozen=True)
class TuningConfig:
    classifiers: str | None = None  # a `synthfair oracles train` directory; None = no fine-tuning
    weight: float = 0.05  # classifier loss relative to the denoising loss
    t_min: int = 50  # timesteps of the one-step counterfactual
    t_max: int = 500
    age_range: tuple[float, float] = (20.0, 90.0)  # ages an age intervention draws from
    # HVAE only: hold the negative ELBO (nats per pixel) at this value with a Lagrange multiplier instead of a
    # fixed weight of 1 (e.g. the model's own ELBO before fine-tuning plus a small margin); None: fixed
    elbo_target: float | None = None
    # or: the starting model's negative ELBO on this run's first batches (`ELBO_BATCHES`) plus this margin
    elbo_margin: float | None = None
    lagrange_lr: float = 1.0  # the multiplier's step per nat per pixel of violation
    damping: float = 10.0  # the damped multiplier's stiffness (causal-gen's 100 froze the phantom's runs)

    def __post_init__(self) -> None:
        if self.weight < 0 or not 0 <= self.t_min < self.t_max:
            raise ConfigError(
                f"tuning needs weight >= 0 and t_min < t_max, got {self.weight}, {self.t_min}, {self.t_max}",
                "use e.g. weight 0.05, t_min 50, t_max 500",
            )
        if self.elbo_target is not None and self.elbo_margin is not None:
            raise ConfigError(
                f"tuning has both elbo_target {self.elbo_target} and elbo_margin {self.elbo_margin}",
                "give the target, or the margin over the starting model's own ELBO, not both",
            )
        if self.constrained and not self.classifiers:
            raise ConfigError(
                "tuning.elbo_target (or elbo_margin) without tuning.classifiers: nothing pulls against it",
                "give the classifiers of counterfactual fine-tuning, or remove the constraint",
            )
        if self.elbo_margin is not None and not self.elbo_margin >= 0:
            raise ConfigError(f"tuning.elbo_margin {self.elbo_margin} is negative", "use e.g. 0.01")
        if self.elbo_target is not None and not self.elbo_target > 0:
            raise ConfigError(
                f"tuning.elbo_target {self.elbo_target} is not a positive negative ELBO (nats per pixel)",
                "use the model's own negative ELBO plus a margin, e.g. 3.3",
            )
        if self.lagrange_lr < 0 or self.damping < 0:
            raise ConfigError(
                f"tuning.lagrange_lr {self.lagrange_lr} and tuning.damping {self.damping} must be >= 0",
                "use e.g. lagrange_lr 1.0, damping 10",
            )

    @property
    def constrained(self) -> bool:
        """Whether the ELBO is held by a constraint (``elbo_target`` or ``elbo_margin``)."""
        return self.elbo_target is not None or self.elbo_margin is not None


ELBO_BATCHES = 8  # batches on which ``elbo_margin`` measures the starting model's negative ELBO


@dataclass
class Multiplier:
    """The Lagrange multiplier of the ELBO constraint and the constraint's ``target`` (negative ELBO, nats per
    pixel): the multiplier grows while the negative ELBO is above the target and never falls below 0; a
    checkpoint holds both."""

    target: float
    value: float = 0.0

    def penalty(self, nelbo: torch.Tensor, damping: float) -> torch.Tensor:
        """(lambda + damping x v) x v with v = ``nelbo`` - target; the damping factor is not
        differentiated."""
        violation = nelbo - self.target
        return (self.value + damping * violation.detach()) * violation

    def step(self, nelbo: float, lr: float) -> None:
        """Gradient ascent on lambda: ``nelbo`` is the step's mean negative ELBO (over every process)."""
        violation = nelbo - self.target
        if not math.isfinite(violation):
            raise SynthfairError(
                f"the ELBO constraint's violation is {violation}",
                "lower the learning rate or tuning.weight; resume from the last checkpoint",
            )
        self.value = max(0.0, self.value + lr * violation)


def interventions(
    records: Sequence[Mapping[str, Any]], classifiers, age_range, generator: torch.Generator
) -> list[tuple[str, Any]]:
    """One (covariate, new value) per record: a findings value is ``(label, 0 or 1)``."""
    names = [c.covariate for c in classifiers]
    out = []
    for record in records:
        oracle = classifiers[names[int(torch.randint(len(names), (1,), generator=generator))]]
        u = float(torch.rand((), generator=generator))
        if oracle.kind == "continuous":
            out.append((oracle.covariate, age_range[0] + u * (age_range[1] - age_range[0])))
        elif oracle.kind == "categorical":
            others = [v for v in oracle.targets if v != record.get(oracle.covariate)]
            out.append((oracle.covariate, others[min(int(u * len(others)), len(others) - 1)]))
        else:
            label = oracle.targets[min(int(u * len(oracle.targets)), len(oracle.targets) - 1)]
            now = (record.get(oracle.covariate) or {}).get(label) or 0
            out.append((oracle.covariate, (label, 1 - now)))
    return out


def apply(record: Mapping[str, Any], change: tuple[str, Any]) -> dict[str, Any]:
    name, value = change
    if isinstance(value, tuple):
        return {**record, name: {**(record.get(name) or {}), value[0]: value[1]}}
    return {**record, name: value}


def tuning_loss(
    x_cf: torch.Tensor,
    x0: torch.Tensor,
    changes: Sequence[tuple[str, Any]],
    classifiers,
) -> torch.Tensor:
    """Classifier loss of counterfactuals ``x_cf`` (B, 1, H, W) in [0, 1] against the intended values, with
    the classifiers' predictions on the factual images ``x0`` as soft labels for everything else."""
    losses = []
    for oracle in classifiers:
        net = oracle.net
        with torch.no_grad():
            reference = net(three_channels(x0))
        out = net(three_channels(x_cf))
        intended = [i for i, (name, _) in enumerate(changes) if name == oracle.covariate]
        kept = [i for i in range(len(changes)) if i not in intended]
        losses.append(_soft(oracle.kind, out[kept], reference[kept]) * len(kept))
        if intended:
            values = [changes[i][1] for i in intended]
            losses.append(_hard(oracle, out[intended], reference[intended], values) * len(intended))
    return torch.stack(losses).sum() / len(changes)


def _soft(kind: str, out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    if not len(out):
        return out.sum() * 0
    if kind == "continuous":
        return F.mse_loss(out, reference)
    if kind == "categorical":
        return F.cross_entropy(out, reference.softmax(dim=1))
    return F.binary_cross_entropy_with_logits(out, reference.sigmoid())


def _hard(oracle, out: torch.Tensor, reference: torch.Tensor, values: list) -> torch.Tensor:
    if oracle.kind == "continuous":
        mean, std = oracle.scale
        target = torch.tensor([[(v - mean) / std] for v in values], dtype=out.dtype)
        return F.mse_loss(out, target)
    if oracle.kind == "categorical":
        return F.cross_entropy(out, torch.tensor([oracle.targets.index(v) for v in values]))
    target = reference.sigmoid().clone()  # the other labels keep the factual prediction
    for row, (label, flag) in enumerate(values):
        target[row, oracle.targets.index(label)] = float(flag)
    return F.binary_cross_entropy_with_logits(out, target)


def one_step_counterfactual(eps: torch.Tensor, xt: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The clean image predicted from ``xt`` by ``eps`` (Tweedie), in image space [0, 1]; ``alpha`` (B,)."""
    a = alpha.view(-1, 1, 1, 1)
    x0 = (xt - (1 - a).sqrt() * eps) / a.sqrt()
    return (x0.clamp(-1.0, 1.0) + 1.0) / 2.0


def encode_changed(encoder: ConditionEncoder, records, changes) -> torch.Tensor:
    return encoder.encode([apply(r, c) for r, c in zip(records, changes, strict=True)])


def guide_digests(guide: Path) -> dict[str, str]:
    """sha256 -> file name of the classifier weights in the guide folder ``guide``: hashed from its
    ``*.safetensors``, and read from its ``weights.sha256`` (``<sha256>  <name>`` lines) where a copy keeps
    only the digests (`keep_digests`). What the evaluator's independence check compares oracles with."""
    found = {sha256_file(p): p.name for p in sorted(guide.glob("*.safetensors"))}
    listed = guide / WEIGHT_DIGESTS
    if not listed.is_file():
        return found
    hint = "rewrite it with synthfair.model.finetune.keep_digests from the classifiers, or remove the guide"
    if listed.stat().st_size > MAX_DIGEST_BYTES:
        raise SynthfairError(f"{listed} is {listed.stat().st_size} bytes: not a digest list", hint)
    for number, line in enumerate(listed.read_text(errors="replace").splitlines(), 1):
        digest, _, name = line.partition("  ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name.strip():
            raise SynthfairError(
                f"{listed} line {number}: {line[:80]!r} is not '<sha256>  <file name>'", hint
            )
        found[digest] = name.strip()
    return found


def keep_digests(guide: Path) -> None:
    """Replace the classifier weights in the guide folder ``guide`` by their digests (``weights.sha256``):
    all the independence check needs, at a few hundred bytes instead of megabytes."""
    weights = sorted(guide.glob("*.safetensors"))
    if not weights:
        return
    lines = "".join(f"{digest}  {name}\n" for digest, name in sorted(guide_digests(guide).items()))
    atomic_write(guide / WEIGHT_DIGESTS, lambda f: f.write(lines.encode()))
    for path in weights:
        path.unlink()
