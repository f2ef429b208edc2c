"""Pseudo-oracles: one small CNN per covariate, trained on decorrelated factual images.

An oracle predicts a covariate from an image: age by regression, a categorical covariate by classification
over the values present in the data, findings as independent labels. Effectiveness of a counterfactual is
measured with them, so they must not read one covariate through another: they are trained on a resample of
the training images in which the covariates are decorrelated (each image drawn with probability
proportional to the product of its covariates' marginal frequencies over their joint frequency, continuous
covariates in quantile bins, findings as "any finding"), as the soundness literature prescribes
(causal-gen's auxiliary models). Weights are capped (``max_weight`` x the mean) so that a rare cell is not
drawn hundreds of times; the report gives the largest pairwise association (Cramer's V) before and after.

The networks are torchvision architectures built with ``weights=None`` (nothing downloaded); grayscale
images are repeated to three channels. Each oracle reports its own held-out accuracy / AUC / MAE, since
effectiveness measured with an oracle cannot exceed it.

    oracles = train_oracles(OracleConfig(), "cache-64/", "oracles/")
    oracles = Oracles.load("oracles/");  predictions = oracles.predict(images)   # {covariate: array}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

import synthfair
from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import write_json
from synthfair.model.data import CacheDataset
from synthfair.nets import augment, image_network, recalibrate_batch_norm, three_channels
from synthfair.subjects import load_subjects, save_subjects, subject_digests
from synthfair.taxonomy import Covariate, Taxonomy, load_taxonomy

ORACLES_FILE = "oracles.json"
SCHEMA = "synthfair.oracles/1"


@dataclass(frozen=True)
class OracleConfig:
    covariates: tuple[str, ...] = ()  # () = every covariate that varies in the training data
    arch: str = "mobilenet_v3_small"  # a torchvision classification model, built without weights
    width_mult: float = 0.5  # for MobileNet architectures
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    age_bins: int = 5  # quantile bins of continuous covariates when decorrelating
    max_weight: float = 10.0  # cap on a resampling weight, in multiples of the mean weight
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.max_weight <= 1:
            raise ConfigError(
                f"oracles need epochs >= 1, batch_size >= 2 and max_weight > 1, got {self.epochs}, "
                f"{self.batch_size}, {self.max_weight}",
                "use e.g. epochs 8, batch_size 64, max_weight 10",
            )


@dataclass
class Oracle:
    """One covariate's predictor: ``targets`` are its classes (categorical), labels (multilabel) or ()."""

    covariate: str
    kind: str
    targets: tuple[str, ...]
    net: torch.nn.Module
    scale: tuple[float, float] = (0.0, 1.0)  # continuous: (mean, std) of the training targets
    metrics: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> np.ndarray:
        """(N,) ages, (N, C) class probabilities or (N, L) label probabilities for images (N, 1, H, W)."""
        self.net.eval()
        out = self.net(three_channels(images))
        if self.kind == "continuous":
            return (out[:, 0] * self.scale[1] + self.scale[0]).numpy()
        if self.kind == "categorical":
            return out.softmax(dim=1).numpy()
        return out.sigmoid().numpy()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        """The network's pooled penultimate features (N, D): the oracle's view of an image."""
        self.net.eval()
        x = self.net.features(three_channels(images)) if hasattr(self.net, "features") else None
        if x is None:
            raise SynthfairError(f"oracle architecture of {self.covariate!r} exposes no features", "")
        return torch.flatten(self.net.avgpool(x), 1).numpy()


