"""The counterfactual engine: factual image + covariates + do() -> counterfactual image + covariates + record.

Abduction, action, prediction (Pearl's three steps), for the covariates and then for the image:

1. covariates: the attribute SCM abducts the factual covariates' exogenous noise, applies the intervention
   and predicts the counterfactual covariates (descendants of an intervened node change through their
   mechanisms; everything else keeps its factual value). Without an SCM, only the intervened covariates
   change (``propagated=False`` in the record).
2. image abduction, ``abduction="ddpm"`` (default): edit-friendly DDPM noise maps under the factual
   covariates (`DiffusionModel.noise_maps`, drawn from a generator seeded by the sample's seed), leaving out
   the ``skip`` share of the noisiest steps. ``abduction="ddim"``: deterministic DDIM inversion to ``x_T``,
   and the reconstruction residual ``r = x - DDIM(x_T | factual)`` (``residual=True``) that keeps what
   inversion loses and makes the null intervention exact.
3. (ddpm, ``mask=True``) when every changed covariate acts locally (``extent: local`` in taxonomy.yaml), the
   region the model's own conditional difference marks (`DiffusionModel.edit_mask`); outside it the result
   stays the factual image.
4. prediction: the chain replayed (ddpm) or sampled (ddim) under the counterfactual covariates, with factored
   classifier-free guidance: each changed group with its scale (``group_guidance``, else ``guidance``) against
   the same condition with that group nulled (``guide="intervened"``) or at its factual value
   (``guide="factual"``), or every change against the unconditional model (``guide="all"``).

An HVAE image model (``kind: hvae``, `synthfair.model.hvae`) replaces steps 2-4: its latents are abducted
from the image under the factual covariates (posterior means), the image is decoded under the factual and
the counterfactual covariates, and the factual image's per-pixel noise under the first is carried to the
second (3 network passes; the null intervention returns the image exactly). The diffusion settings of
`EngineConfig` other than ``batch_size`` do not apply to it.

With ``routes`` (`synthfair.model.routes`) one model directory serves each intervention with the image model
the evaluator found best for it: a counterfactual whose changed covariates all map to one route goes to the
model in ``routes/NAME/`` (with that model's own recommended settings), everything else to the directory's
own model; the covariates are always computed by the directory's SCM.

`CounterfactualEngine.evaluations` gives the network evaluations per counterfactual. A model directory may
carry the settings its recipe was tuned with (``engine.json``); ``EngineConfig.recommended`` reads them.

Every sample is computed in a batch of exactly ``batch_size`` rows (padded with copies), so its bytes do not
depend on which other samples share its batch; the SCM's abduction draws from a generator seeded by the
sample's own seed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from synthfair.causal.scm import AttributeSCM
from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError, SynthfairError, did_you_mean
from synthfair.model.diffusion import DiffusionModel, Reference, resolve_model, to_image_space, to_model_space
from synthfair.model.registry import ENGINE_FILE, load_model
from synthfair.model.routes import check_key, check_name, route_dir
from synthfair.model.train import SCM_DIR
from synthfair.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from synthfair.model.hvae import HVAEModel

GUIDES = ("intervened", "factual", "all")
MAX_ENGINE_BYTES = 1 << 16
ABDUCTIONS = ("ddim", "ddpm")
# an HVAE counterfactual: the encoder, then the decoder under the factual and the counterfactual covariates
HVAE_EVALUATIONS = 3


@dataclass(frozen=True)
class EngineConfig:
    steps: int = 25  # DDIM steps, the same for inversion and sampling
    guidance: float = 1.0  # classifier-free guidance scale of every changed covariate group (1 = none)
    # per-group scales (factored guidance), e.g. {"findings": 3.0}; groups not listed use `guidance`
    group_guidance: dict[str, float] = field(default_factory=dict)
    # what each changed group is guided away from: "intervened" = that group nulled, "factual" = that group
    # at its factual value, "all" = the unconditional model (one reference for every changed group)
    guide: str = "intervened"
    residual: bool = True  # add back the reconstruction residual (DDIM abduction)
    # "ddpm": edit-friendly noise maps, seeded per sample (exact reconstruction, stronger edits, 2 x steps
    # evaluations); "ddim": deterministic inversion (+ residual). Measured against the phantom's truth in
    # docs/benchmarks.md: ddpm reproduces more of global changes (device, sex, view), less of local ones.
    abduction: str = "ddpm"
    skip: float = 0.0  # ddpm: share of the noisiest steps not replayed (more of the image is kept)
    # ddpm: confine the edits of covariates with `extent: local` in taxonomy.yaml (findings) to where the
    # model's own conditional difference says they belong (DiffEdit mask, RadEdit-style keep region)
    mask: bool = False
    mask_evaluations: int = 4  # network evaluations that estimate the mask
    mask_threshold: float = 0.5  # share of the largest conditional difference that is inside the mask
    batch_size: int = 8  # rows per network evaluation (samples are padded to it)
    # covariate (or covariate=value, for one categorical value) -> route name: counterfactuals whose changed
    # covariates all map to one route are made by the model in routes/NAME/ of the model directory
    # (synthfair.model.routes), e.g. {"view=LATERAL": "hvae", "device": "hvae"}
    routes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.routes.values():
            check_name(name)
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}", "use e.g. 25 and 8"
            )
        if self.guide not in GUIDES:
            raise ConfigError(
                f"guide {self.guide!r} is not one of {GUIDES}", "use intervened, factual or all"
            )
        if self.abduction not in ABDUCTIONS:
            raise ConfigError(f"abduction {self.abduction!r} is not one of {ABDUCTIONS}", "use ddim or ddpm")
        if not 0.0 <= self.skip < 1.0 or self.skip_steps >= self.steps:
            raise ConfigError(
                f"skip {self.skip} leaves no step of {self.steps} to replay",
                "use a share in [0, 1), e.g. 0.2",
            )
        if self.abduction == "ddim" and (self.skip or self.mask):
            raise ConfigError(
                "skip and mask work on DDPM noise maps, not with abduction 'ddim'", "use abduction: ddpm"
            )
        if self.mask and not (self.mask_evaluations >= 1 and 0.0 < self.mask_threshold < 1.0):
            raise ConfigError(
                f"mask needs mask_evaluations >= 1 and mask_threshold in (0, 1), got "
                f"{self.mask_evaluations}, {self.mask_threshold}",
                "use e.g. 4 and 0.5",
            )

    @classmethod
    def recommended(cls, checkpoint: str | Path, **overrides: Any) -> EngineConfig:
        """The settings a model recommends (its ``engine.json``; the defaults without one), ``overrides``
        (keys of this class whose value is not None) applied on top."""
        path = resolve_model(checkpoint) / ENGINE_FILE
        settings: dict[str, Any] = {}
        if path.is_file():
            if path.stat().st_size > MAX_ENGINE_BYTES:
                raise ConfigError(f"{path} is {path.stat().st_size} bytes: not engine settings", "remove it")
            try:
                settings = json.loads(path.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ConfigError(
                    f"{path} is not JSON: {err}", "remove it or write the settings again"
                ) from None
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return dataclass_from_dict(cls, settings, where=str(path))

    @property
    def skip_steps(self) -> int:
        return round(self.skip * self.steps)

    def scale(self, group: str) -> float:
        """The guidance scale of covariate group ``group``."""
        return float(self.group_guidance.get(group, self.guidance))

    def evaluations(self, changed: Sequence[str] = (), local: bool = False) -> int:
        """Network evaluations of one counterfactual whose covariates ``changed`` (all ``local`` or not)."""
        if self.guide == "all":
            refs = int(bool(changed) and self.guidance != 1.0)
        else:
            refs = sum(self.scale(g) != 1.0 for g in changed)
        replayed = self.steps - self.skip_steps
        if self.abduction == "ddim":
            return self.steps * (2 if self.residual else 1) + self.steps * (1 + refs)
        return replayed * (2 + refs) + (self.mask_evaluations if self.mask and local and changed else 0)


@dataclass(frozen=True, eq=False)
class Counterfactual:
    image: np.ndarray  # float32 (H, W) in [0, 1]
    covariates: dict[str, Any]  # after the intervention, propagated through the SCM
    factual: dict[str, Any]
    intervention: dict[str, Any]
    changed: tuple[str, ...]  # covariates whose value differs from the factual
    propagated: bool  # whether descendants were recomputed by an attribute SCM
    reconstruction_error: float  # mean |x - DDIM(x_T | factual)| before the residual (NaN without residual;
    # 0 for ddpm abduction, exact by construction)
    route: str | None = None  # the route whose model made it (synthfair.model.routes); None: the engine's own


class CounterfactualEngine:
    """Batched, deterministic counterfactuals from a trained image model and (optionally) an attribute SCM."""

    def __init__(
        self,
        model: DiffusionModel | HVAEModel,
        scm: AttributeSCM | None = None,
        config: EngineConfig | None = None,
        routes: Mapping[str, CounterfactualEngine] | None = None,
    ):
        self.model = model  # a DiffusionModel or an HVAEModel (synthfair.model.registry)
        self.scm = scm
        self.config = config or EngineConfig()
        if model.kind == "hvae":
            _check_hvae_settings(self.config)
        else:
            _check_groups(self.config, model.encoder.names)
        self.routes = dict(routes or {})  # route name -> its engine (no SCM: the covariates are ours)
        _check_routes(self.config, self.routes, model)
        self.model.network.eval()

    @classmethod
    def load(
        cls, checkpoint: str | Path, config: EngineConfig | None = None, taxonomy: Taxonomy | None = None
    ) -> CounterfactualEngine:
        """From a run directory (``runs/NAME``, using its ``model/``), a model directory or a shipped model's
        name; ``config`` None takes the settings the model recommends (`EngineConfig.recommended`)."""
        model_dir = resolve_model(checkpoint)
        config = config or EngineConfig.recommended(model_dir)
        taxonomy = taxonomy or load_taxonomy()
        model = load_model(model_dir, taxonomy)
        scm = AttributeSCM.load(model_dir / SCM_DIR, taxonomy) if (model_dir / SCM_DIR).is_dir() else None
        routes = {}
        for name in sorted(set(config.routes.values())):
            path = route_dir(model_dir, name)
            settings = EngineConfig.recommended(path)
            if settings.routes:
                raise ConfigError(f"route {name!r} ({path}) has routes of its own", "route to a plain model")
            routes[name] = cls(load_model(path, taxonomy), None, settings)
        return cls(model, scm, config, routes)

    @property
    def size(self) -> int:
        return self.model.config.sample_size

    @property
    def device(self) -> torch.device:
        return next(self.model.network.parameters()).device

    def evaluations(
        self, changed: Sequence[str] = (), local: bool = False, covariates: Mapping[str, Any] | None = None
    ) -> int:
        """Network evaluations of one counterfactual whose covariates ``changed`` (all ``local`` or not) to
        ``covariates`` (needed only for routes of one value)."""
        route = self.route(changed, covariates)
        if route is not None:
            return self.routes[route].evaluations(changed, local)
        if self.model.kind == "hvae":
            return HVAE_EVALUATIONS
        return self.config.evaluations(changed, local)

    def route(self, changed: Sequence[str], covariates: Mapping[str, Any] | None = None) -> str | None:
        """The route of a counterfactual whose covariates ``changed`` to ``covariates``: None for this
        engine's own model. A route of the new value (``view=LATERAL``) comes before the covariate's."""
        routes, covariates = self.config.routes, covariates or {}
        # keys of one value name categorical values only (`check_key`): other values fall to the covariate's
        names = {routes.get(f"{name}={covariates.get(name)}") or routes.get(name) for name in changed}
        return names.pop() if len(names) == 1 and None not in names else None

    def to(self, device: str | torch.device) -> CounterfactualEngine:
        """Move the denoiser to ``device`` (float32 everywhere: bytes must not depend on autocast)."""
        self.model.network.to(device)
        for engine in self.routes.values():
            engine.to(device)
        return self

    def __call__(
        self,
        images: Sequence[np.ndarray],
        factuals: Sequence[Mapping[str, Any]],
        interventions: Sequence[Mapping[str, Any]],
        seeds: Sequence[int],
    ) -> list[Counterfactual]:
        """One counterfactual per (image (H, W) in [0, 1], factual covariates, intervention, seed)."""
        n = len(images)
        if not (len(factuals) == len(interventions) == len(seeds) == n):
            raise SynthfairError(
                f"got {n} images, {len(factuals)} covariate records, {len(interventions)} interventions and "
                f"{len(seeds)} seeds",
                "pass one of each per sample",
            )
        taxonomy = self.model.encoder.taxonomy
        factuals = [
            taxonomy.check_record(f, where=f"factual covariates of sample {i}")
            for i, f in enumerate(factuals)
        ]
        cfs = [self.covariates(f, d, s) for f, d, s in zip(factuals, interventions, seeds, strict=True)]
        out: list[Counterfactual | None] = [None] * n
        for name, engine, rows in self._routed(cfs):
            size = engine.config.batch_size
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                made = engine._batch(
                    *([arg[i] for i in chunk] for arg in (images, factuals, interventions, seeds, cfs))
                )
                for i, result in zip(chunk, made, strict=True):
                    out[i] = result if name is None else replace(result, route=name)
        return out

    def _routed(self, cfs) -> list[tuple[str | None, CounterfactualEngine, list[int]]]:
        """(route name, its engine, the rows it makes, in order): this engine's rows first (name None), then
        each route's."""
        rows: dict[str | None, list[int]] = {None: []}
        for i, (covariates, changed, _) in enumerate(cfs):
            rows.setdefault(self.route(changed, covariates), []).append(i)
        return [(name, self if name is None else self.routes[name], r) for name, r in rows.items() if r]

    def covariates(self, factual: Mapping[str, Any], intervention: Mapping[str, Any], seed: int):
        """(counterfactual covariates, changed, propagated) for one sample."""
        if self.scm is not None:
            result = self.scm.counterfactual(dict(factual), dict(intervention), np.random.default_rng(seed))
            return result.covariates, tuple(result.changed), True
        covariates = {**factual}
        for name, value in intervention.items():
            if name not in self.model.encoder.taxonomy:
                raise SynthfairError(f"unknown covariate {name!r} in the intervention", "see taxonomy.yaml")
            if isinstance(value, Mapping):
                covariates[name] = {**(factual.get(name) or {}), **value}
            else:
                covariates[name] = value
        changed = tuple(k for k in covariates if covariates[k] != factual.get(k))
        return covariates, changed, False

    def _batch(self, images, factuals, interventions, seeds, cfs) -> list[Counterfactual]:
        """One batch of counterfactuals whose covariates ``cfs`` (`covariates`' results) are known."""
        n, size = len(images), self.config.batch_size
        for image in images:
            if image.shape != (self.size, self.size):
                raise SynthfairError(
                    f"image of shape {image.shape} does not match the model's {self.size}x{self.size}",
                    "fit it first (synthfair.images.resize.fit_image) or use a model of that size",
                )
        pad = list(range(n)) + [n - 1] * (
            size - n
        )  # fixed batch shape: per-sample bytes are batch-independent
        device = self.device
        x0 = to_model_space(torch.from_numpy(np.stack([images[i] for i in pad]).astype(np.float32))).to(
            device
        )
        encoder = self.model.encoder
        cond_f = encoder.encode([factuals[i] for i in pad]).to(device)
        cond_cf = encoder.encode([cfs[i][0] for i in pad]).to(device)
        changed = [cfs[i][1] for i in pad]
        if self.model.kind == "hvae":  # abducted latents and image noise: exact reconstruction
            with torch.no_grad():
                x_cf, errors = self.model.net.counterfactual(x0, cond_f, cond_cf), np.zeros(x0.shape[0])
        elif self.config.abduction == "ddpm":
            refs = self._references(cond_f, cond_cf, changed)
            x_cf, errors = self._ddpm(x0, cond_f, cond_cf, refs, changed, [seeds[i] for i in pad])
        else:
            x_cf, errors = self._ddim(x0, cond_f, cond_cf, self._references(cond_f, cond_cf, changed))
        images_cf = to_image_space(x_cf).cpu().numpy()
        return [
            Counterfactual(
                image=images_cf[i].astype(np.float32),
                covariates=cfs[i][0],
                factual=dict(factuals[i]),
                intervention=dict(interventions[i]),
                changed=cfs[i][1],
                propagated=cfs[i][2],
                reconstruction_error=float(errors[i]),
            )
            for i in range(n)
        ]

    def _ddim(self, x0, cond_f, cond_cf, refs) -> tuple[torch.Tensor, np.ndarray]:
        steps = self.config.steps
        xt = self.model.invert(x0, cond_f, steps)
        residual, errors = torch.zeros_like(x0), np.full(x0.shape[0], np.nan)
        if self.config.residual:
            recon = self.model.sample(xt, cond_f, steps)
            residual = x0 - recon
            errors = (to_image_space(recon) - to_image_space(x0)).abs().mean(dim=(1, 2)).cpu().numpy()
        return self.model.sample(xt, cond_cf, steps, refs=refs) + residual, errors

    def _ddpm(self, x0, cond_f, cond_cf, refs, changed, seeds) -> tuple[torch.Tensor, np.ndarray]:
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        maps = self.model.noise_maps(x0, cond_f, self.config.steps, generators, self.config.skip_steps)
        mask = None
        local = torch.tensor([bool(c) and all(self._local(g) for g in c) for c in changed])
        if self.config.mask and bool(local.any()):
            found = self.model.edit_mask(
                maps, cond_cf, self.config.mask_evaluations, self.config.mask_threshold
            )
            mask = torch.where(local.view(-1, 1, 1, 1).to(found.device), found, torch.ones_like(found))
        return self.model.replay(maps, cond_cf, refs, mask), np.zeros(x0.shape[0])  # exact reconstruction

    def _local(self, name: str) -> bool:
        return self.model.encoder.taxonomy[name].extent == "local"

    def _references(self, cond_f, cond_cf, changed: list[tuple[str, ...]]) -> list[Reference]:
        """Guidance references: one per changed group (factored), or the unconditional (``guide="all"``)."""
        config, encoder, rows = self.config, self.model.encoder, cond_cf.shape[0]
        if config.guide == "all":
            if config.guidance == 1.0 or not any(changed):
                return []
            return [
                Reference(
                    encoder.null(cond_cf.cpu()).to(cond_cf.device), torch.full((rows,), config.guidance)
                )
            ]
        guided = [[g for g in c if g in encoder.names and config.scale(g) != 1.0] for c in changed]
        refs = []
        for slot in range(max(map(len, guided), default=0)):
            drop = torch.zeros(rows, len(encoder.groups), dtype=torch.bool)
            scale = torch.ones(rows)
            for i, groups in enumerate(guided):
                if slot < len(groups):
                    drop[i, encoder.names.index(groups[slot])] = True
                    scale[i] = config.scale(groups[slot])
            refs.append(Reference(self._reference(cond_f, cond_cf, drop), scale))
        return refs

    def _reference(self, cond_f, cond_cf, drop: torch.Tensor) -> torch.Tensor:
        """``cond_cf`` with the groups in ``drop`` (B, n_groups) nulled, or set to their factual values."""
        encoder = self.model.encoder
        if self.config.guide == "intervened":
            return encoder.null(cond_cf.cpu(), drop).to(cond_cf.device)
        out = cond_cf.clone()
        for j, group in enumerate(encoder.groups):
            rows = drop[:, j].to(out.device)
            out[rows, group.columns] = cond_f[rows, group.columns]
        return out


