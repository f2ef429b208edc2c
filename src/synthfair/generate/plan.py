"""Plan a generation job: which factual images, which interventions, which shard and seed for every sample.

A plan spec (YAML, or `PlanSpec` in Python)::

    seed: 0                      # run seed: every sample's seed is a hash of (seed, key)
    shard_size: 1000             # samples per shard
    include_factual: true        # each family holds its factual image (kind "factual", no model)
    include_reconstruction: true # ... and the null intervention through the model (kind "reconstruction")
    select:
      splits: [test]             # [] = every split
      datasets: []               # [] = every dataset of the index
      where:                     # covariate filters: categorical -> allowed values, continuous -> [lo, hi]
        view: [PA, AP]
        age: [18, 90]
      limit: 1000                # at most this many factual images, by sample_hash (a seeded random choice)
    interventions:               # each item: one or more interventions (a list of values: one per value)
      - sex: flip                # every other value of sex (flip and all: values the index holds)
      - age: [25, 50, 85]
      - findings: toggle         # every finding label, each flipped from its factual value
      - findings.cardiomegaly: [0, 1]
      - device: all              # every value of device
      - {sex: flip, age: 80}     # keys in one item combine: the product of their values

An intervention that would not change the factual covariates (device: all includes the factual's own
device) is left out and counted. The plan has one row per output sample, in family order (dataset,
sample_key), cut into shards of ``shard_size`` rows; keys are ``<sample_key>_f`` (factual), ``_r``
(reconstruction) and ``_c<NNN>`` (the family's NNN-th counterfactual). Each row carries everything
generation needs (image path, factual covariates, intervention, seed), so ``generate`` reads the plan and
the images only. Phantom rows carry the subject's noise id, to re-render the exact counterfactual.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import synthfair
from synthfair.causal.scm import index_records
from synthfair.config import config_to_dict, dataclass_from_dict, read_yaml
from synthfair.errors import ConfigError, SynthfairError, did_you_mean
from synthfair.fileio import atomic_write
from synthfair.index import sample_hash
from synthfair.release.layout import PLAN_COLUMNS, PLAN_SCHEMA
from synthfair.release.layout import read_plan as read_plan  # the plan file format is the release's
from synthfair.selection import unknown_covariate, where_mask
from synthfair.taxonomy import Covariate, Taxonomy, load_taxonomy

KEYWORDS = {
    "flip": "every other observed value",
    "all": "every observed value",
    "toggle": "each label flipped",
}


@dataclass(frozen=True)
class Selection:
    splits: tuple[str, ...] = ()  # () = all
    datasets: tuple[str, ...] = ()  # () = all
    where: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None


@dataclass(frozen=True)
class PlanSpec:
    select: Selection = field(default_factory=Selection)
    interventions: tuple[dict[str, Any], ...] = ()
    include_factual: bool = True
    include_reconstruction: bool = True
    shard_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"plan shard_size must be >= 1, got {self.shard_size}", "use e.g. 1000")
        if self.select.limit is not None and self.select.limit < 1:
            raise ConfigError(f"plan select.limit must be >= 1, got {self.select.limit}", "or leave it out")


@dataclass(frozen=True)
class Plan:
    table: pa.Table  # PLAN_COLUMNS
    spec: PlanSpec
    factual_images: int
    skipped_noop: int  # interventions left out because they would not change the factual covariates

    @property
    def shards(self) -> int:
        return int(pc.max(self.table["shard"]).as_py()) + 1 if self.table.num_rows else 0

    def summary(self) -> str:
        kinds = pd.Series(self.table["kind"].to_pylist()).value_counts()
        parts = ", ".join(f"{kinds.get(k, 0)} {k}" for k in ("factual", "reconstruction", "counterfactual"))
        return (
            f"plan: {self.table.num_rows} samples ({parts}) from {self.factual_images} factual images "
            f"in {self.shards} shards of up to {self.spec.shard_size}; {self.skipped_noop} no-op "
            "interventions left out"
        )


def load_plan_spec(path: str | Path) -> PlanSpec:
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: a plan spec is a mapping, got {type(data).__name__}", "see docs/generation.md"
        )
    return dataclass_from_dict(PlanSpec, data, where=str(path))


def make_plan(index: pd.DataFrame, spec: PlanSpec, taxonomy: Taxonomy | None = None) -> Plan:
    """The plan of ``spec`` over the index rows ``index`` (see the module docstring)."""
    taxonomy = taxonomy or load_taxonomy()
    items = [_parse_item(item, i, taxonomy) for i, item in enumerate(spec.interventions)]
    observed = _observed_values(index, taxonomy)
    chosen = _select(index, spec.select, taxonomy)
    if chosen.empty:
        raise ConfigError(
            f"plan select {config_to_dict(spec.select)} matches none of the index's {len(index)} images",
            "widen select (splits, datasets, where); `synthfair index stats INDEX` shows the index",
        )
    records = index_records(taxonomy, chosen)
    phantoms = _phantom_ids(chosen)
    rows: list[dict[str, Any]] = []
    skipped = 0
    for (_, row), factual, phantom in zip(chosen.iterrows(), records, phantoms, strict=True):
        family = str(row["sample_key"])
        if "." in family:
            raise SynthfairError(
                f"sample_key {family!r} contains a dot; WebDataset cuts keys at the first dot",
                "re-ingest with a current synthfair (its keys are dot-free)",
            )
        base = {
            "family": family,
            "dataset": row["dataset"],
            "source_id": row["source_id"],
            "patient": None if pd.isna(row.get("patient_key")) else str(row["patient_key"]),
            "split": row["split"],
            "image": str(Path(row["image_root"]) / row["image_path"]),
            "factual": json.dumps(factual, sort_keys=True),
            "phantom": json.dumps(phantom, sort_keys=True) if phantom else None,
        }
        if spec.include_factual:
            rows.append(
                {
                    **base,
                    "key": f"{family}_f",
                    "kind": "factual",
                    "parent": None,
                    "intervention": "{}",
                    "label": "factual",
                }
            )
        if spec.include_reconstruction:
            rows.append(
                {
                    **base,
                    "key": f"{family}_r",
                    "kind": "reconstruction",
                    "parent": f"{family}_f",
                    "intervention": "{}",
                    "label": "null",
                }
            )
        dos, noop = _family_interventions(items, factual, observed)
        skipped += noop
        for j, do in enumerate(dos):
            rows.append(
                {
                    **base,
                    "key": f"{family}_c{j:03d}",
                    "kind": "counterfactual",
                    "parent": f"{family}_f",
                    "intervention": json.dumps(do, sort_keys=True),
                    "label": label_of(do),
                }
            )
    for i, row in enumerate(rows):
        row["shard"] = i // spec.shard_size
        row["seed"] = sample_seed(spec.seed, row["key"])
        row["sample_hash"] = sample_hash("synthfair", row["key"])
    table = pa.Table.from_pylist(rows, schema=PLAN_COLUMNS)
    return Plan(table, spec, len(chosen), skipped)


def write_plan(plan: Plan, path: str | Path, index_dir: str | Path | None = None) -> None:
    meta = {
        "schema": PLAN_SCHEMA,
        "spec": config_to_dict(plan.spec),
        "factual_images": plan.factual_images,
        "skipped_noop": plan.skipped_noop,
        "synthfair_version": synthfair.__version__,
    }
    if index_dir is not None:
        meta["index"] = str(Path(index_dir).resolve())
    table = plan.table.replace_schema_metadata({"synthfair": json.dumps(meta, sort_keys=True)})
    atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))


def sample_seed(run_seed: int, key: str) -> int:
    """A 63-bit seed from (run seed, sample key): the same wherever and in whatever order it is generated."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{key}".encode()).digest()[:8], "big") >> 1


