"""The image mechanism: a covariate-conditioned diffusion model built from diffusers parts.

- Denoiser: diffusers' ``UNet2DConditionModel`` without cross-attention; the conditioning vector of
  `ConditionEncoder` enters through ``class_embed_type="projection"`` (Linear-SiLU-Linear, added to the
  timestep embedding). Images are single-channel, scaled from [0, 1] to [-1, 1].
- Training: DDPM, epsilon prediction; per-group condition dropout for classifier-free guidance (train.py).
- Abduction: deterministic DDIM inversion (eta = 0) under the factual covariates at guidance 1
  (``DDIMInverseScheduler``), giving the image's noise ``x_T``.
- Prediction: DDIM sampling (``DDIMScheduler``, eta = 0) from ``x_T`` under the counterfactual covariates,
  with classifier-free guidance ``eps = eps_null + w (eps_cond - eps_null)``; the null condition nulls every
  group (``guide="all"``) or only the intervened ones (``guide="intervened"``).

Both directions use the same step count and spacing and ``clip_sample=False``, as inversion requires.

Alternative abduction, edit-friendly DDPM noise maps (Huberman-Spiegelglas, Kulikov and Michaeli, CVPR 2024):
each ``x_t`` of the step schedule is drawn independently from ``q(x_t | x_0)`` with a seeded generator, and
the abducted noise is the correction ``c_t = x_{t-1} - mu(x_t | factual)`` that makes each stochastic
(eta = 1) reverse step land on the next ``x_t``. Prediction re-runs the reverse chain under the
counterfactual covariates with the same corrections (``replay``). Reconstruction is exact by
construction, and the noise maps hold less of the image's structure than a DDIM ``x_T`` does, so the
counterfactual condition moves the image further (measured in docs/benchmarks.md).
A model directory holds ``unet/`` (diffusers ``save_pretrained``, safetensors), ``scheduler/`` and
``synthfair_model.json`` (model config, conditioning covariates, taxonomy hash, package version).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from synthfair import pretrained
from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import honour_umask
from synthfair.model.conditioning import ConditionEncoder
from synthfair.model.registry import MODEL_FILE, condition_encoder, read_record, record_extra, write_record
from synthfair.taxonomy import Taxonomy, load_taxonomy

TIME_SCALE_SHIFTS = ("default", "scale_shift")
WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"  # inside a model directory


@dataclass(frozen=True)
class ModelConfig:
    sample_size: int = 64  # image side in pixels
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # channels per resolution level
    layers_per_block: int = 1
    attention_levels: tuple[int, ...] = (2,)  # levels (0 = full resolution) with self-attention
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # cosine: keeps signal at small sizes
    # how the time + covariate embedding enters each ResNet block: "default" adds it as a bias, "scale_shift"
    # modulates the normalized features (scale and shift, as in ADM): a stronger hold for the conditioning
    time_scale_shift: str = "default"
    covariates: tuple[str, ...] = ()  # conditioning covariates; () = every covariate of the taxonomy
    # space-to-depth: the UNet sees (patch_size**2, H / patch_size, W / patch_size), so its first level runs
    # at a quarter of the pixels for patch_size 2: more channels for the same compute
    patch_size: int = 1

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.sample_size % (
            self.patch_size * 2 ** (len(self.block_out_channels) - 1)
        ):
            raise ConfigError(
                f"model.sample_size {self.sample_size} is not divisible by patch_size {self.patch_size} "
                f"x 2**{len(self.block_out_channels) - 1}",
                "use a size divisible by the patch size times 2 to the number of downsampling levels",
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(
                f"model.block_out_channels {self.block_out_channels} are not multiples of norm_num_groups "
                f"{self.norm_num_groups}",
                "pick channel counts divisible by norm_num_groups",
            )
        if self.time_scale_shift not in TIME_SCALE_SHIFTS:
            raise ConfigError(
                f"model.time_scale_shift {self.time_scale_shift!r} is not one of {TIME_SCALE_SHIFTS}",
                "use scale_shift (stronger conditioning) or default",
            )


def build_unet(config: ModelConfig, cond_dim: int) -> UNet2DConditionModel:
    levels = range(len(config.block_out_channels))
    down = tuple("AttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in levels)
    up = tuple("AttnUpBlock2D" if i in config.attention_levels else "UpBlock2D" for i in reversed(levels))
    return UNet2DConditionModel(
        sample_size=config.sample_size // config.patch_size,
        in_channels=config.patch_size**2,
        out_channels=config.patch_size**2,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2D",
        class_embed_type="projection",
        projection_class_embeddings_input_dim=cond_dim,
        norm_num_groups=config.norm_num_groups,
        resnet_time_scale_shift=config.time_scale_shift,
        attention_head_dim=8,
        cross_attention_dim=8,  # unused: no cross-attention blocks, but diffusers needs a number
    )


def denoise(
    unet: UNet2DConditionModel, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, patch_size: int = 1
) -> torch.Tensor:
    """The UNet's noise prediction for images ``x`` (B, 1, H, W); with ``patch_size`` p > 1 it works on
    (B, p * p, H / p, W / p) (pixel unshuffle) and its output is folded back."""
    if patch_size == 1:
        return unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
    out = unet(F.pixel_unshuffle(x, patch_size), t, encoder_hidden_states=None, class_labels=cond).sample
    return F.pixel_shuffle(out, patch_size)


def build_scheduler(config: ModelConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="epsilon",
        clip_sample=False,
    )


@dataclass(frozen=True, eq=False)
class Reference:
    """A guidance reference: the condition to guide away from (B, D) and each row's scale (B,)."""

    cond: torch.Tensor
    scale: torch.Tensor


