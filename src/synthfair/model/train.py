"""Train the image mechanism with accelerate: the same code on 2 CPU cores and on many GPUs and nodes.

    runs/NAME/config.yaml                 the resolved configuration
    runs/NAME/train.json                  taxonomy hash, package versions, data cache, seed; world size
    runs/NAME/checkpoints/checkpoint-<step>/   accelerate state (model, optimizer, LR schedule, RNG) + ema/
                                          (safetensors + JSON; no pickle of ours, none loaded unsafely)
    runs/NAME/model/                      the final EMA weights as a `DiffusionModel` directory, and
                                          model/scm/: the attribute SCM fitted on the training covariates
    runs/NAME/loss.csv, loss.png          the loss curve

One step of the diffusion model (DDPM, epsilon prediction), as in diffusers' training examples:

1. draw the batch of this step: `batch_indices(step, ...)`, a pure function of (seed, step, rank);
2. from a generator seeded by (seed, step, rank): noise, timesteps, and the condition groups to drop
   (probability ``cond_dropout`` each, for classifier-free guidance);
3. ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) noise``; loss = MSE(unet(x_t, t, cond), noise);
4. backward, clip, optimizer and LR step; EMA update.

With an ``hvae:`` section the image model is a hierarchical VAE (`synthfair.model.hvae`) instead, and the loss
of step 3 is its negative ELBO (nats per pixel) on the batch, its latents sampled from the step's generator;
``grad_skip`` drops updates whose gradient norm explodes, as HVAE training needs. Its counterfactual
fine-tuning (``tuning:``) scores the model's actual counterfactuals of the batch (abduction and two decoder
passes, differentiated through), added to the ELBO with ``tuning.weight``; with ``tuning.elbo_target`` a
damped Lagrange multiplier holds the ELBO at that target instead (or, with ``tuning.elbo_margin``, at the
starting model's own ELBO plus the margin, measured on the run's first batches); multiplier and target are
in every checkpoint.

Because nothing depends on global RNG state or on the order ranks run in, resuming from a checkpoint
continues the exact trajectory of an uninterrupted run (tested). On CUDA, ``mixed_precision="auto"`` trains
in bf16; under ``accelerate launch`` each process draws its own part of the global batch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import pickle  # only for the error type of a refused (never executed) pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from accelerate import Accelerator
from diffusers import UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr

import synthfair
from synthfair.causal.scm import AttributeSCM
from synthfair.config import config_to_dict, dataclass_from_dict, load_config
from synthfair.environment import package_version
from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import atomic_write, write_json
from synthfair.model import finetune
from synthfair.model.data import CacheDataset, batch_indices, oversample_rules, oversampled
from synthfair.model.diffusion import DiffusionModel, ModelConfig, denoise, resolve_model, to_model_space
from synthfair.model.finetune import TuningConfig
from synthfair.model.hvae import HVAEConfig, HVAEModel
from synthfair.model.registry import ENGINE_FILE, load_model
from synthfair.subjects import save_subjects, subject_digests
from synthfair.taxonomy import Taxonomy, load_taxonomy

CHECKPOINT_PREFIX = "checkpoint-"
SCM_DIR = "scm"  # inside model/: read by synthfair.counterfactual
GUIDANCE_DIR = "guidance"  # inside model/: the classifiers that trained it (checked by synthfair.evaluate)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # per process; the global batch is batch_size x processes
    learning_rate: float = 2e-4
    lr_schedule: str = "cosine"  # diffusers.optimization names: constant, linear, cosine, ...
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # short CPU runs: 0.999; long GPU runs: 0.9999
    cond_dropout: float = 0.15  # per covariate group, for classifier-free guidance
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    mixed_precision: str = "auto"  # "auto": bf16 on CUDA, none on CPU; or "no", "fp16", "bf16"
    split: str = "train"
    in_memory: bool = True  # hold the decoded training images in memory (small caches)
    seed: int = 0
    # draw images with these values this many times as often, e.g. {findings.cardiomegaly: 3}: rare findings
    # teach their conditioning from few images (`synthfair.model.data.oversampled`)
    oversample: dict[str, int] = field(default_factory=dict)
    init_from: str | None = None  # start from this model directory's weights (same model config): fine-tuning
    tuning: TuningConfig = field(default_factory=TuningConfig)  # counterfactual fine-tuning (finetune.py)
    # the engine settings this recipe is tuned for (keys of synthfair.counterfactual.EngineConfig), written
    # beside the model as engine.json: what `synthfair generate` and `counterfactual` use by default
    engine: dict[str, Any] = field(default_factory=dict)
    # the image model: the diffusion model of `model:` (default) or, with this section, a hierarchical VAE
    # (synthfair.model.hvae; `model:` is then not used)
    hvae: HVAEConfig | None = None
    grad_skip: float = 0.0  # skip an update whose gradient norm exceeds this (0: never); HVAEs: e.g. 500
    # diffusion: loss weighting by noise level. Counted on the clean image, the plain denoising loss weighs
    # each step's error by its SNR, so the noisiest steps, where only the covariates say what the image holds,
    # hardly count. Min-SNR-gamma (Hang et al., ICCV 2023) caps that weight at snr_gamma (the nearly clean
    # steps weigh less; 5 is the paper's value); snr_floor raises it to at least snr_floor (Salimans and Ho's
    # truncated SNR weighting, ICLR 2022, at 1: the noisiest steps count as much as the middle ones). On
    # the noise error: clamp(SNR, snr_floor, snr_gamma) / SNR, at most snr_weight_cap (a noise-predicting
    # network cannot be asked for the clean image as SNR -> 0). snr_gamma, snr_floor 0: off.
    snr_gamma: float = 0.0
    snr_floor: float = 0.0
    snr_weight_cap: float = 20.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError(
                f"steps, batch_size and checkpoint_every must be >= 1, got {self.steps}, {self.batch_size}, "
                f"{self.checkpoint_every}",
                "fix the training config",
            )
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ConfigError(f"cond_dropout {self.cond_dropout} is not in [0, 1)", "use e.g. 0.15")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(
                f"mixed_precision {self.mixed_precision!r} is not auto, no, fp16 or bf16", "use auto"
            )
        if self.grad_skip < 0:
            raise ConfigError(f"grad_skip {self.grad_skip} is negative", "use 0 (never skip) or e.g. 500")
        for name, example in (("snr_gamma", 5), ("snr_floor", 1)):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} {value} is not a number >= 0", f"use 0 (off) or e.g. {example}")
            if self.hvae is not None and value:
                raise ConfigError(
                    f"{name} {value} weighs a diffusion model's noise levels; an HVAE has none",
                    f"remove {name} from this hvae: run",
                )
        if self.snr_gamma and self.snr_floor > self.snr_gamma:
            raise ConfigError(
                f"snr_floor {self.snr_floor} is above snr_gamma {self.snr_gamma}: no weight is both",
                "use a floor below the cap, e.g. snr_floor 1 and snr_gamma 5",
            )
        if not self.snr_weight_cap >= 1:  # NaN fails too
            raise ConfigError(f"snr_weight_cap {self.snr_weight_cap} is below 1", "use e.g. 20")
        if self.hvae is None and self.tuning.constrained:
            raise ConfigError(
                "tuning.elbo_target (or elbo_margin) constrains an HVAE's ELBO; a diffusion model has none",
                "remove it (the denoising loss keeps weight 1), or train an hvae: section",
            )
        if self.tuning.elbo_margin is not None and self.init_from is None:
            raise ConfigError(
                f"tuning.elbo_margin {self.tuning.elbo_margin} is a margin over the starting model's ELBO, "
                "and this run starts from scratch",
                "fine-tune a trained model (init_from: runs/NAME), or give elbo_target",
            )
        if self.hvae is not None and self.model != ModelConfig():
            raise ConfigError(
                "the training config has both a model: section (a diffusion model) and an hvae: section",
                "keep the section of the image model this run trains",
            )

    @property
    def image_model(self) -> ModelConfig | HVAEConfig:
        """The configuration of the image model this run trains."""
        return self.model if self.hvae is None else self.hvae


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    resumed_from: int  # 0 when the run started fresh
    final_loss: float
    images_per_second: float
    skipped_updates: int = 0  # this run's steps whose update `grad_skip` dropped
    multiplier: float | None = None  # the ELBO constraint's final Lagrange multiplier (tuning.elbo_target)
    elbo_target: float | None = None  # and its target (nats per pixel; measured with tuning.elbo_margin)


def load_train_config(path: str | Path) -> TrainConfig:
    return load_config(TrainConfig, path)


def train(
    config: TrainConfig,
    data: str | Path,
    out: str | Path,
    resume: str | None = None,
    taxonomy: Taxonomy | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
    stop_at: int | None = None,
    export: bool = False,
) -> TrainResult:
    """Train on the cache ``data`` into ``out``; ``resume`` is None, "latest" or a checkpoint directory.

    ``on_step(step, loss, images_per_second)`` is called on the main process after every step.
    ``stop_at`` ends this run early at that step with a checkpoint (e.g. before a job's time limit); a later
    ``resume="latest"`` continues the same trajectory to ``config.steps``. With ``export`` the run's model
    (EMA weights, SCM, engine settings, subject record) is written at ``stop_at`` too: the first steps of
    the schedule as a model of their own (recorded as ``exported_at_step``)."""
    out = Path(out)
    taxonomy = taxonomy or load_taxonomy()
    _engine_settings(config)  # refuse bad engine settings before any work
    oversample_rules(config.oversample, taxonomy)  # and a typo in oversample:
    init_source = _init_source(config)  # and a model to start from that is not there
    accelerator = Accelerator(mixed_precision=_precision(config), cpu=not torch.cuda.is_available())
    dataset = CacheDataset(data, split=config.split, in_memory=config.in_memory)
    _check_size(dataset, config)
    order = oversampled([dataset.covariates(i) for i in range(len(dataset))], config.oversample, taxonomy)
    model = _create(config, taxonomy)
    if init_source is not None:
        _init_weights(model, init_source, config)
    classifiers = _classifiers(config.tuning, accelerator.device)
    unet = model.network
    if model.kind == "hvae":  # saved by `_save_ema`
        ema = EMAModel(unet.parameters(), decay=config.ema_decay)
    else:
        ema = EMAModel(
            unet.parameters(),
            decay=config.ema_decay,
            model_cls=UNet2DConditionModel,
            model_config=unet.config,
        )
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = get_scheduler(
        config.lr_schedule, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps
    )
    unet, optimizer, schedule = accelerator.prepare(unet, optimizer, schedule)
    # the EMA is saved and restored as safetensors + JSON by us (`_checkpoint`, `_load_ema`), never through
    # accelerate's register_for_checkpointing, which pickles it and unpickles it with weights_only=False
    # before writing: a refused run leaves `out` alone
    start, resumed = _resume(accelerator, out, resume, ema, unet)
    multiplier = _load_multiplier(resumed, config)
    loop = _Loop(
        config, dataset, order, model, unet, optimizer, schedule, accelerator, classifiers, multiplier
    )
    if multiplier is not None and math.isnan(multiplier.target):  # elbo_margin: measured before any update
        multiplier.target = _starting_elbo(loop) + config.tuning.elbo_margin
    ema.to(accelerator.device)  # the shadow weights follow the model (load_state restores them on the CPU);
    # as in diffusers' examples, or ema.step() fails on a GPU
    if accelerator.is_main_process:
        _write_run_files(out, config, data, taxonomy, accelerator.num_processes)
    losses = _read_losses(out, start)
    seen, skipped, streak, clock = 0, 0, 0, time.perf_counter()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    for step in range(start, end):
        loss, updated = _step(loop, step)
        skipped += not updated
        streak = 0 if updated else streak + 1
        if streak >= SKIP_STREAK:  # the same on every process: the norm is all-reduced
            raise SynthfairError(
                f"{out}: {streak} updates in a row skipped at step {step + 1} (gradient norm above grad_skip "
                f"{config.grad_skip}): the weights no longer move, so no later batch can get below it",
                "resume from the last checkpoint with a larger grad_skip (grad_clip still bounds each "
                "update), or, under an ELBO constraint, a smaller tuning.damping",
            )
        ema.step(accelerator.unwrap_model(unet).parameters())
        loss = accelerator.reduce(loss.detach(), reduction="mean").item()
        seen += config.batch_size * accelerator.num_processes
        rate = seen / max(time.perf_counter() - clock, 1e-9)
        if accelerator.is_main_process:
            losses.append((step + 1, loss))
            if on_step is not None:
                on_step(step + 1, loss, rate)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            _checkpoint(accelerator, out, step + 1, ema, config, losses, unet, multiplier)
    if accelerator.is_main_process and (end == config.steps or export):
        _export(out, model, ema, accelerator.unwrap_model(unet), config, losses, end)
        fit_scm(dataset, taxonomy, config.seed).save(out / "model" / SCM_DIR)
        if config.engine:
            write_json(out / "model" / ENGINE_FILE, config_to_dict(_engine_settings(config)))
        if config.tuning.classifiers:  # recorded for the evaluator's independence check
            guides = out / "model" / GUIDANCE_DIR / finetune.GUIDES
            shutil.copytree(config.tuning.classifiers, guides, dirs_exist_ok=True)
        save_subjects(
            out / "model", subject_digests(m.get("patient_key") or m["sample_key"] for m in dataset.meta)
        )
    accelerator.wait_for_everyone()
    final = losses[-1][1] if losses else math.nan
    rate = seen / max(time.perf_counter() - clock, 1e-9)
    constraint = (None, None) if multiplier is None else (multiplier.value, multiplier.target)
    return TrainResult(out, end, start, final, rate, skipped, *constraint)


@dataclass
class _Loop:
    """What every step of a run uses, built once by `train`."""

    config: TrainConfig
    dataset: CacheDataset
    order: Any  # dataset rows in drawing order (`oversampled`)
    model: DiffusionModel | HVAEModel
    unet: torch.nn.Module  # the model's network as accelerate prepared it
    optimizer: Any
    schedule: Any
    accelerator: Accelerator
    classifiers: Any = None  # counterfactual fine-tuning's frozen classifiers, or None
    multiplier: finetune.Multiplier | None = None  # the ELBO constraint's, or None

    def batch(self, step: int) -> tuple[torch.Tensor, list[dict[str, Any]], torch.Generator]:
        """This process's images and covariates of ``step``, and the step's generator: pure functions of
        (seed, step, rank)."""
        config, rank, world = self.config, self.accelerator.process_index, self.accelerator.num_processes
        rows = batch_indices(step, len(self.order), config.batch_size, config.seed, rank, world)
        images, records = self.dataset.batch([int(self.order[i]) for i in rows])
        return images, records, torch.Generator().manual_seed(_step_seed(config.seed, step, rank))


def _step(loop: _Loop, step: int) -> tuple[torch.Tensor, bool]:
    """One optimizer step: (the batch's loss, whether the update was applied; see ``grad_skip``); an applied
    update also moves the ELBO constraint's multiplier (`finetune.Multiplier`), if there is one."""
    config, model, unet, accelerator = loop.config, loop.model, loop.unet, loop.accelerator
    classifiers, multiplier, optimizer = loop.classifiers, loop.multiplier, loop.optimizer
    images, records, generator = loop.batch(step)
    x0 = to_model_space(images).to(accelerator.device)
    if model.kind == "hvae":
        tuned, nelbo = _hvae_loss(
            config, model, unet, classifiers, x0, images, records, generator, accelerator
        )
        loss = config.tuning.weight * tuned + nelbo  # what the loss curve shows
        objective = loss
        if multiplier is not None:  # the ELBO held at its target instead of weighted by 1
            tuning = config.tuning
            objective = tuning.weight * tuned + multiplier.penalty(nelbo, tuning.damping)
    else:
        loss = _diffusion_loss(config, model, unet, classifiers, x0, images, records, generator, accelerator)
        objective = loss
    accelerator.backward(objective)
    updated = True
    if accelerator.sync_gradients:
        norm = accelerator.clip_grad_norm_(unet.parameters(), config.grad_clip)
        # an exploding (or NaN) gradient: drop the update, as VDVAE and causal-gen do (the norm is the same
        # on every process after the gradients' all-reduce, so every process drops it)
        updated = not config.grad_skip or bool(torch.as_tensor(norm).float() < config.grad_skip)
    if updated:
        optimizer.step()
        if multiplier is not None:  # the same mean on every process: every process moves it alike
            mean = accelerator.reduce(nelbo.detach(), reduction="mean").item()
            multiplier.step(mean, config.tuning.lagrange_lr)
    loop.schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, updated


def _diffusion_loss(
    config, model, unet, classifiers, x0, images, records, generator, accelerator
) -> torch.Tensor:
    """The denoising loss of one batch (plus counterfactual fine-tuning's classifier loss, if configured)."""
    noise = torch.randn(x0.shape, generator=generator).to(accelerator.device)
    t = torch.randint(0, model.scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    drop = torch.rand(x0.shape[0], len(model.encoder.groups), generator=generator) < config.cond_dropout
    cond = model.encoder.null(model.encoder.encode(records), drop).to(accelerator.device)
    t = t.to(accelerator.device)
    xt = model.scheduler.add_noise(x0, noise, t)
    with accelerator.autocast():
        pred = denoise(unet, xt, t, cond, config.model.patch_size)
    if config.snr_gamma or config.snr_floor:
        errors = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        weights = snr_weights(model.scheduler, t, config.snr_gamma, config.snr_floor, config.snr_weight_cap)
        loss = (errors * weights).mean()
    else:
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
    if classifiers is not None:
        tuned = _tuning_loss(config, model, unet, classifiers, images, records, generator, accelerator)
        loss = loss + config.tuning.weight * tuned
    return loss


def snr_weights(
    scheduler, t: torch.Tensor, gamma: float = 0.0, floor: float = 0.0, cap: float = 20.0
) -> torch.Tensor:
    """Weights of an epsilon-prediction loss at timesteps ``t``: clamp(SNR, floor, gamma) / SNR (a bound of 0
    is none), at most ``cap``, with diffusers' SNR = alpha_bar / (1 - alpha_bar). Min-SNR-gamma: 1 wherever
    SNR <= gamma; truncated SNR (floor 1): 1 wherever SNR >= 1, 1 / SNR below."""
    snr = compute_snr(scheduler, t)
    weighted = snr.clamp(min=floor or None, max=gamma or None)
    return (weighted / snr).clamp(max=cap)


def _hvae_loss(
    config, model, unet, classifiers, x0, images, records, generator, accelerator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the classifiers' loss on the HVAE's actual counterfactuals of the batch, differentiated through
    abduction and both decoder passes: 0 without fine-tuning; the batch's negative ELBO). `_step` weighs
    them."""
    device = accelerator.device
    drop = torch.rand(x0.shape[0], len(model.encoder.groups), generator=generator) < config.cond_dropout
    cond = model.encoder.null(model.encoder.encode(records), drop).to(device)
    changes, cond_cf = None, None
    if classifiers is not None:
        changes = finetune.interventions(records, classifiers, config.tuning.age_range, generator)
        cond_cf = finetune.encode_changed(model.encoder, records, changes).to(device)
    with accelerator.autocast():
        out = unet(x0, cond, generator, cond_cf)  # through the wrapper: DDP syncs the gradients
    nelbo = out["loss"].float()
    if changes is None:
        return nelbo.new_zeros(()), nelbo
    x_cf = (out["counterfactual"].float() + 1.0) / 2.0
    return finetune.tuning_loss(x_cf, images.to(device), changes, classifiers), nelbo


def _tuning_loss(config, model, unet, classifiers, images, records, generator, accelerator) -> torch.Tensor:
    """Counterfactual fine-tuning: classifiers score one-step counterfactuals (`synthfair.model.finetune`)."""
    tuning, device = config.tuning, accelerator.device
    changes = finetune.interventions(records, classifiers, tuning.age_range, generator)
    t = torch.randint(tuning.t_min, tuning.t_max + 1, (len(records),), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    x0 = to_model_space(images)
    xt = model.scheduler.add_noise(x0, noise, t).to(device)
    cond = finetune.encode_changed(model.encoder, records, changes).to(device)
    with accelerator.autocast():
        eps = denoise(unet, xt, t.to(device), cond, config.model.patch_size)
    alpha = model.scheduler.alphas_cumprod[t].to(device)
    x_cf = finetune.one_step_counterfactual(eps.float(), xt, alpha)
    return finetune.tuning_loss(x_cf, images.to(device), changes, classifiers)


def _engine_settings(config: TrainConfig):
    from synthfair.counterfactual import EngineConfig  # the engine imports this module

    return dataclass_from_dict(EngineConfig, config.engine, where="the training config's engine:")


def _classifiers(tuning: TuningConfig, device):
    """The frozen training-time classifiers of counterfactual fine-tuning, or None."""
    if not tuning.classifiers:
        return None
    from synthfair.evaluate.oracles import Oracles  # the oracles' format; loaded only when fine-tuning

    classifiers = Oracles.load(tuning.classifiers)
    for oracle in classifiers:
        oracle.net.to(device).eval().requires_grad_(False)
    return classifiers


def _init_source(config: TrainConfig) -> Path | None:
    """The model directory ``config.init_from`` names (a run, a model directory or a shipped model's name)."""
    if not config.init_from:
        return None
    try:
        return resolve_model(config.init_from)
    except SynthfairError as err:
        raise ConfigError(
            f"init_from: {err.message}",
            "train the run it names first (a preset's comments give the commands), or correct the path",
        ) from None


def _create(config: TrainConfig, taxonomy: Taxonomy) -> DiffusionModel | HVAEModel:
    """The fresh image model the config describes: a diffusion model, or an HVAE with ``hvae:``."""
    if config.hvae is not None:
        return HVAEModel.create(config.hvae, taxonomy, seed=config.seed)
    return DiffusionModel.create(config.model, taxonomy, seed=config.seed)


def _init_weights(model: DiffusionModel | HVAEModel, source_dir: Path, config: TrainConfig) -> None:
    """Load the weights of ``source_dir`` (``config.init_from``'s model) into ``model``."""
    source = load_model(source_dir, model.encoder.taxonomy)
    differ = [] if source.kind != model.kind else _architecture_changes(source.config, config.image_model)
    if source.kind != model.kind or differ:
        what = f"differ in {', '.join(differ)}" if differ else f"are a {source.kind} and a {model.kind} model"
        raise ConfigError(
            f"init_from {config.init_from} has config {source.config}, this run trains {config.image_model}: "
            f"they {what}",
            "fine-tune with the model (or hvae) section of the run that made those weights",
        )
    state = source.network.state_dict()
    # a switch turned on (GROWTH) adds zero-initialised weights: those, and only those, keep their start
    added = set(model.network.state_dict()) - set(state)
    missing, unexpected = model.network.load_state_dict(state, strict=False)
    if set(missing) != added or unexpected:  # the architecture check above makes this a bug, not bad input
        raise SynthfairError(
            f"init_from {config.init_from}: weights missing {sorted(set(missing) - added)}, unexpected "
            f"{sorted(unexpected)}",
            "report this: the two configs should give the same network up to the switches turned on",
        )


# settings of the loss, not of the network: a fine-tuning run may change them (e.g. a larger KL weight)
LOSS_SETTINGS = {"hvae": ("beta",), "diffusion": ()}
# switches a fine-tuning run may turn on: they add weights that start at zero, so the start is the source's
# function (e.g. priors that read the covariates)
GROWTH = {"hvae": ("cond_prior",), "diffusion": ()}


def _architecture_changes(source: ModelConfig | HVAEConfig, target: ModelConfig | HVAEConfig) -> list[str]:
    """The fields of two configs of one model kind that differ, the loss's own settings and the switches
    turned on (off to on) left out."""
    kind = "hvae" if isinstance(target, HVAEConfig) else "diffusion"
    names = [f.name for f in fields(target) if f.name not in LOSS_SETTINGS[kind]]
    grown = {name for name in GROWTH[kind] if not getattr(source, name) and getattr(target, name)}
    return [name for name in names if name not in grown and getattr(source, name) != getattr(target, name)]


def _step_seed(seed: int, step: int, rank: int) -> int:
    digest = hashlib.sha256(f"train/{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _precision(config: TrainConfig) -> str:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _check_size(dataset: CacheDataset, config: TrainConfig) -> None:
    size, section = config.image_model.sample_size, "model" if config.hvae is None else "hvae"
    if dataset.size != size:
        raise ConfigError(
            f"the cache {dataset.cache} holds {dataset.size}x{dataset.size} images, the model is "
            f"{size}x{size}",
            f"preprocess with --size {size}, or set {section}.sample_size: {dataset.size}",
        )


def checkpoints(out: str | Path) -> list[Path]:
    """The run's checkpoint directories, oldest first."""
    found = (Path(out) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*")
    return sorted((p for p in found if p.name[len(CHECKPOINT_PREFIX) :].isdigit()), key=_checkpoint_step)


def _checkpoint_step(path: Path) -> int:
    return int(path.name[len(CHECKPOINT_PREFIX) :])


def _resume(
    accelerator: Accelerator, out: Path, resume: str | None, ema: EMAModel, unet
) -> tuple[int, Path | None]:
    """(the step to start from, the checkpoint it was loaded from: None for a fresh start)."""
    if resume is None:
        if checkpoints(out):
            raise SynthfairError(
                f"{out} already has checkpoints", "pass --resume latest to continue, or use a new --out"
            )
        return 0, None
    if resume == "latest":
        found = checkpoints(out)
        if not found:
            return 0, None  # nothing to resume: start fresh (so one command both starts and resumes a job)
        path = found[-1]
    else:
        path = Path(resume)
        if not path.is_dir() or not path.name.startswith(CHECKPOINT_PREFIX):
            raise SynthfairError(
                f"{resume} is not a checkpoint directory", "pass latest or runs/NAME/checkpoints/checkpoint-N"
            )
    planted = sorted(path.glob("custom_checkpoint_*.pkl"))
    if planted:  # accelerate would unpickle these with weights_only=False: never
        raise SynthfairError(
            f"{planted[0]}: a pickled object in the checkpoint, which synthfair never loads (the EMA is in "
            "ema/ as safetensors)",
            f"delete {planted[0].name} if you trust nothing else changed, then resume again",
        )
    try:  # accelerate's own files: the model as safetensors, the rest with torch.load(weights_only=True)
        _check_random_states(path)
        accelerator.load_state(str(path))
    except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, OSError) as err:
        raise SynthfairError(
            f"{path}: the checkpoint's training state cannot be loaded safely ({type(err).__name__}: "
            f"{str(err)[:300]})",
            "resume from a checkpoint written by `synthfair train`, or start a new --out",
        ) from None
    _load_ema(ema, accelerator.unwrap_model(unet), path / "ema")
    return _checkpoint_step(path), path


SKIP_STREAK = 50  # this many skipped updates in a row stop the run: stuck weights never get unstuck
MULTIPLIER_FILE = "multiplier.json"  # in a checkpoint: the ELBO constraint's Lagrange multiplier


def _load_multiplier(checkpoint: Path | None, config: TrainConfig) -> finetune.Multiplier | None:
    """The ELBO constraint (``tuning.elbo_target`` or ``elbo_margin``): on a fresh start the multiplier is 0
    and the target the configured one (NaN: to be measured), else both are the checkpoint's."""
    tuning = config.tuning
    if not tuning.constrained:
        return None
    if checkpoint is None:
        return finetune.Multiplier(math.nan if tuning.elbo_target is None else tuning.elbo_target)
    path = checkpoint / MULTIPLIER_FILE
    hint = "resume from a checkpoint of a run with the same tuning settings, or start a new --out"
    try:
        if path.stat().st_size > 4096:
            raise ValueError("larger than 4 KiB")
        saved = json.loads(path.read_text())
        value, target = saved["lagrange_multiplier"], saved["elbo_target"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        what = f"{type(err).__name__}: {err}"
        raise SynthfairError(f"{path}: no readable Lagrange multiplier ({what})", hint) from None
    for key, number, positive in (("lagrange_multiplier", value, False), ("elbo_target", target, True)):
        real = isinstance(number, int | float) and not isinstance(number, bool)
        if not real or not (number > 0 if positive else number >= 0) or not number < math.inf:
            bound = "> 0" if positive else ">= 0"
            raise SynthfairError(f"{path}: {key} {number!r} is not a finite number {bound}", hint)
    if tuning.elbo_target is not None and target != tuning.elbo_target:
        raise SynthfairError(
            f"{path}: the run held the ELBO at {target}, the config says elbo_target {tuning.elbo_target}",
            hint,
        )
    return finetune.Multiplier(float(target), float(value))


def _starting_elbo(loop: _Loop) -> float:
    """The starting model's mean negative ELBO on this run's first `finetune.ELBO_BATCHES` batches (the
    same on every process: averaged over them), for ``tuning.elbo_margin``."""
    device, total = loop.accelerator.device, 0.0
    for step in range(finetune.ELBO_BATCHES):
        images, records, generator = loop.batch(step)
        with torch.no_grad():
            out = loop.unet(
                to_model_space(images).to(device), loop.model.encoder.encode(records).to(device), generator
            )
        total += loop.accelerator.reduce(out["loss"].detach().float(), reduction="mean").item()
    return total / finetune.ELBO_BATCHES


def _check_random_states(path: Path) -> None:
    """accelerate loads the RNG states with weights_only=True but, if that fails, only logs it and goes on:
    the resumed run would silently leave its trajectory. Load them first, the same safe way, and raise."""
    from accelerate.utils.other import load

    for states in sorted(path.glob("random_states_*.pkl")):
        load(states)


def _load_ema(ema: EMAModel, unet, path: Path) -> None:
    """The EMA of a checkpoint, from ``ema/`` (safetensors weights and the JSON config that
    ``EMAModel.save_pretrained`` writes): no pickle is read from a checkpoint, which may come from anyone."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, config = path / "diffusion_pytorch_model.safetensors", path / "config.json"
    hint = "resume from a checkpoint written by `synthfair train`, or start a new --out"
    if not weights.is_file() or not config.is_file() or config.stat().st_size > 1 << 20:
        raise SynthfairError(f"{path}: no EMA weights (safetensors weights and config.json)", hint)
    try:
        state = load_file(str(weights))
        settings = json.loads(config.read_text())
    except (SafetensorError, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SynthfairError(f"{path}: unreadable EMA checkpoint ({err})", hint) from None
    names = [name for name, _ in unet.named_parameters()]
    bad = [n for n in names if n not in state or state[n].shape != dict(unet.named_parameters())[n].shape]
    step = settings.get("optimization_step") if isinstance(settings, dict) else None
    if bad or not isinstance(step, int) or isinstance(step, bool) or step < 0:
        what = f"parameter {bad[0]!r} missing or of another shape" if bad else f"optimization_step {step!r}"
        raise SynthfairError(f"{path}: EMA checkpoint does not fit this model ({what})", hint)
    pairs = zip(names, ema.shadow_params, strict=True)
    ema.shadow_params = [state[n].to(p.device, p.dtype).clone() for n, p in pairs]
    ema.optimization_step = step


def _save_ema(ema: EMAModel, net: torch.nn.Module, path: Path) -> None:
    """The EMA of a model without a diffusers class, in the files `_load_ema` reads (safetensors + JSON)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    names = [name for name, _ in net.named_parameters()]
    state = {n: p.detach().cpu().contiguous() for n, p in zip(names, ema.shadow_params, strict=True)}
    save_file(state, str(path / "diffusion_pytorch_model.safetensors"))
    write_json(path / "config.json", {"decay": ema.decay, "optimization_step": ema.optimization_step})


def _checkpoint(
    accelerator, out: Path, step: int, ema: EMAModel, config: TrainConfig, losses, unet, multiplier=None
) -> None:
    path = out / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:07d}"
    if accelerator.is_main_process:
        for old in checkpoints(out)[: max(0, len(checkpoints(out)) - config.checkpoints_total_limit + 1)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        if ema.model_cls is None:  # an HVAE: no diffusers class to save it through
            _save_ema(ema, accelerator.unwrap_model(unet), path / "ema")
        else:
            ema.save_pretrained(str(path / "ema"))
        if multiplier is not None:
            write_json(
                path / MULTIPLIER_FILE,
                {"lagrange_multiplier": multiplier.value, "elbo_target": multiplier.target},
            )
        _write_losses(out, losses)


def _export(
    out: Path, model: DiffusionModel | HVAEModel, ema: EMAModel, net, config: TrainConfig, losses, step: int
) -> None:
    """The final EMA weights as a model directory (`DiffusionModel` or `HVAEModel`), and the loss curve."""
    ema.store(net.parameters())
    ema.copy_to(net.parameters())
    record = {"train": _train_record(config, step)}
    if model.kind == "hvae":
        final = HVAEModel(net, model.encoder, config.hvae, record)
    else:
        final = DiffusionModel(net, model.encoder, model.scheduler, config.model, record)
    final.save(out / "model")
    ema.restore(net.parameters())
    _write_losses(out, losses)
    label = "negative ELBO (nats / pixel)" if model.kind == "hvae" else "MSE (epsilon)"
    _plot_losses(out / "loss.png", losses, label)


def fit_scm(dataset: CacheDataset, taxonomy: Taxonomy, seed: int) -> AttributeSCM:
    """The attribute SCM fitted on the covariates of the training images (the checkpoint's own data)."""
    rows = []
    for i in range(len(dataset)):
        rows.append(taxonomy.flatten(dataset.covariates(i)))
    return AttributeSCM(taxonomy).fit(pd.DataFrame(rows), seed=seed)


def _train_record(config: TrainConfig, step: int | None = None) -> dict[str, Any]:
    record = {"steps": config.steps, "batch_size": config.batch_size, "seed": config.seed}
    if step is not None and step != config.steps:
        record["exported_at_step"] = step  # `--stop-at step --export`: the schedule's first `step` steps
    return record


def _write_run_files(out: Path, config: TrainConfig, data, taxonomy: Taxonomy, world: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write(out / "config.yaml", lambda f: f.write(text.encode()))
    manifest = Path(data) / "manifest.json"
    record = {
        "schema": "synthfair.train-run/1",
        "synthfair_version": synthfair.__version__,
        "taxonomy_sha256": taxonomy.sha256,
        "data": str(Path(data).resolve()),
        "data_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "processes": world,
        "packages": {p: package_version(p) for p in ("torch", "diffusers", "accelerate")},
        "config": config_to_dict(config),
    }
    write_json(out / "train.json", record)


def _read_losses(out: Path, start: int) -> list[tuple[int, float]]:
    path = out / "loss.csv"
    if start == 0 or not path.is_file():
        return []
    with open(path) as f:
        rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]
    return [r for r in rows if r[0] <= start]


def _write_losses(out: Path, losses: list[tuple[int, float]]) -> None:
    text = "step,loss\n" + "".join(f"{s},{v:.6g}\n" for s, v in losses)
    atomic_write(out / "loss.csv", lambda f: f.write(text.encode()))


def _plot_losses(path: Path, losses: list[tuple[int, float]], label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _ in losses]
    values = [v for _, v in losses]
    window = max(1, len(values) // 50)
    smooth = [sum(values[max(0, i - window + 1) : i + 1]) / min(i + 1, window) for i in range(len(values))]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, values, color="0.8", linewidth=0.8, label="loss")
    ax.plot(steps, smooth, color="C0", linewidth=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
