"""A synthetic ``samples.parquet`` in the release layout, for benchmarks and for trying specs at scale.

Each family is a factual sample plus counterfactuals: sex flipped, every other device, the target finding
toggled (``kind``, ``parent``, ``changed``, ``label`` as `synthfair finalize` writes them). Covariates are
drawn with the confounding of the phantom's world: race varies by site, cardiomegaly is more common with
age and for black patients, and sites prefer devices.

    frame = synthetic_samples(families=150_000, seed=0)       # ~1.05M rows
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SEXES = ("female", "male")
RACES = ("white", "black", "asian", "hispanic", "other")
DEVICES = ("carestream", "fujifilm", "ge", "philips", "siemens")
VIEWS = ("PA", "AP", "LATERAL")


def synthetic_samples(families: int, seed: int = 0, shard_size: int = 1000) -> pd.DataFrame:
    """``families`` factual rows and their counterfactuals, in plan order, cut into shards."""
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 3, families)
    race_p = np.array([[0.7, 0.1, 0.1, 0.05, 0.05], [0.3, 0.5, 0.05, 0.1, 0.05], [0.4, 0.1, 0.3, 0.15, 0.05]])
    race = _draw(rng, race_p[site])
    sex = rng.integers(0, 2, families)
    age = np.clip(rng.normal(60, 15, families), 18, 95).round(1)
    device_p = np.array([[0.5, 0.2, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.2, 0.1], [0.1, 0.1, 0.1, 0.2, 0.5]])
    device = _draw(rng, device_p[site])
    view = _draw(rng, np.tile([0.6, 0.3, 0.1], (families, 1)))
    logit = -2.2 + 0.04 * (age - 60) + 0.9 * (race == 1)
    cardio = (rng.random(families) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    split = np.array(["train", "validate", "test"])[_draw(rng, np.tile([0.8, 0.1, 0.1], (families, 1)))]
    factual = pd.DataFrame(
        {
            "family": [f"synth_{i:08d}" for i in range(families)],
            "sex": np.array(SEXES)[sex],
            "race": np.array(RACES)[race],
            "age": age,
            "device": np.array(DEVICES)[device],
            "view": np.array(VIEWS)[view],
            "findings.cardiomegaly": cardio,
            "split": split,
        }
    )
    factual["patient"] = factual["family"]
    members = [_member(factual, "factual", None, None)]
    flipped = factual.assign(sex=np.where(factual["sex"] == "female", "male", "female"))
    members.append(_member(flipped, "counterfactual", "sex", flipped["sex"]))
    for value in DEVICES:
        other = factual[factual["device"] != value].assign(device=value)
        members.append(_member(other, "counterfactual", "device", other["device"]))
    finding = "findings.cardiomegaly"
    toggled = factual.assign(**{finding: (1 - factual[finding]).astype(np.int8)})
    members.append(_member(toggled, "counterfactual", finding, toggled[finding]))
    frame = pd.concat(members, ignore_index=True)
    frame = frame.sort_values(["family", "key"], kind="stable").reset_index(drop=True)
    frame["shard"] = (np.arange(len(frame)) // shard_size).astype(np.int32)
    frame["sample_hash"] = [_hash(k) for k in frame["key"]]
    return frame


def _member(frame: pd.DataFrame, kind: str, covariate: str | None, values) -> pd.DataFrame:
    out = frame.copy()
    out["kind"] = kind
    if covariate is None:
        out["key"] = out["family"] + "_f"
        out["parent"] = None
        out["label"] = "factual"
        out["changed"] = [[] for _ in range(len(out))]
    else:
        suffix = {"sex": "s", "device": "d", "findings.cardiomegaly": "c"}[covariate]
        tag = values.astype(str).str.replace(".", "", regex=False)
        out["key"] = out["family"] + f"_c{suffix}" + tag
        out["parent"] = out["family"] + "_f"
        out["label"] = f"{covariate}=" + values.astype(str)
        out["changed"] = [[covariate] for _ in range(len(out))]
    return out


def _draw(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    return (rng.random((len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1)


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"synthfair\x00{key}".encode()).digest()[:8], "big") >> 1
