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
counterfactual covariates with the same corrections (``sample_with_noise_maps``). Reconstruction is exact by
construction, and the noise maps hold less of the image's structure than a DDIM ``x_T`` does, so the
counterfactual condition moves the image further (measured in docs/benchmarks.md).
A model directory holds ``unet/`` (diffusers ``save_pretrained``, safetensors), ``scheduler/`` and
``synthfair_model.json`` (model config, conditioning covariates, taxonomy hash, package version).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

import synthfair
from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError
from synthfair.fileio import write_json
from synthfair.model.conditioning import ConditionEncoder
from synthfair.taxonomy import Taxonomy, load_taxonomy

MODEL_FILE = "synthfair_model.json"
TIME_SCALE_SHIFTS = ("default", "scale_shift")


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

    def __post_init__(self) -> None:
        if self.sample_size % 2 ** (len(self.block_out_channels) - 1):
            raise ConfigError(
                f"model.sample_size {self.sample_size} is not divisible by "
                f"2**{len(self.block_out_channels) - 1}",
                "use a size divisible by 2 to the number of downsampling levels",
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
        sample_size=config.sample_size,
        in_channels=1,
        out_channels=1,
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


def build_scheduler(config: ModelConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="epsilon",
        clip_sample=False,
    )


@dataclass
class DiffusionModel:
    """A trained (or fresh) denoiser with its conditioning encoder and noise schedule."""

    unet: UNet2DConditionModel
    encoder: ConditionEncoder
    scheduler: DDPMScheduler
    config: ModelConfig
    extra: dict[str, Any] = field(default_factory=dict)  # provenance written beside the weights

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
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        if guidance == 1.0:
            return self.unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
        null = self.encoder.null(cond) if null is None else null
        both = self.unet(
            torch.cat([x, x]),
            torch.cat([t, t]),
            encoder_hidden_states=None,
            class_labels=torch.cat([cond, null]),
        ).sample
        eps_cond, eps_null = both.chunk(2)
        return eps_null + guidance * (eps_cond - eps_null)

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
    ) -> torch.Tensor:
        """DDIM sampling (eta = 0) from noise ``xt`` under ``cond``; returns images in [-1, 1]."""
        ddim = DDIMScheduler.from_config(self._ddim_config())
        ddim.set_timesteps(steps)
        x = xt
        for t in ddim.timesteps:
            x = ddim.step(self.eps(x, t, cond, guidance, null), t, x, eta=0.0).prev_sample
        return x

    @torch.no_grad()
    def noise_maps(
        self, x0: torch.Tensor, cond: torch.Tensor, steps: int, generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Edit-friendly DDPM abduction of images ``x0`` in [-1, 1]: (x_T, one correction per step).

        ``generators`` holds one generator per row: a row's noise does not depend on the other rows.
        """
        timesteps = self._timesteps(steps)
        noised = []
        for t in timesteps:
            noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in generators]).to(x0)
            a = self._alpha(t)
            noised.append(a.sqrt() * x0 + (1 - a).sqrt() * noise)
        corrections = []
        for k, t in enumerate(timesteps):
            target = noised[k + 1] if k + 1 < len(timesteps) else x0
            corrections.append(
                target - self._posterior_mean(noised[k], t, steps, self.eps(noised[k], t, cond))
            )
        return noised[0], corrections

    @torch.no_grad()
    def sample_with_noise_maps(
        self,
        xt: torch.Tensor,
        cond: torch.Tensor,
        corrections: list[torch.Tensor],
        guidance: float = 1.0,
        null: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The reverse DDPM chain from ``xt`` under ``cond``, each step plus its abducted correction."""
        x = xt
        steps = len(corrections)
        for t, correction in zip(self._timesteps(steps), corrections, strict=True):
            x = self._posterior_mean(x, t, steps, self.eps(x, t, cond, guidance, null)) + correction
        return x

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
        meta = {
            "schema": "synthfair.model/1",
            "model": _jsonable(asdict(self.config)),
            "conditioning": self.encoder.state(),
            "synthfair_version": synthfair.__version__,
            **self.extra,
        }
        write_json(directory / MODEL_FILE, meta)

    @classmethod
    def load(cls, directory: str | Path, taxonomy: Taxonomy | None = None) -> DiffusionModel:
        directory = Path(directory)
        meta_path = directory / MODEL_FILE
        if not meta_path.is_file():
            raise ConfigError(
                f"{directory} is not a synthfair model directory (no {MODEL_FILE})",
                "pass a run's model/ directory (written by `synthfair train`) or a checkpoint directory",
            )
        meta = json.loads(meta_path.read_text())
        taxonomy = taxonomy or load_taxonomy()
        trained = meta["conditioning"]["model_sha256"]
        if trained != taxonomy.model_sha256:
            raise ConfigError(
                f"{directory} was trained with taxonomy covariates {trained[:12]}..., "
                f"this taxonomy's are {taxonomy.model_sha256[:12]}...",
                "load it with the taxonomy.yaml it was trained with (covariates and domains must match)",
            )
        config = dataclass_from_dict(ModelConfig, meta["model"], where=str(meta_path))
        encoder = ConditionEncoder(taxonomy, meta["conditioning"]["covariates"])
        unet = UNet2DConditionModel.from_pretrained(directory / "unet")
        scheduler = DDPMScheduler.from_pretrained(directory / "scheduler")
        extra = {
            k: v for k, v in meta.items() if k not in ("schema", "model", "conditioning", "synthfair_version")
        }
        return cls(unet.eval(), encoder, scheduler, config, extra)


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (B, H, W) or (B, 1, H, W) -> [-1, 1] (B, 1, H, W)."""
    if images.ndim == 3:
        images = images[:, None]
    return images * 2.0 - 1.0


def to_image_space(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (B, 1, H, W) -> [0, 1] (B, H, W), clipped."""
    return ((x[:, 0] + 1.0) / 2.0).clamp(0.0, 1.0)


def _jsonable(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _jsonable(v) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return [_jsonable(v) for v in data]
    return data