@dataclass(frozen=True, eq=False)
class NoiseMaps:
    """An edit-friendly DDPM abduction: the factual chain and the correction of every reverse step."""

    steps: int  # the schedule's step count (timesteps are T / steps apart)
    timesteps: list[int]  # the replayed timesteps, noisiest first (the skipped ones left out)
    chain: list[torch.Tensor]  # x_t of the factual image at each timestep, then x_0 itself
    corrections: list[torch.Tensor]  # x_{t-1} - mu(x_t | factual) per timestep
    eps: list[torch.Tensor]  # eps(x_t | factual) per timestep

    @property
    def xt(self) -> torch.Tensor:
        return self.chain[0]


@dataclass
class DiffusionModel:
    """A trained (or fresh) denoiser with its conditioning encoder and noise schedule."""

    unet: UNet2DConditionModel
    encoder: ConditionEncoder
    scheduler: DDPMScheduler
    config: ModelConfig
    extra: dict[str, Any] = field(default_factory=dict)  # provenance written beside the weights
    kind: ClassVar[str] = "diffusion"

    @property
    def network(self) -> torch.nn.Module:
        """The trained network (what moves between devices and is set to eval mode)."""
        return self.unet

    @classmethod
    def create(cls, config: ModelConfig, taxonomy: Taxonomy | None = None, seed: int = 0) -> DiffusionModel:
        taxonomy = taxonomy or load_taxonomy()
        encoder = ConditionEncoder(taxonomy, config.covariates or None)
        with torch.random.fork_rng(devices=[]):  # diffusers initializes from the global generator: isolate it
            torch.manual_seed(seed)
            unet = build_unet(config, encoder.dim)
        return cls(unet, encoder, build_scheduler(config), config)

    # -- network evaluations ---------------------------------------------------------------------------------
    def eps(
        self,
        x: torch.Tensor,
        t: int | torch.Tensor,
        cond: torch.Tensor,
        guidance: float = 1.0,
        null: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted noise; with ``guidance != 1`` classifier-free guided against the ``null`` condition."""
        if guidance == 1.0:
            return self.guided_eps(x, t, cond)
        null = self.encoder.null(cond) if null is None else null
        return self.guided_eps(x, t, cond, [Reference(null, torch.full((x.shape[0],), float(guidance)))])

    def guided_eps(
        self, x: torch.Tensor, t: int | torch.Tensor, cond: torch.Tensor, refs: Sequence[Reference] = ()
    ) -> torch.Tensor:
        """``eps(x | cond) + sum_g (w_g - 1) (eps(x | cond) - eps(x | ref_g))`` in one batched network call.

        With one reference (``cond`` with some groups nulled) this is classifier-free guidance; with one
        reference per intervened group, each with its own scale, it is factored guidance. A row whose
        ``w_g`` is 1 is not guided by that reference."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        n = 1 + len(refs)
        conds = torch.cat([cond] + [r.cond for r in refs])
        out = denoise(self.unet, x.repeat(n, 1, 1, 1), t.repeat(n), conds, self.config.patch_size)
        eps, *others = out.chunk(n)
        guided = eps
        for ref, other in zip(refs, others, strict=True):
            guided = guided + (ref.scale.to(x) - 1.0).view(-1, 1, 1, 1) * (eps - other)
        return guided

    @torch.no_grad()
    def invert(self, x0: torch.Tensor, cond: torch.Tensor, steps: int) -> torch.Tensor:
        """DDIM inversion (guidance 1): images in [-1, 1] (B, 1, H, W) -> their noise x_T."""
        inverse = DDIMInverseScheduler.from_config(self._ddim_config())
        inverse.set_timesteps(steps)
        x = x0
        for t in inverse.timesteps:
            x = inverse.step(self.eps(x, t, cond), t, x).prev_sample
        return x

    @torch.no_grad()
    def sample(
        self,
        xt: torch.Tensor,
        cond: torch.Tensor,
        steps: int,
        guidance: float = 1.0,
        null: torch.Tensor | None = None,
        refs: Sequence[Reference] | None = None,
    ) -> torch.Tensor:
        """DDIM sampling (eta = 0) from noise ``xt`` under ``cond``; returns images in [-1, 1]. Guided by
        ``refs`` if given, else by ``guidance`` against ``null`` (all groups nulled by default)."""
        ddim = DDIMScheduler.from_config(self._ddim_config())
        ddim.set_timesteps(steps)
        x = xt
        for t in ddim.timesteps:
            eps = self.eps(x, t, cond, guidance, null) if refs is None else self.guided_eps(x, t, cond, refs)
            x = ddim.step(eps, t, x, eta=0.0).prev_sample
        return x

    @torch.no_grad()
    def noise_maps(
        self,
        x0: torch.Tensor,
        cond: torch.Tensor,
        steps: int,
        generators: list[torch.Generator],
        skip: int = 0,
    ) -> NoiseMaps:
        """Edit-friendly DDPM abduction of images ``x0`` in [-1, 1] under ``cond`` (the factual condition).

        ``generators`` holds one generator per row: a row's noise does not depend on the other rows. The
        ``skip`` noisiest of the ``steps`` timesteps are left out: a replay starts from the noised image at
        the first remaining timestep, so it keeps more of the image (the edit-friendly paper's T_skip)."""
        timesteps = self._timesteps(steps)[skip:]
        chain = []
        for t in timesteps:
            noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in generators]).to(x0)
            a = self._alpha(t)
            chain.append(a.sqrt() * x0 + (1 - a).sqrt() * noise)
        chain.append(x0)
        corrections, eps = [], []
        for k, t in enumerate(timesteps):
            eps.append(self.eps(chain[k], t, cond))
            corrections.append(chain[k + 1] - self._posterior_mean(chain[k], t, steps, eps[k]))
        return NoiseMaps(steps, timesteps, chain, corrections, eps)

    @torch.no_grad()
    def replay(
        self,
        maps: NoiseMaps,
        cond: torch.Tensor,
        refs: Sequence[Reference] = (),
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The reverse DDPM chain of ``maps`` under ``cond`` (guided by ``refs``), each step plus its abducted
        correction; returns images in [-1, 1]. Under the factual condition it returns the factual image.

        ``mask`` (B, 1, H, W) in [0, 1] confines the edit (RadEdit's keep mask): after every step, the chain
        outside the mask is reset to the factual chain, so there the result is the factual image."""
        x = maps.chain[0]
        for k, t in enumerate(maps.timesteps):
            eps = self.guided_eps(x, t, cond, refs)
            x = self._posterior_mean(x, t, maps.steps, eps) + maps.corrections[k]
            if mask is not None:
                x = mask * x + (1.0 - mask) * maps.chain[k + 1]
        return x

    @torch.no_grad()
    def edit_mask(
        self, maps: NoiseMaps, cond: torch.Tensor, evaluations: int, threshold: float = 0.5
    ) -> torch.Tensor:
        """Where the model changes the image from the factual condition of ``maps`` to ``cond`` (DiffEdit,
        Couairon et al. 2023): ``|eps(x_t | cond) - eps(x_t | factual)|`` on the factual chain at
        ``evaluations`` evenly spaced timesteps, averaged, smoothed, scaled to [0, 1] per image and cut at
        ``threshold``; the binary mask is feathered by one smoothing pass. (B, 1, H, W) in [0, 1]."""
        n = len(maps.timesteps)
        picks = sorted({round(i * (n - 1) / max(1, evaluations - 1)) for i in range(evaluations)})
        diffs = [(self.eps(maps.chain[k], maps.timesteps[k], cond) - maps.eps[k]).abs() for k in picks]
        diff = torch.stack(diffs)
        sigma = max(1.0, maps.chain[0].shape[-1] / 32.0)  # 2 px at 64 px
        diff = _blur(diff.mean(dim=0), sigma)
        lo = diff.amin(dim=(1, 2, 3), keepdim=True)
        hi = diff.amax(dim=(1, 2, 3), keepdim=True)
        binary = ((diff - lo) / (hi - lo).clamp(min=1e-12) >= threshold).to(diff)
        return _blur(binary, sigma).clamp(0.0, 1.0)

    def _timesteps(self, steps: int) -> list[int]:
        ddim = DDIMScheduler.from_config(self._ddim_config())
        ddim.set_timesteps(steps)
        return [int(t) for t in ddim.timesteps]

    def _alpha(self, t: int) -> torch.Tensor:
        """alpha-bar at ``t`` (1 below 0, as DDIM's ``set_alpha_to_one``), float64 for the step algebra."""
        return self.scheduler.alphas_cumprod[t].double() if t >= 0 else torch.tensor(1.0, dtype=torch.float64)

    def _posterior_mean(self, x: torch.Tensor, t: int, steps: int, eps: torch.Tensor) -> torch.Tensor:
        """Mean of the eta = 1 (DDPM) reverse step from ``t`` to the previous timestep of ``steps``."""
        a, prev = self._alpha(t), self._alpha(t - self.config.num_train_timesteps // steps)
        variance = (1 - prev) / (1 - a) * (1 - a / prev)
        x0 = (x - (1 - a).sqrt().float() * eps) / a.sqrt().float()
        return prev.sqrt().float() * x0 + (1 - prev - variance).clamp(min=0).sqrt().float() * eps

    def _ddim_config(self) -> dict[str, Any]:
        # "leading": the first sampling step is below t = T - 1, where the cosine schedule has alpha ~ 0 and
        # x0 = (x - sqrt(1 - a) eps) / sqrt(a) would amplify any error in eps a thousandfold
        return {**self.scheduler.config, "clip_sample": False, "timestep_spacing": "leading"}

    # -- persistence -----------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(directory / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(directory / "scheduler")
        write_record(directory, self.kind, self.config, self.encoder, self.extra)
        honour_umask(directory)

    @classmethod
    def load(cls, directory: str | Path, taxonomy: Taxonomy | None = None) -> DiffusionModel:
        directory = Path(directory)
        meta = read_record(directory, cls.kind)
        encoder = condition_encoder(directory, meta, taxonomy or load_taxonomy())
        config = dataclass_from_dict(ModelConfig, meta["model"], where=str(directory / MODEL_FILE))
        unet = UNet2DConditionModel.from_pretrained(directory / "unet")
        scheduler = DDPMScheduler.from_pretrained(directory / "scheduler")
        return cls(unet.eval(), encoder, scheduler, config, record_extra(meta))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of (B, 1, H, W) with reflected borders."""
    radius = int(math.ceil(3 * sigma))
    kernel = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.device)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def resolve_model(name: str | Path) -> Path:
    """A model directory: a run's ``model/``, a model directory itself, or a shipped model's name."""
    path = Path(name)
    if (path / "model").is_dir():
        return path / "model"
    if path.is_dir():
        return path
    if str(name) in pretrained.NAMES:
        return pretrained.pretrained_path(str(name))
    raise SynthfairError(
        f"no model at {name}",
        f"pass a run directory, a model directory or a shipped model: {pretrained.NAMES}",
    )


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (B, H, W) or (B, 1, H, W) -> [-1, 1] (B, 1, H, W)."""
    if images.ndim == 3:
        images = images[:, None]
    return images * 2.0 - 1.0


def to_image_space(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (B, 1, H, W) -> [0, 1] (B, H, W), clipped."""
    return ((x[:, 0] + 1.0) / 2.0).clamp(0.0, 1.0)
