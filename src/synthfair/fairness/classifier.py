"""The downstream classifier of a fairness study: a small torchvision CNN for one binary finding.

    config = ClassifierConfig(epochs=15)
    model = train_classifier(images, labels, config)            # images (N, H, W) in [0, 1], labels 0/1
    scores = model.predict(test_images)                         # P(finding) per image
    model = train_classifier(images, labels, config, weights=w) # per-sample loss weights (reweighting)

Trained from scratch (``weights=None``: nothing downloaded), seeded, CPU-feasible at 64 x 64; batch norm is
recalibrated over the training images at the end (see `synthfair.nets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from synthfair.errors import ConfigError, SynthfairError
from synthfair.nets import augment, image_network, recalibrate_batch_norm, three_channels


@dataclass(frozen=True)
class ClassifierConfig:
    arch: str = "mobilenet_v3_small"
    width_mult: float = 0.5
    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.learning_rate <= 0:
            raise ConfigError(
                f"classifier needs epochs >= 1, batch_size >= 2 and learning_rate > 0, got {self.epochs}, "
                f"{self.batch_size}, {self.learning_rate}",
                "use e.g. epochs 15, batch_size 32, learning_rate 2e-3",
            )


@dataclass
class Classifier:
    net: torch.nn.Module
    config: ClassifierConfig

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """P(finding) for images (N, H, W) in [0, 1]."""
        self.net.eval()
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.asarray(images[start : start + batch_size], np.float32))[:, None]
            out.append(torch.sigmoid(self.net(three_channels(x))[:, 0]).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    config: ClassifierConfig,
    weights: np.ndarray | None = None,
    samples_per_epoch: int | None = None,
) -> Classifier:
    """Fit the classifier on images (N, H, W) and 0/1 labels, optionally with per-sample loss weights.

    ``samples_per_epoch`` (default N) fixes how many samples an epoch draws (seeded permutations, cycled),
    so that training sets of different sizes get the same number of optimizer steps."""
    labels = np.asarray(labels, np.float32)
    if len(images) < 2 or len(np.unique(labels)) < 2:
        raise SynthfairError(
            f"a classifier needs at least 2 training images of both classes, got {len(images)} images with "
            f"labels {sorted(set(labels.tolist()))}",
            "make the training split larger (the study's bias spec size) or its prevalence less extreme",
        )
    weights = np.ones(len(images), np.float32) if weights is None else np.asarray(weights, np.float32)
    torch.manual_seed(config.seed)
    net = image_network(config.arch, 1, config.width_mult, what="classifier")
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    x_all = torch.from_numpy(np.asarray(images, np.float32))[:, None]
    y_all, w_all = torch.from_numpy(labels), torch.from_numpy(weights / weights.mean())
    per_epoch = samples_per_epoch or len(images)
    steps = config.epochs * math.ceil(per_epoch / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=steps)
    net.train()
    for _ in range(config.epochs):
        for idx in _epoch_order(len(images), per_epoch, generator).split(config.batch_size):
            if len(idx) < 2:  # batch norm needs two samples
                scheduler.step()
                continue
            logits = net(three_channels(augment(x_all[idx], generator)))[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_all[idx], weight=w_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    recalibrate_batch_norm(net, x_all, config.batch_size)
    return Classifier(net, config)


def _epoch_order(n: int, per_epoch: int, generator: torch.Generator) -> torch.Tensor:
    """``per_epoch`` indices of ``n`` samples: seeded permutations, one after the other."""
    rounds = math.ceil(per_epoch / n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(rounds)])[:per_epoch]
