"""Small image networks shared by the pseudo-oracles and the downstream classifiers of fairness studies.

torchvision architectures built with ``weights=None`` (nothing is downloaded); grayscale images in [0, 1]
are standardized and repeated to three channels.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision

from synthfair.errors import ConfigError


def image_network(arch: str, outputs: int, width_mult: float = 1.0, what: str = "network") -> torch.nn.Module:
    """A torchvision classification model with ``outputs`` logits; ``width_mult`` for MobileNets."""
    kwargs: dict[str, Any] = {"weights": None, "num_classes": outputs}
    if arch.startswith("mobilenet"):
        kwargs["width_mult"] = width_mult
    try:
        return torchvision.models.get_model(arch, **kwargs)
    except ValueError as err:
        raise ConfigError(f"{what} arch {arch!r}: {err}", "use e.g. mobilenet_v3_small or resnet18") from None


def three_channels(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) in [0, 1] -> (N, 3, H, W), roughly standardized."""
    return ((images - 0.5) / 0.25).expand(-1, 3, -1, -1)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random translations (up to 1/16 of the side), seeded: networks should not key on exact pixels."""
    shift = max(1, images.shape[-1] // 16)
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))


@torch.no_grad()
def recalibrate_batch_norm(net: torch.nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Batch-norm statistics as the exact average over the training images under the final weights.

    MobileNet's momentum of 0.01 leaves the running statistics of a short run far from the final weights'
    (a network then predicts one class in eval mode); a pass in train mode with cumulative averages fixes it.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    chunks = list(images.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:  # batch norm cannot take a batch of one in train mode
        chunks[-2:] = [torch.cat(chunks[-2:])]
    for chunk in chunks:
        if len(chunk) > 1:
            net(three_channels(chunk))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.eval()