def label_of(do: Mapping[str, Any]) -> str:
    """``{"age": 80.0, "findings": {"cardiomegaly": 1}}`` -> ``"age=80,findings.cardiomegaly=1"``."""
    parts = []
    for name in sorted(do):
        value = do[name]
        if isinstance(value, Mapping):
            parts += [f"{name}.{label}={v}" for label, v in sorted(value.items())]
        else:
            parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ",".join(parts)


# -- selection ----------------------------------------------------------------------------------------------
def _select(index: pd.DataFrame, select: Selection, taxonomy: Taxonomy) -> pd.DataFrame:
    keep = np.ones(len(index), bool)
    for what, column, wanted in (("split", "split", select.splits), ("dataset", "dataset", select.datasets)):
        if wanted:
            present = sorted(index[column].dropna().unique())
            unknown = [w for w in wanted if w not in present]
            if unknown:
                raise ConfigError(
                    f"plan select.{what}s: {unknown} not in the index{did_you_mean(unknown[0], present)}",
                    f"the index has {what}s {present}",
                )
            keep &= index[column].isin(wanted).to_numpy()
    for name, allowed in select.where.items():
        keep &= where_mask(index, name, allowed, taxonomy, f"plan select.where.{name}")
    chosen = index[keep]
    if select.limit is not None and len(chosen) > select.limit:
        chosen = chosen.nsmallest(select.limit, "sample_hash")
    return chosen.sort_values(["dataset", "sample_key"], kind="stable").reset_index(drop=True)


