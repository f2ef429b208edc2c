"""Realism and privacy in the oracles' feature space (our own CXR encoder; no downloaded Inception weights).

- FID: Frechet distance between Gaussians fitted to factual and generated features, after projecting both
  onto the top principal components of the factual features (``components``, at most n - 1), so that small
  evaluation sets give a defined, comparable number. KID: the unbiased MMD^2 with the cubic polynomial
  kernel of Binkowski et al. (2018), averaged over random subsets; unbiased at any n (prefer it when small).
- privacy: each generated image's nearest training image (L2 in feature space) against the training set's
  own nearest-neighbour distances; a generated image closer to a training image than the training set's
  5th-percentile neighbour distance counts as memorized. Images as independent of the training set as a
  fresh draw from its distribution score about 5% this way; well above that points to memorization. The
  closest pairs are returned for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg


def project(reference: np.ndarray, *others: np.ndarray, components: int = 32) -> list[np.ndarray]:
    """Centre on ``reference`` and project everything onto its top principal directions."""
    mean = reference.mean(axis=0)
    k = max(1, min(components, len(reference) - 1, reference.shape[1]))
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    basis = vt[:k].T
    return [(x - mean) @ basis for x in (reference, *others)]


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance of two feature sets (N, D) and (M, D); both need at least 2 rows."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 50, subset_size: int = 100, seed: int = 0
) -> float:
    """Kernel inception distance (unbiased MMD^2, kernel (x.y / d + 1)^3), mean over random subsets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        return float("nan")
    d = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = ~np.eye(m, dtype=bool)
        values.append(kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean())
    return float(np.mean(values))


@dataclass(frozen=True)
class Privacy:
    distances: np.ndarray  # (M,) each generated image's nearest-training-image distance
    nearest: np.ndarray  # (M,) index of that training image
    train_spread: np.ndarray  # (N,) each training image's nearest other training image distance
    threshold: float  # the 5th percentile of train_spread
    memorized: np.ndarray  # (M,) bool: distance < threshold

    @property
    def share(self) -> float:
        return float(self.memorized.mean()) if len(self.memorized) else 0.0

    def closest(self, k: int = 5) -> list[tuple[int, int, float]]:
        """(generated row, training row, distance) of the ``k`` closest pairs."""
        order = np.argsort(self.distances)[:k]
        return [(int(i), int(self.nearest[i]), float(self.distances[i])) for i in order]


def privacy(generated: np.ndarray, train: np.ndarray, percentile: float = 5.0) -> Privacy:
    """Nearest-neighbour distances of ``generated`` features to ``train`` features (see the module doc)."""
    d_gen = _pairwise(generated, train)
    nearest = d_gen.argmin(axis=1)
    d_train = _pairwise(train, train)
    np.fill_diagonal(d_train, np.inf)
    spread = d_train.min(axis=1)
    threshold = float(np.percentile(spread, percentile))
    distances = d_gen[np.arange(len(generated)), nearest]
    return Privacy(distances, nearest, spread, threshold, distances < threshold)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))