class Oracles:
    """The pseudo-oracles of a directory, by covariate."""

    def __init__(
        self,
        oracles: dict[str, Oracle],
        config: OracleConfig,
        report: dict[str, Any],
        subjects: np.ndarray | None = None,
        directory: Path | None = None,
    ):
        self.oracles = oracles
        self.config = config
        self.report = report
        self.subjects = subjects  # `synthfair.subjects` digests of the training patients (None: unknown)
        self.directory = directory  # where they were loaded from (their weights' files)

    def __getitem__(self, name: str) -> Oracle:
        if name not in self.oracles:
            raise SynthfairError(f"no oracle for {name!r}", f"oracles: {', '.join(self.oracles)}")
        return self.oracles[name]

    def __contains__(self, name: object) -> bool:
        return name in self.oracles

    def __iter__(self):
        return iter(self.oracles.values())

    def predict(self, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every oracle's predictions for images (N, H, W) in [0, 1]."""
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.oracles}
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.asarray(images[start : start + batch_size], np.float32))[:, None]
            for name, oracle in self.oracles.items():
                out[name].append(oracle.predict(x))
        return {name: np.concatenate(parts) for name, parts in out.items()}

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Images (N, H, W) in [0, 1] -> (N, D): every oracle's pooled features, each unit-normalized, joined
        and scaled so that the whole vector has unit norm. The evaluator's CXR encoder (no downloaded
        weights): realism (FID, KID), perceptual distances and privacy are measured in this space."""
        parts = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.asarray(images[start : start + batch_size], np.float32))[:, None]
            per_oracle = [oracle.features(x) for oracle in self]
            per_oracle = [f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-8) for f in per_oracle]
            parts.append(np.concatenate(per_oracle, axis=1) / np.sqrt(len(per_oracle)))
        return np.concatenate(parts)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = {}
        for name, oracle in self.oracles.items():
            save_file(
                {k: v.contiguous() for k, v in oracle.net.state_dict().items()},
                directory / f"{name}.safetensors",
            )
            entries[name] = {
                "kind": oracle.kind,
                "targets": list(oracle.targets),
                "scale": list(oracle.scale),
                "metrics": oracle.metrics,
            }
        meta = {
            "schema": SCHEMA,
            "config": asdict(self.config),
            "oracles": entries,
            "report": self.report,
            "synthfair_version": synthfair.__version__,
        }
        if self.subjects is not None:
            save_subjects(directory, self.subjects)
        write_json(directory / ORACLES_FILE, meta)
        self.directory = directory

    def weight_files(self) -> list[Path]:
        """The saved weights of every oracle (empty before `save` or `load`)."""
        return [self.directory / f"{name}.safetensors" for name in self.oracles] if self.directory else []

    @classmethod
    def load(cls, directory: str | Path) -> Oracles:
        directory = Path(directory)
        path = directory / ORACLES_FILE
        if not path.is_file():
            raise SynthfairError(
                f"{directory} holds no pseudo-oracles (no {ORACLES_FILE})",
                "train them with `synthfair oracles train --data CACHE --out DIR`",
            )
        meta = json.loads(path.read_text())
        config = dataclass_from_dict(OracleConfig, meta["config"], where=str(path))
        oracles = {}
        for name, entry in meta["oracles"].items():
            net = _network(config, _outputs(entry["kind"], entry["targets"]))
            net.load_state_dict(load_file(directory / f"{name}.safetensors"))
            oracles[name] = Oracle(
                name, entry["kind"], tuple(entry["targets"]), net, tuple(entry["scale"]), entry["metrics"]
            )
        return cls(oracles, config, meta["report"], load_subjects(directory), directory)


def train_oracles(
    config: OracleConfig,
    cache: str | Path,
    out: str | Path | None = None,
    taxonomy: Taxonomy | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
) -> Oracles:
    """Train one oracle per covariate on the cache's train split (decorrelated), score it on the validation
    split (or test, if the cache has no validation split); save to ``out`` if given."""
    taxonomy = taxonomy or load_taxonomy()
    train = CacheDataset(cache, split="train", in_memory=True)
    held_out = _held_out(cache)
    train_cov = [train.covariates(i) for i in range(len(train))]
    requested = list(config.covariates) or list(taxonomy.names)
    for name in requested:
        if name not in taxonomy:
            raise ConfigError(f"oracle covariate {name!r} is not in the taxonomy", f"use {taxonomy.names}")
    names = [name for name in requested if _varies(taxonomy[name], train_cov)]
    if not names:
        raise SynthfairError(
            f"none of {requested} varies in the training split of {cache}: nothing for an oracle to learn",
            "train the oracles on a cache with more images",
        )
    rng = np.random.default_rng(config.seed)
    weights, before, after = decorrelation_weights(train_cov, taxonomy, names, config, rng)
    order = rng.choice(len(train), size=len(train), p=weights)  # the decorrelated resample
    train_images = np.stack([train.image(i) for i in range(len(train))])
    held_images = np.stack([held_out.image(i) for i in range(len(held_out))]) if held_out else np.zeros((0,))
    held_cov = [held_out.covariates(i) for i in range(len(held_out))] if held_out else []
    oracles = {}
    for k, name in enumerate(names):
        spec = taxonomy[name]
        targets = _targets(spec, train_cov)  # from the whole split: a resample may miss a rare value
        resampled = [train_cov[i] for i in order]
        oracle = _fit(spec, targets, train_images[order], resampled, config, config.seed + k, on_step)
        oracle.metrics = score(oracle, held_images, held_cov)
        oracles[name] = oracle
    report = {
        "train_images": len(train),
        "held_out_images": len(held_out) if held_out else 0,
        "held_out_split": held_out.meta[0]["split"] if held_out else None,
        "largest_association_before": before,
        "largest_association_after": after,
        "unique_resampled": int(len(set(order.tolist()))),
        "skipped": [name for name in requested if name not in names],  # constant in the training data
        "cache": str(Path(cache).resolve()),
    }
    subjects = subject_digests(m.get("patient_key") or m["sample_key"] for m in train.meta)
    result = Oracles(oracles, config, report, subjects)
    if out is not None:
        result.save(out)
    return result


# -- decorrelation ------------------------------------------------------------------------------------------
def decorrelation_weights(
    records: Sequence[dict[str, Any]],
    taxonomy: Taxonomy,
    names: Sequence[str],
    config: OracleConfig,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Resampling probabilities (sum 1) making the covariates' joint the product of their marginals, and the
    largest pairwise Cramer's V before and after (as ``{"pair": [a, b], "v": value}``)."""
    frame = pd.DataFrame({name: _cells(taxonomy[name], records, config.age_bins) for name in names})
    n = len(frame)
    joint = frame.groupby(list(names))[names[0]].transform("size").to_numpy() / n
    product = np.ones(n)
    for name in names:
        product *= frame[name].map(frame[name].value_counts() / n).to_numpy()
    weights = product / joint
    weights = np.minimum(weights / weights.mean(), config.max_weight)
    weights = weights / weights.sum()
    draw = (rng or np.random.default_rng(0)).choice(n, size=n, p=weights)
    return weights, _largest_v(frame), _largest_v(frame.iloc[draw].reset_index(drop=True))