# -- interventions ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Option:
    """One key of an intervention item: the covariate, and its values (or a keyword resolved per family)."""

    covariate: Covariate
    label: str | None  # a finding label, for findings.<label> keys
    values: tuple[Any, ...] | str  # checked values, or a keyword of KEYWORDS


def _parse_item(item: Any, i: int, taxonomy: Taxonomy) -> list[_Option]:
    where = f"plan interventions[{i}]"
    if not isinstance(item, Mapping) or not item:
        raise ConfigError(
            f"{where}: {item!r} is not a mapping of covariate -> value(s)", "e.g. - age: [25, 85]"
        )
    return [_parse_option(str(name), value, f"{where}.{name}", taxonomy) for name, value in item.items()]


def _parse_option(name: str, value: Any, where: str, taxonomy: Taxonomy) -> _Option:
    base, _, label = name.partition(".")
    if base not in taxonomy:
        raise unknown_covariate(name, where, taxonomy)
    spec = taxonomy[base]
    if spec.kind == "multilabel" and not label and value != "toggle":
        raise ConfigError(
            f"{where}: {value!r}: a finding intervention names its label or says toggle",
            f"use {base}.<label>: [0, 1] (labels: {', '.join(spec.values)}) or {base}: toggle",
        )
    if label and spec.kind != "multilabel":
        raise unknown_covariate(name, where, taxonomy)
    if isinstance(value, str) and value in KEYWORDS:
        allowed = {"categorical": ("flip", "all"), "multilabel": ("toggle",), "continuous": ()}[spec.kind]
        if label:
            allowed = ("toggle",)
        if value not in allowed:
            raise ConfigError(
                f"{where}: {value!r} does not apply to {spec.kind} {name!r}",
                f"use {' or '.join(allowed) or 'a value or a list of values'} "
                f"({', '.join(f'{k}: {v}' for k, v in KEYWORDS.items() if k in allowed)})",
            )
        return _Option(spec, label or None, value)
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise ConfigError(f"{where}: an empty list", "give at least one value")
    if label:
        checked = tuple(spec.check({label: v}, where=where)[label] for v in values)
    else:
        checked = tuple(spec.check(v, where=where) for v in values)
    return _Option(spec, label or None, checked)


