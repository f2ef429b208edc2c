"""The image mechanism as a hierarchical VAE: a VDVAE-style top-down HVAE with exogenous latents, after
causal-gen (Ribeiro, Xia, Monteiro, Pawlowski and Glocker, "High Fidelity Image Counterfactuals with
Probabilistic Causal Models", ICML 2023); our own implementation of the design in runs/hvae-notes.md.

- Encoder: a 3x3 stem, heavy residual blocks per level, average pooling between levels (the last level is
  1x1); the last activation of each resolution feeds the posteriors.
- Decoder, from 1x1 up: a deterministic state ``h`` (nearest upsampling plus a learned bias per resolution)
  and a separate prior chain. Each block's prior p(z_i | z_<i) reads only the prior chain, never ``h`` or the
  covariates, so the latents are exogenous noise (causal-gen's ``q_correction=False``, no ``cond_prior``).
  With ``cond_prior`` the priors also read the covariates, p(z_i | z_<i, pa) (causal-gen's "latent
  mediator"): the latents then mediate part of the covariates' effect, and a counterfactual moves them too.
  The posterior q(z_i | z_<i, x, pa) reads ``h``, the covariate embedding and the encoder activation. The
  covariates (``ConditionEncoder`` vector -> Linear-SiLU-Linear embedding) enter every block's ``z_proj``,
  so they reach the generative path at every resolution. Blocks above ``z_max_res`` are deterministic
  (z = p_loc).
- Likelihood: a per-pixel discretised Gaussian (bin half-width 1/255 on [-1, 1], edge bins at +-0.999).
- Abduction: the posterior means of every stochastic level. Counterfactual: decode the abducted latents under
  the factual and the counterfactual covariates and carry the pixel noise ``u = (x - rec_loc) / rec_scale``
  across; the null intervention gives back the input exactly (causal-gen ``DSCM``, notes section 3.1).
  With ``cond_prior`` each latent is the location-scale mechanism of its prior, z_i = p_loc_i + p_scale_i e_i:
  its exogenous part ``e_i`` is abducted along the factual chain and kept while the chain is re-run under
  the counterfactual covariates (the total effect; causal-gen mixes posterior and prior instead, notes 3.2).

Size and speed of the default config (64x64, 6 levels, 9 stochastic layers): 1.25 M parameters. One
training step (``elbo`` forward and backward, batch 32 of 64x64) measured once on 2 CPU cores shared with a
niced background job (~1.6 cores busy): 1.8 s with 2 torch threads, 1.2 s with 1 thread; on 2 free cores an
estimated ~1 s (not measured). Most of it is the backward pass of the small-channel convolutions at 32x32 and
64x64: the lighter widths (16, 32, 64, 96, 128, 192) saved only ~10%, so the defaults keep the notes' widths.

A model directory holds ``hvae/model.safetensors`` (the state dict) and ``synthfair_model.json`` (kind
"hvae", the model config, the conditioning covariates and taxonomy hash, the package version).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import honour_umask
from synthfair.model.conditioning import ConditionEncoder
from synthfair.model.registry import MODEL_FILE, condition_encoder, read_record, record_extra, write_record
from synthfair.taxonomy import Taxonomy, load_taxonomy

WEIGHTS = Path("hvae") / "model.safetensors"
MAX_WEIGHTS_BYTES = 512 << 20  # a model directory may come from anyone: bound what we read
MIN_LOGSCALE = -9.0  # pixel log-scale floor
BIN = 1.0 / 255.0  # half-width of a pixel's bin on [-1, 1]
EDGE = 0.999  # pixels beyond +-EDGE take the whole tail of the Gaussian


@dataclass(frozen=True)
class HVAEConfig:
    sample_size: int = 64  # image side in pixels
    # channels per level; level i has resolution sample_size / 2**i, the last level is 1x1
    widths: tuple[int, ...] = (24, 48, 64, 128, 160, 256)
    encoder_blocks: tuple[int, ...] = (1, 2, 2, 2, 2, 1)  # residual blocks per level (bottom-up)
    decoder_blocks: tuple[int, ...] = (1, 2, 2, 2, 2, 1)  # per level, same order as widths
    z_dim: int = 8  # latent channels of each stochastic block
    z_max_res: int = 32  # decoder blocks at resolutions above this are deterministic (no z, no KL)
    bottleneck: int = 4  # residual block inner width = in_width // bottleneck
    cond_embed: int = 32  # the covariate vector goes through Linear-SiLU-Linear to this many channels
    beta: float = 3.0  # KL weight of the ELBO
    # the priors read the covariates too: the latents mediate, and counterfactuals move them (total effect).
    # Its weights start at zero, so a fine-tuning run may turn it on for a model trained without it
    cond_prior: bool = False
    covariates: tuple[str, ...] = ()  # conditioning covariates; () = every covariate of the taxonomy

    def __post_init__(self) -> None:
        levels = len(self.widths)
        if levels < 2:
            raise ConfigError(
                f"hvae.widths {self.widths} has {levels} level(s)",
                "give at least two levels (the last is 1x1)",
            )
        for name in ("encoder_blocks", "decoder_blocks"):
            blocks = getattr(self, name)
            if len(blocks) != levels:
                raise ConfigError(
                    f"hvae.{name} {blocks} has {len(blocks)} entries, hvae.widths {self.widths} {levels}",
                    f"give one block count per level in {name}",
                )
            if any(n < 1 for n in blocks):
                raise ConfigError(f"hvae.{name} {blocks} has a level without blocks", "use counts >= 1")
        for name in ("z_dim", "cond_embed", "bottleneck"):
            if getattr(self, name) < 1:
                raise ConfigError(f"hvae.{name} {getattr(self, name)} is below 1", f"use a {name} >= 1")
        if any(w < 1 or w % self.bottleneck for w in self.widths):
            raise ConfigError(
                f"hvae.widths {self.widths} are not positive multiples of hvae.bottleneck {self.bottleneck}",
                "pick widths divisible by the bottleneck",
            )
        step = 2 ** (levels - 2)
        if self.sample_size < 2 * step or self.sample_size % step:
            raise ConfigError(
                f"hvae.sample_size {self.sample_size} is not a multiple of 2**{levels - 2} = {step} "
                f"of at least {2 * step} ({levels} levels)",
                "use a size divisible by 2 to the number of levels minus 2, or fewer levels",
            )
        if self.z_max_res not in self.resolutions:
            raise ConfigError(
                f"hvae.z_max_res {self.z_max_res} is not one of the resolutions {self.resolutions}",
                "pick z_max_res among the level resolutions",
            )
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ConfigError(f"hvae.beta {self.beta} is not a non-negative number", "use a KL weight >= 0")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Resolution of each level: sample_size / 2**i, and 1 for the last."""
        return tuple(self.sample_size // 2**i for i in range(len(self.widths) - 1)) + (1,)


# -- building blocks ---------------------------------------------------------------------------------------


class Block(nn.Module):
    """Heavy bottleneck block: GELU-1x1-GELU-kxk-GELU-kxk-GELU-1x1 (k = 3, or 1 at resolutions <= 2), plus the
    input (projected by a 1x1 conv when the width changes) if ``residual``."""

    def __init__(self, in_width: int, mid_width: int, out_width: int, res: int, residual: bool = True):
        super().__init__()
        k = 3 if res > 2 else 1
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(in_width, mid_width, 1),
                nn.Conv2d(mid_width, mid_width, k, padding=k // 2),
                nn.Conv2d(mid_width, mid_width, k, padding=k // 2),
                nn.Conv2d(mid_width, out_width, 1),
            ]
        )
        self.residual = residual
        self.skip = nn.Conv2d(in_width, out_width, 1) if residual and in_width != out_width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.convs:
            y = conv(F.gelu(y))
        if not self.residual:
            return y
        return (x if self.skip is None else self.skip(x)) + y


class Encoder(nn.Module):
    """Bottom-up path: image (B, 1, S, S) -> {resolution: last activation (B, widths[i], r, r)}."""

    def __init__(self, config: HVAEConfig):
        super().__init__()
        self.resolutions = config.resolutions
        self.stem = nn.Conv2d(1, config.widths[0], 3, padding=1)
        scale = math.sqrt(1.0 / sum(config.encoder_blocks))
        self.levels = nn.ModuleList()
        levels = zip(self.resolutions, config.widths, config.encoder_blocks, strict=True)
        for i, (res, width, count) in enumerate(levels):
            blocks = []
            for j in range(count):
                in_width = config.widths[i - 1] if i > 0 and j == 0 else width
                blocks.append(_scaled(Block(in_width, in_width // config.bottleneck, width, res), scale))
            self.levels.append(nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        h = self.stem(x)
        acts = {}
        for res, level in zip(self.resolutions, self.levels, strict=True):
            if h.shape[-1] != res:
                h = F.avg_pool2d(h, h.shape[-1] // res)  # by 2, or over the whole map to 1x1
            h = level(h)
            acts[res] = h
        return acts


class DecoderBlock(nn.Module):
    """One top-down block: prior (from the prior chain), posterior (stochastic blocks only), state update."""

    def __init__(self, config: HVAEConfig, res: int, width: int, out_width: int, scale: float, chain: bool):
        super().__init__()
        z, e, mid = config.z_dim, config.cond_embed, width // config.bottleneck
        self.res, self.width, self.z_dim = res, width, z
        self.stochastic = res <= config.z_max_res
        self.prior = Block(width, mid, 2 * z + width, res, residual=False)
        nn.init.zeros_(self.prior.convs[-1].weight)  # the prior starts as N(0, 1) with no features
        # cond_prior: the covariates added to the prior's input; zero at first, so the prior starts as without
        self.prior_cond = nn.Conv2d(e, width, 1) if config.cond_prior else None
        if self.prior_cond is not None:
            nn.init.zeros_(self.prior_cond.weight)
        self.posterior = Block(2 * width + e, mid, 2 * z, res, residual=False) if self.stochastic else None
        self.z_proj = nn.Conv2d(z + e, width, 1)
        with torch.no_grad():
            self.z_proj.weight.mul_(scale)
        self.block = _scaled(Block(width, mid, out_width, res), scale)
        # the next block's prior input; the top-most block has no next block
        self.z_feat_proj = nn.Conv2d(z + width, out_width, 1) if chain else None

    def prior_params(self, chain: torch.Tensor, pa: torch.Tensor) -> list[torch.Tensor]:
        """[p_loc (B, z, r, r), p_logscale (B, z, r, r), p_feat (B, width, r, r)]; ``pa`` (B, E, r, r) is
        read only with ``cond_prior``."""
        if self.prior_cond is not None:
            chain = chain + self.prior_cond(pa)
        return list(self.prior(chain).split([self.z_dim, self.z_dim, self.width], dim=1))

    def posterior_params(self, h: torch.Tensor, pa: torch.Tensor, act: torch.Tensor) -> list[torch.Tensor]:
        """[q_loc, q_logscale], each (B, z, r, r)."""
        return list(self.posterior(torch.cat([h, pa, act], dim=1)).chunk(2, dim=1))

    def update(
        self, h: torch.Tensor, z: torch.Tensor, p_feat: torch.Tensor, pa: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next state ``h`` and the next prior-chain input (which sees z, and the covariates only through
        ``p_feat`` with ``cond_prior``)."""
        h = h + p_feat
        h = h + self.z_proj(torch.cat([z, pa], dim=1))
        h = self.block(h)
        chain = None if self.z_feat_proj is None else self.z_feat_proj(torch.cat([z, p_feat], dim=1))
        return h, chain


def _scaled(block: Block, scale: float) -> Block:
    with torch.no_grad():
        block.convs[-1].weight.mul_(scale)
    return block


# -- the model ---------------------------------------------------------------------------------------------

# picks z at a stochastic block: (index, block, h, pa at r, p_loc, p_logscale) -> z
Choose = Callable[[int, DecoderBlock, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class HVAE(nn.Module):
    """Hierarchical VAE of images (B, 1, S, S) in [-1, 1] given condition vectors (B, cond_dim)."""

    def __init__(self, config: HVAEConfig, cond_dim: int):
        super().__init__()
        self.config, self.cond_dim = config, cond_dim
        widths, res, e = config.widths, config.resolutions, config.cond_embed
        self.embed = nn.Sequential(nn.Linear(cond_dim, e), nn.SiLU(), nn.Linear(e, e))
        self.encoder = Encoder(config)
        self.bias = nn.ParameterDict(
            {str(r): nn.Parameter(torch.zeros(1, w, r, r)) for r, w in zip(res, widths, strict=True)}
        )
        scale = math.sqrt(1.0 / sum(config.decoder_blocks))
        blocks = []
        for i in reversed(range(len(widths))):  # from 1x1 up
            for j in range(config.decoder_blocks[i]):
                last = j == config.decoder_blocks[i] - 1
                out_width = widths[i - 1] if last and i > 0 else widths[i]
                blocks.append(
                    DecoderBlock(config, res[i], widths[i], out_width, scale, not (last and i == 0))
                )
        self.decoder = nn.ModuleList(blocks)
        self.x_loc = nn.Conv2d(widths[0], 1, 1)
        self.x_logscale = nn.Conv2d(widths[0], 1, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.zeros_(module.bias)

    @property
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """(z_dim, r, r) of each stochastic level, top (1x1) first: the shapes ``abduct`` returns."""
        return [(b.z_dim, b.res, b.res) for b in self.decoder if b.stochastic]

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        generator: torch.Generator | None = None,
        cond_cf: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`elbo`; with ``cond_cf`` also ``"counterfactual"``, `counterfactual(x, cond, cond_cf)` with its
        gradients (counterfactual fine-tuning). What training calls, through the process group's wrapper
        (which syncs the gradients)."""
        out = self.elbo(x, cond, generator)
        if cond_cf is not None:
            out["counterfactual"] = self.counterfactual(x, cond, cond_cf)
        return out

    def elbo(
        self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``nll`` (nats per pixel, (B,)), ``kl`` (all latents, per pixel, (B,)) and ``loss`` = mean of
        nll + beta kl. The posterior samples draw from ``generator`` (``torch.randn_like`` if None)."""
        self._check(x, cond)
        acts, kls = self.encoder(x), []

        def posterior_sample(k, block, h, pa, p_loc, p_logscale):
            q_loc, q_logscale = block.posterior_params(h, pa, acts[block.res])
            kls.append(gaussian_kl(q_loc, q_logscale, p_loc, p_logscale).sum(dim=(1, 2, 3)))
            return q_loc + q_logscale.exp() * _noise(q_loc, generator)

        loc, logscale = self._likelihood(self._top_down(self.embed(cond), posterior_sample))
        nll = -discretized_gaussian_log_likelihood(x, loc, logscale).mean(dim=(1, 2, 3))
        kl = torch.stack(kls).sum(dim=0) / x[0].numel()
        return {"nll": nll, "kl": kl, "loss": (nll + self.config.beta * kl).mean()}

    def abduct(self, x: torch.Tensor, cond: torch.Tensor) -> list[torch.Tensor]:
        """The posterior means of every stochastic level, top first: [(B, z_dim, r, r), ...]."""
        return self._abduct(x, cond)[0]

    def _abduct(
        self, x: torch.Tensor, cond: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """(the posterior means, each level's prior (loc, logscale) along them, the decoder's final state
        with them: what ``decode(zs, cond)`` computes)."""
        self._check(x, cond)
        acts, zs, priors = self.encoder(x), [], []

        def posterior_mean(k, block, h, pa, p_loc, p_logscale):
            zs.append(block.posterior_params(h, pa, acts[block.res])[0])
            priors.append((p_loc, p_logscale))
            return zs[-1]

        return zs, priors, self._top_down(self.embed(cond), posterior_mean)

    def decode(self, zs: list[torch.Tensor], cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The likelihood's (loc, logscale), each (B, 1, S, S), given every stochastic level's latent."""
        shapes = [tuple(z.shape[1:]) for z in zs]
        if shapes != self.latent_shapes or any(z.shape[0] != cond.shape[0] for z in zs):
            raise SynthfairError(
                f"decode got latents of shapes {shapes} for {cond.shape[0]} condition rows, the model's "
                f"levels are {self.latent_shapes}",
                "pass the full list abduct() returns, one batch row per condition row",
            )
        return self._likelihood(self._top_down(self.embed(cond), lambda k, *_: zs[k]))

    def counterfactual(self, x: torch.Tensor, cond_f: torch.Tensor, cond_cf: torch.Tensor) -> torch.Tensor:
        """``x`` under ``cond_cf`` instead of its factual ``cond_f``, keeping the abducted latents (with
        ``cond_prior``: their exogenous parts) and pixel noise; ``cond_cf`` equal to ``cond_f`` returns ``x``
        exactly. Three passes: the encoder, the decoder under ``cond_f`` (abduction; it also gives the
        reconstruction) and under ``cond_cf``."""
        zs, priors, h = self._abduct(x, cond_f)
        rec_loc, rec_logscale = self._likelihood(h)
        if self.config.cond_prior:
            cf_loc, cf_logscale = self._likelihood(self._mediated(zs, priors, cond_cf))
        else:
            cf_loc, cf_logscale = self.decode(zs, cond_cf)
        rec_scale, cf_scale = rec_logscale.exp(), cf_logscale.exp()
        u = (x - rec_loc) / rec_scale  # the image's own noise under the factual model
        # x + differences (not cf_loc + cf_scale u): the differences are exactly 0 under the null intervention
        return (x + (cf_loc - rec_loc) + (cf_scale - rec_scale) * u).clamp(-1.0, 1.0)

    def _mediated(
        self, zs: list[torch.Tensor], priors: list[tuple[torch.Tensor, torch.Tensor]], cond_cf: torch.Tensor
    ) -> torch.Tensor:
        """The decoder's final state under ``cond_cf`` with every latent z_i = loc_i + scale_i e_i re-derived
        from its factual exogenous part e_i = (z_i - loc_i) / scale_i under the counterfactual prior (loc_i*,
        scale_i*), which reads the counterfactual latents above it. Written as z_i + differences, which are
        exactly 0 under the null intervention."""

        def moved(k, block, h, pa, p_loc, p_logscale):
            loc, logscale = priors[k]
            scale = logscale.exp()
            return zs[k] + (p_loc - loc) + (p_logscale.exp() - scale) * ((zs[k] - loc) / scale)

        return self._top_down(self.embed(cond_cf), moved)

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, generator: torch.Generator, temperature: float = 1.0
    ) -> torch.Tensor:
        """New images (B, 1, S, S): every latent from the prior (scale times ``temperature``), then the
        likelihood's loc."""

        def prior_sample(k, block, h, pa, p_loc, p_logscale):
            return p_loc + temperature * p_logscale.exp() * _noise(p_loc, generator)

        return self._likelihood(self._top_down(self.embed(cond), prior_sample))[0]

    def _top_down(self, pa: torch.Tensor, choose: Choose) -> torch.Tensor:
        """The decoder's final state (B, widths[0], S, S) for embedded covariates ``pa`` (B, cond_embed); the
        stochastic blocks take their z from ``choose``."""
        h = chain = self.bias["1"].expand(pa.shape[0], -1, -1, -1)
        k = 0
        for block in self.decoder:
            r = block.res
            if h.shape[-1] != r:
                h = F.interpolate(h, size=(r, r), mode="nearest") + self.bias[str(r)]
                chain = F.interpolate(chain, size=(r, r), mode="nearest") + self.bias[str(r)]
            pa_r = pa[:, :, None, None].expand(-1, -1, r, r)  # (B, E, r, r)
            p_loc, p_logscale, p_feat = block.prior_params(chain, pa_r)
            if block.stochastic:
                z = choose(k, block, h, pa_r, p_loc, p_logscale)
                k += 1
            else:
                z = p_loc
            h, chain = block.update(h, z, p_feat, pa_r)
        return h

    def _likelihood(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.x_loc(h)), self.x_logscale(h).clamp(min=MIN_LOGSCALE)

    def _check(self, x: torch.Tensor, cond: torch.Tensor) -> None:
        s = self.config.sample_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, s, s) or tuple(cond.shape) != (x.shape[0], self.cond_dim):
            raise SynthfairError(
                f"HVAE got images {tuple(x.shape)} and conditions {tuple(cond.shape)}",
                f"pass images (B, 1, {s}, {s}) in [-1, 1] and conditions (B, {self.cond_dim})",
            )


def gaussian_kl(
    q_loc: torch.Tensor, q_logscale: torch.Tensor, p_loc: torch.Tensor, p_logscale: torch.Tensor
) -> torch.Tensor:
    """Elementwise KL(N(q_loc, q_scale^2) || N(p_loc, p_scale^2))."""
    var_ratio_term = ((2 * q_logscale).exp() + (q_loc - p_loc) ** 2) * (-2 * p_logscale).exp()
    return p_logscale - q_logscale + 0.5 * var_ratio_term - 0.5


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, loc: torch.Tensor, logscale: torch.Tensor
) -> torch.Tensor:
    """Per-pixel log-probability of ``x`` in [-1, 1] in its bin [x - 1/255, x + 1/255] under N(loc, scale^2);
    the edge pixels take the whole tail. The normal CDF is the tanh approximation (as in causal-gen)."""
    centered, inv_scale = x - loc, torch.exp(-logscale)
    cdf_plus = _normal_cdf(inv_scale * (centered + BIN))
    cdf_min = _normal_cdf(inv_scale * (centered - BIN))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_survival = (1.0 - cdf_min).clamp(min=1e-12).log()
    log_bin = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(x < -EDGE, log_cdf_plus, torch.where(x > EDGE, log_survival, log_bin))


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn_like(like)
    # drawn where the generator lives (the CPU in training), then moved: the same numbers on every device
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=generator.device)
    return noise.to(like.device)


def _build(config: HVAEConfig, cond_dim: int, seed: int) -> HVAE:
    with torch.random.fork_rng(devices=[]):  # nn initialisers draw from the global generator: isolate it
        torch.manual_seed(seed)
        return HVAE(config, cond_dim)


# -- the model with its conditioning, on disk ----------------------------------------------------------------


@dataclass
class HVAEModel:
    """A trained (or fresh) HVAE with its conditioning encoder."""

    net: HVAE
    encoder: ConditionEncoder
    config: HVAEConfig
    extra: dict[str, Any] = field(default_factory=dict)  # provenance written beside the weights
    kind: ClassVar[str] = "hvae"

    @property
    def network(self) -> nn.Module:
        """The trained network (what moves between devices and is set to eval mode)."""
        return self.net

    @classmethod
    def create(cls, config: HVAEConfig, taxonomy: Taxonomy | None = None, seed: int = 0) -> HVAEModel:
        taxonomy = taxonomy or load_taxonomy()
        encoder = ConditionEncoder(taxonomy, config.covariates or None)
        return cls(_build(config, encoder.dim, seed), encoder, config)

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        (directory / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(directory / WEIGHTS))
        write_record(directory, self.kind, self.config, self.encoder, self.extra)
        honour_umask(directory)

    @classmethod
    def load(cls, directory: str | Path, taxonomy: Taxonomy | None = None) -> HVAEModel:
        """The model in ``directory``, which may come from anyone: JSON and safetensors only, sizes bounded,
        every tensor checked against the config's architecture. The net is in eval mode."""
        directory = Path(directory)
        meta = read_record(directory, cls.kind)
        encoder = condition_encoder(directory, meta, taxonomy or load_taxonomy())
        config = dataclass_from_dict(HVAEConfig, meta["model"], where=str(directory / MODEL_FILE))
        state = _read_weights(directory / WEIGHTS)
        with torch.device("meta"):  # the architecture's shapes, allocating nothing
            expected = HVAE(config, encoder.dim).state_dict()
        _check_state(directory / WEIGHTS, state, expected)
        net = _build(config, encoder.dim, seed=0)
        net.load_state_dict(state)
        return cls(net.eval(), encoder, config, record_extra(meta))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    hint = "pass a model directory written by HVAEModel.save"
    if not path.is_file():
        raise SynthfairError(f"{path}: no weights file", hint)
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise SynthfairError(
            f"{path} is {size} bytes, more than an HVAE's weights ({MAX_WEIGHTS_BYTES})", hint
        )
    try:
        return {k: v.clone() for k, v in load_file(str(path)).items()}  # clone: no mapping of the file kept
    except (SafetensorError, OSError, ValueError) as err:
        raise SynthfairError(f"{path}: not a readable safetensors file ({err})", hint) from None


def _check_state(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    hint = "the weights do not fit the model config beside them: pass an intact model directory"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        count = f" ({len(missing)} missing, {len(unexpected)} unexpected)"
        raise SynthfairError(f"{path}: {what}{count}", hint)
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise SynthfairError(
                f"{path}: tensor {key!r} has shape {tuple(got.shape)} ({got.dtype}), the config needs "
                f"{tuple(want.shape)} ({want.dtype})",
                hint,
            )