def _cells(spec: Covariate, records: Sequence[dict[str, Any]], bins: int) -> list[str]:
    values = [r.get(spec.name) for r in records]
    if spec.kind == "continuous":
        x = np.array([np.nan if v is None else float(v) for v in values])
        edges = np.unique(np.nanquantile(x, np.linspace(0, 1, bins + 1))) if np.isfinite(x).any() else []
        return [
            "missing" if np.isnan(v) else str(int(np.searchsorted(edges[1:-1], v, side="right"))) for v in x
        ]
    if spec.kind == "multilabel":
        return ["missing" if not v else str(int(any(x == 1 for x in v.values()))) for v in values]
    return ["missing" if v is None else str(v) for v in values]


def _largest_v(frame: pd.DataFrame) -> dict[str, Any]:
    best = {"pair": None, "v": 0.0}
    columns = list(frame.columns)
    for i, a in enumerate(columns):
        for b in columns[i + 1 :]:
            v = _cramers_v(frame[a], frame[b])
            if v > best["v"]:
                best = {"pair": [a, b], "v": round(v, 4)}
    return best


def _cramers_v(a: pd.Series, b: pd.Series) -> float:
    table = pd.crosstab(a, b).to_numpy().astype(float)
    if min(table.shape) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / (n * (min(table.shape) - 1)))


