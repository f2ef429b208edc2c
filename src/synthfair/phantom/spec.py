"""phantom.yaml: the phantom's causal model and imaging physics, checked against the taxonomy.

Everything keyed by a covariate value (views, devices, race effects, body size) is validated with the
taxonomy, so a typo is an error naming the file, the key and the allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from synthfair.config import dataclass_from_dict, read_yaml
from synthfair.errors import ConfigError, did_you_mean
from synthfair.phantom.detector import CORNERS, DeviceProfile
from synthfair.phantom.scm import PhantomSCM
from synthfair.taxonomy import Taxonomy

_TOP = ("scm", "roles", "race_effect", "views", "devices", "subject", "edits")


@dataclass(frozen=True)
class Roles:
    """Which covariate, value or label drives each image mechanism."""

    age: str
    sex: str
    female: str
    race: str
    findings: str
    cardiomegaly: str
    pleural_effusion: str
    consolidation: str
    view: str
    device: str


@dataclass(frozen=True)
class ViewSpec:
    depth_axis: int  # 1 frontal, 0 lateral
    source_side: int  # -1 posterior / patient's right; +1 anterior / patient's left
    sid_mm: float
    supine: bool = False  # patient lying: pleural fluid layers posteriorly
    scapulae_out_mm: float = 0.0  # scapulae rotated out of the lung fields
    exposure_cm: float = 0.0  # extra exposure (automatic exposure control), as water-equivalent cm removed


@dataclass(frozen=True)
class SubjectVariation:
    habitus_sd: float = 0.035
    body_size: dict[str, float] = field(default_factory=dict)  # sex value -> body scale
    yaw_sd_deg: float = 2.0
    roll_sd_deg: float = 1.2
    inspiration_sd: float = 0.03
    deform_mm: float = 5.0


@dataclass(frozen=True)
class EditParams:
    bone_loss_per_year: float = 0.006
    calcification_onset: float = 30.0
    calcification_full: float = 90.0
    heart_scale: tuple[float, float] = (1.25, 1.50)
    effusion_fraction: tuple[float, float] = (0.15, 0.45)
    consolidation_fraction: tuple[float, float] = (0.45, 0.9)
    breast_size_mm: tuple[float, float] = (35.0, 65.0)


@dataclass(frozen=True, eq=False)
class PhantomSpec:
    scm: PhantomSCM
    roles: Roles
    race_effect: dict[str, float]
    views: dict[str, ViewSpec]
    devices: dict[str, DeviceProfile]
    subject: SubjectVariation
    edits: EditParams
    raw: dict  # the parsed YAML, for provenance


def default_spec_path() -> Path:
    return Path(str(resources.files("synthfair.phantom").joinpath("phantom.yaml")))


def load_spec(taxonomy: Taxonomy, path: str | Path | None = None) -> PhantomSpec:
    path = Path(path) if path else default_spec_path()
    data = read_yaml(path)
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping", f"allowed keys: {list(_TOP)}")
    for key in data:
        if key not in _TOP:
            raise ConfigError(
                f"{where}: unknown key {key!r}{did_you_mean(key, _TOP)}", f"allowed keys: {list(_TOP)}"
            )
    roles = dataclass_from_dict(Roles, data.get("roles", {}), where=f"{where}:roles")
    _check_roles(roles, taxonomy, where)
    return PhantomSpec(
        scm=PhantomSCM(taxonomy, data.get("scm", {}), where=f"{where}:scm"),
        roles=roles,
        race_effect=_by_value(
            data.get("race_effect") or {}, taxonomy[roles.race], float, f"{where}:race_effect"
        ),
        views=_views(data.get("views", {}), taxonomy[roles.view], f"{where}:views"),
        devices=_devices(data.get("devices", {}), taxonomy[roles.device], f"{where}:devices"),
        subject=_subject(data.get("subject", {}), taxonomy[roles.sex], f"{where}:subject"),
        edits=dataclass_from_dict(EditParams, data.get("edits", {}), where=f"{where}:edits"),
        raw=data,
    )


def _check_roles(roles: Roles, taxonomy: Taxonomy, where: str) -> None:
    kinds = {
        "age": "continuous",
        "sex": "categorical",
        "race": "categorical",
        "findings": "multilabel",
        "view": "categorical",
        "device": "categorical",
    }
    for role, kind in kinds.items():
        name = getattr(roles, role)
        if name not in taxonomy:
            raise ConfigError(
                f"{where}: roles.{role}={name!r} is not a covariate{did_you_mean(name, taxonomy.names)}",
                f"use one of {list(taxonomy.names)}",
            )
        cov = taxonomy[name]
        if cov.kind != kind:
            raise ConfigError(
                f"{where}: roles.{role}={name!r} is {cov.kind}, expected {kind}",
                f"point roles.{role} at a {kind} covariate of taxonomy.yaml",
            )
    taxonomy[roles.sex].check(roles.female, where=f"{where}: roles.female")
    for role in ("cardiomegaly", "pleural_effusion", "consolidation"):
        taxonomy[roles.findings].check({getattr(roles, role): 1}, where=f"{where}: roles.{role}")


def _by_value(table: Any, cov, build, where: str, every: bool = False) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a mapping of {cov.name} values", f"values: {list(cov.values)}")
    out = {}
    for value, entry in table.items():
        cov.check(value, where=where)
        if build is float:
            if isinstance(entry, bool) or not isinstance(entry, (int, float)):
                raise ConfigError(
                    f"{where}.{value}={entry!r} must be a number", "e.g. 0.03 for +3% attenuation"
                )
            out[value] = float(entry)
        else:
            out[value] = dataclass_from_dict(build, entry, where=f"{where}.{value}")
    missing = [v for v in cov.values if v not in out]
    if every and missing:
        raise ConfigError(
            f"{where} has no entry for {cov.name}={missing[0]!r}",
            f"add one for every value: {list(cov.values)}",
        )
    return out


def _views(table: Any, cov, where: str) -> dict[str, ViewSpec]:
    views = _by_value(table, cov, ViewSpec, where, every=True)
    for value, v in views.items():
        if v.depth_axis not in (0, 1) or v.source_side not in (-1, 1) or not v.sid_mm > 0:
            raise ConfigError(
                f"{where}.{value}: depth_axis={v.depth_axis}, source_side={v.source_side}, "
                f"sid_mm={v.sid_mm} out of range",
                "depth_axis 1 (frontal) or 0 (lateral), source_side -1 or 1, sid_mm > 0 (.inf: parallel)",
            )
    return views


def _devices(table: Any, cov, where: str) -> dict[str, DeviceProfile]:
    devices = _by_value(table, cov, DeviceProfile, where)
    for value, profile in devices.items():
        if profile.marker_corner not in CORNERS:
            raise ConfigError(
                f"{where}.{value}.marker_corner={profile.marker_corner!r} is not one of {list(CORNERS)}"
                f"{did_you_mean(profile.marker_corner, CORNERS)}",
                "pick a corner",
            )
        if not profile.window[0] < profile.window[1] or profile.contrast <= 0:
            raise ConfigError(
                f"{where}.{value}: window must increase and contrast be > 0, got "
                f"{profile.window}, {profile.contrast}",
                "fix the device profile",
            )
    return devices


def _subject(entry: Any, sex_cov, where: str) -> SubjectVariation:
    variation = dataclass_from_dict(SubjectVariation, entry, where=where)
    for value in variation.body_size:
        sex_cov.check(value, where=f"{where}.body_size")
    return variation