def _family_interventions(
    items: Sequence[list[_Option]], factual: Mapping[str, Any], observed: Mapping[str, tuple[str, ...]]
) -> tuple[list[dict[str, Any]], int]:
    """The family's interventions in spec order, no-ops and repeats left out; (dos, how many no-ops)."""
    dos: list[dict[str, Any]] = []
    seen: set[str] = set()
    noop = 0
    for item in items:
        for combo in itertools.product(*(list(_expand(o, factual, observed)) for o in item)):
            do: dict[str, Any] = {}
            for part in combo:
                for name, value in part.items():
                    do[name] = {**do[name], **value} if isinstance(value, dict) and name in do else value
            if _is_noop(do, factual):
                noop += 1
                continue
            text = json.dumps(do, sort_keys=True)
            if text not in seen:
                seen.add(text)
                dos.append(do)
    return dos, noop


def _expand(
    option: _Option, factual: Mapping[str, Any], observed: Mapping[str, tuple[str, ...]]
) -> Iterator[dict[str, Any]]:
    spec, name = option.covariate, option.covariate.name
    if option.values == "toggle":
        labels = [option.label] if option.label else list(spec.values)
        current = factual.get(name) or {}
        for label in labels:
            yield {name: {label: 0 if current.get(label) == 1 else 1}}
    elif option.values == "flip":
        yield from ({name: v} for v in observed[name] if v != factual.get(name))
    elif option.values == "all":
        yield from ({name: v} for v in observed[name])
    elif option.label:
        yield from ({name: {option.label: v}} for v in option.values)
    else:
        yield from ({name: v} for v in option.values)


def _observed_values(index: pd.DataFrame, taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
    """Each categorical covariate's values that occur in the index, in taxonomy order: what flip and all
    range over (a value no image shows is an extrapolation; name it explicitly to generate it)."""
    return {
        spec.name: tuple(v for v in spec.values if v in set(index[spec.name].dropna()))
        for spec in taxonomy
        if spec.kind == "categorical"
    }


def _is_noop(do: Mapping[str, Any], factual: Mapping[str, Any]) -> bool:
    for name, value in do.items():
        if isinstance(value, Mapping):
            current = factual.get(name) or {}
            if any(current.get(label) != v for label, v in value.items()):
                return False
        elif factual.get(name) != value:
            return False
    return True


# -- phantom ------------------------------------------------------------------------------------------------
def _phantom_ids(chosen: pd.DataFrame) -> list[dict[str, Any] | None]:
    """Each phantom row's subject noise id (seed, index, noise_seed) with the phantom's config; else None.

    ``Phantom(PhantomConfig(**config)).subject(seed, index)`` is the subject again."""
    out: list[dict[str, Any] | None] = [None] * len(chosen)
    phantom = chosen.index[chosen["dataset"] == "phantom"]
    if len(phantom) == 0:
        return out
    by_root: dict[str, dict[str, dict[str, Any]]] = {}
    for position in phantom:
        root = str(chosen.at[position, "image_root"])
        if root not in by_root:
            by_root[root] = _phantom_subjects(Path(root))
        key = str(chosen.at[position, "source_id"])
        if key not in by_root[root]:
            raise SynthfairError(
                f"phantom subject {key!r} is not in {root}/subjects.parquet",
                "re-render the phantom source with `synthfair phantom` and re-ingest it",
            )
        out[position] = by_root[root][key]
    return out


def _phantom_subjects(root: Path) -> dict[str, dict[str, Any]]:
    subjects, provenance = root / "subjects.parquet", root / "provenance.json"
    if not subjects.is_file() or not provenance.is_file():
        raise SynthfairError(
            f"the phantom source at {root} has no subjects.parquet or provenance.json",
            "re-render it with `synthfair phantom` (an unfinished source lacks provenance.json)",
        )
    record = json.loads(provenance.read_text())
    config = {
        "config": record.get("config"),
        "spec_sha256": record.get("phantom_spec_sha256"),
        "size": record.get("size"),  # the source's render size (the factual was fitted from it)
    }
    table = pq.read_table(subjects, columns=["key", "seed", "index", "noise_seed"]).to_pylist()
    return {
        r["key"]: {"seed": r["seed"], "index": r["index"], "noise_seed": r["noise_seed"], **config}
        for r in table
    }