# -- one oracle ---------------------------------------------------------------------------------------------
def _fit(spec: Covariate, targets, images, records, config: OracleConfig, seed: int, on_step) -> Oracle:
    y, mask = _encode_targets(spec, targets, records)
    scale = (0.0, 1.0)
    if spec.kind == "continuous":
        known = y[mask[:, 0]]
        scale = (float(known.mean()), float(known.std() or 1.0))
        y = (y - scale[0]) / scale[1]
    torch.manual_seed(seed)
    net = _network(config, _outputs(spec.kind, targets))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(images)[:, None]
    y_all, m_all = torch.from_numpy(y), torch.from_numpy(mask)
    steps = config.epochs * math.ceil(len(images) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=steps)
    step = 0
    net.train()
    for _ in range(config.epochs):
        for idx in torch.randperm(len(images), generator=generator).split(config.batch_size):
            if len(idx) < 2:
                continue
            loss = _loss(
                spec.kind, net(three_channels(augment(x_all[idx], generator))), y_all[idx], m_all[idx]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if on_step:
                on_step(spec.name, step, steps)
    recalibrate_batch_norm(net, x_all, config.batch_size)
    return Oracle(spec.name, spec.kind, targets, net, scale)


def _targets(spec: Covariate, records) -> tuple[str, ...]:
    if spec.kind == "continuous":
        return ()
    if spec.kind == "categorical":
        present = {r.get(spec.name) for r in records} - {None}
        return tuple(v for v in spec.values if v in present)
    positive = {label for r in records for label, v in (r.get(spec.name) or {}).items() if v == 1}
    return tuple(label for label in spec.values if label in positive)


def _encode_targets(spec: Covariate, targets, records) -> tuple[np.ndarray, np.ndarray]:
    """Targets (N, K) float32 and a mask (N, K) of known entries."""
    n = len(records)
    if spec.kind == "continuous":
        y = np.array([[np.nan if r.get(spec.name) is None else r[spec.name]] for r in records], np.float32)
    elif spec.kind == "categorical":
        index = {v: i for i, v in enumerate(targets)}
        y = np.array([[index.get(r.get(spec.name), np.nan)] for r in records], np.float32)
    else:
        y = np.full((n, len(targets)), np.nan, np.float32)
        for i, r in enumerate(records):
            for j, label in enumerate(targets):
                value = (r.get(spec.name) or {}).get(label)
                y[i, j] = np.nan if value is None else value
    mask = ~np.isnan(y)
    return np.nan_to_num(y), mask


def _loss(kind: str, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if kind == "continuous":
        return ((out[:, :1] - y) ** 2)[mask].mean() if mask.any() else out.sum() * 0
    if kind == "categorical":
        known = mask[:, 0]
        if not known.any():
            return out.sum() * 0
        return torch.nn.functional.cross_entropy(out[known], y[known, 0].long())
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none")
    return loss[mask].mean() if mask.any() else out.sum() * 0


def score(oracle: Oracle, images: np.ndarray, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Held-out accuracy, macro AUC (categorical), per-label AUC (findings) or MAE (continuous)."""
    if len(images) == 0:
        return {"note": "no held-out images: the cache has no validate or test split"}
    pred = np.concatenate(
        [oracle.predict(torch.from_numpy(images[i : i + 256])[:, None]) for i in range(0, len(images), 256)]
    )
    spec_kind = oracle.kind
    if spec_kind == "continuous":
        truth = np.array(
            [np.nan if r.get(oracle.covariate) is None else r[oracle.covariate] for r in records]
        )
        known = ~np.isnan(truth)
        return {"n": int(known.sum()), "mae": round(float(np.abs(pred[known] - truth[known]).mean()), 4)}
    if spec_kind == "categorical":
        index = {v: i for i, v in enumerate(oracle.targets)}
        truth = np.array([index.get(r.get(oracle.covariate), -1) for r in records])
        known = truth >= 0
        out = {
            "n": int(known.sum()),
            "accuracy": round(float((pred[known].argmax(1) == truth[known]).mean()), 4),
        }
        out["auc"] = auc(truth[known], pred[known], len(oracle.targets))
        return out
    aucs = {}
    for j, label in enumerate(oracle.targets):
        truth = np.array([(r.get(oracle.covariate) or {}).get(label) for r in records], dtype=float)
        known = ~np.isnan(truth)
        if known.any() and 0 < truth[known].sum() < known.sum():
            aucs[label] = round(float(roc_auc_score(truth[known], pred[known, j])), 4)
    return {
        "n": len(records),
        "auc": aucs,
        "mean_auc": round(float(np.mean(list(aucs.values()))), 4) if aucs else None,
    }


def auc(truth: np.ndarray, prob: np.ndarray, classes: int) -> float | None:
    """ROC AUC of class indices ``truth`` against probabilities (N, classes); ``classes == 1``: ``prob`` is
    P(positive) (N,) of 0/1 ``truth``. One-vs-rest macro over the classes present; None if only one is."""
    present = np.unique(truth)
    if len(present) < 2:
        return None
    if classes == 1:
        return round(float(roc_auc_score(truth, prob)), 4)
    prob = prob[:, present] / prob[:, present].sum(1, keepdims=True)
    if len(present) == 2:  # two of the classes occur: a binary AUC of the second against the first
        return round(float(roc_auc_score(truth == present[1], prob[:, 1])), 4)
    return round(float(roc_auc_score(truth, prob, multi_class="ovr", labels=present)), 4)


# -- networks -----------------------------------------------------------------------------------------------
def _outputs(kind: str, targets: Sequence[str]) -> int:
    return 1 if kind == "continuous" else max(len(targets), 1)


def _network(config: OracleConfig, outputs: int) -> torch.nn.Module:
    return image_network(config.arch, outputs, config.width_mult, what="oracle")


def _held_out(cache) -> CacheDataset | None:
    """The validation split (else test) to score the oracles on; None if the cache has neither (the oracles'
    metrics then say so)."""
    for split in ("validate", "test"):
        try:
            return CacheDataset(cache, split=split, in_memory=True)
        except SynthfairError:
            continue
    return None


def _varies(spec: Covariate, records) -> bool:
    if spec.kind == "multilabel":
        return bool(_targets(spec, records))
    return len({json.dumps(r.get(spec.name)) for r in records} - {"null"}) > 1