def _check_hvae_settings(config: EngineConfig) -> None:
    """An HVAE's counterfactual has no steps, guidance or masks: refuse settings that would be ignored."""
    defaults = EngineConfig(batch_size=config.batch_size, routes=config.routes)
    changed = [f.name for f in fields(EngineConfig) if getattr(config, f.name) != getattr(defaults, f.name)]
    if changed:
        raise ConfigError(
            f"engine settings {', '.join(f'{n}={getattr(config, n)!r}' for n in changed)} do not apply to an "
            "HVAE model (its counterfactual is abduction and one decoder pass: no steps, guidance or masks)",
            "leave them out; only batch_size applies",
        )


def _check_groups(config: EngineConfig, names: Sequence[str]) -> None:
    """Per-group guidance scales name the model's conditioning groups: a misspelt group would be ignored."""
    for group in config.group_guidance:
        if group not in names:
            raise ConfigError(
                f"group_guidance names {group!r}, not a conditioning group of this model"
                f"{did_you_mean(group, names)}",
                f"groups: {', '.join(names)}",
            )


def _check_routes(config: EngineConfig, routes: Mapping[str, CounterfactualEngine], model) -> None:
    """Every route of ``config`` has an engine of the same image size and taxonomy, on known covariates."""
    taxonomy = model.encoder.taxonomy
    for key, name in config.routes.items():
        check_key(key, taxonomy)
        if name not in routes:
            raise ConfigError(
                f"routes: no engine for route {name!r}", "load the engine from its model directory"
            )
    for name, engine in routes.items():
        if engine.size != model.config.sample_size or engine.model.encoder.taxonomy.sha256 != taxonomy.sha256:
            raise ConfigError(
                f"route {name!r} makes {engine.size}x{engine.size} images under taxonomy "
                f"{engine.model.encoder.taxonomy.sha256[:12]}, the model {model.config.sample_size}x"
                f"{model.config.sample_size} under {taxonomy.sha256[:12]}",
                "route to a model trained at the same size on the same taxonomy",
            )


def parse_do(items: Sequence[str], taxonomy: Taxonomy | None = None) -> dict[str, Any]:
    """``["age=80", "sex=female", "findings.cardiomegaly=1"]`` -> an intervention dict, values checked."""
    taxonomy = taxonomy or load_taxonomy()
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(
                f"--do {item!r} is not NAME=VALUE", 'write e.g. --do "age=80" --do "sex=female"'
            )
        name, _, label = name.strip().partition(".")
        spec = taxonomy[name]  # unknown names raise with did-you-mean
        if spec.kind == "multilabel":
            if not label:
                raise ConfigError(
                    f"--do {item!r}: set findings one label at a time", f"write --do {name}.<label>=1 or =0"
                )
            out.setdefault(name, {}).update(spec.check({label: _number(text, item)}, where=f"--do {item}"))
        elif spec.kind == "continuous":
            out[name] = spec.check(_number(text, item), where=f"--do {item}")
        else:
            out[name] = spec.check(text.strip(), where=f"--do {item}")
    return out


def _number(text: str, item: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--do {item!r}: {text!r} is not a number", "write e.g. --do age=80") from None
