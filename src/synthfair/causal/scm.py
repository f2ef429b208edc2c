"""The fitted attribute SCM: one `synthfair.causal.mechanisms` mechanism per covariate of the taxonomy.

    scm = AttributeSCM(taxonomy).fit(index, seed=0)       # index: the DataFrame of `synthfair.index`
    noise = scm.abduct(obs, generator)                    # U ~ P(U | obs), one array per covariate
    cf = scm.counterfactual(obs, {name: value}, generator)  # abduction, action, prediction
    scm.do({multilabel_name: {label: 1}}).sample(100, generator)  # one label set, the others sampled

Covariate values are the taxonomy's: categorical strings, continuous floats, multilabel dicts label -> 0/1;
``None`` is missing. Names, kinds, domains and parents all come from the taxonomy (taxonomy.yaml's graph).

Counterfactuals (Pearl's three steps) for an observed record ``obs`` and interventions ``do``:

1. Abduction under the fitted, un-intervened equations: ``U_V ~ P(U_V | V = obs_V, pa(V) = obs_pa(V))``
   (exact for continuous, posterior-consistent Gumbel / logistic noise for discrete; prior where missing).
2. Action: intervened covariates are constants cut from their parents; a multilabel covariate may be
   intervened per label, its other labels keep their mechanism.
3. Prediction in topological order: ``V* = do_V`` if intervened; ``V* = obs_V`` exactly if no parent of V
   changed (so non-descendants, and descendants whose parents end up unchanged, keep the observed value,
   ``None`` included); otherwise ``V* = f_V(pa*(V), U_V)``. A missing observed value stays missing (its
   prior noise only serves sampling); the labels of a multilabel covariate are treated one by one.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import synthfair
from synthfair.causal.mechanisms import MECHANISMS, ParentFeatures
from synthfair.config import dataclass_from_dict
from synthfair.errors import ConfigError, SynthfairError
from synthfair.fileio import atomic_write
from synthfair.taxonomy import Covariate, Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

SCHEMA = "synthfair.attribute-scm/1"
FILE = "scm.json"


@dataclass(frozen=True)
class SCMConfig:
    l2: float = 1e-4  # L2 penalty on weights: mean NLL + l2 / 2 * |W|^2 (intercepts free)
    max_iter: int = 500  # BFGS iterations per fit (per label for multilabel)
    tol: float = 1e-8  # BFGS tolerance on the largest gradient entry
    unseen_logit: float = -50.0  # logit of values never seen in training: probability ~exp(-50)
    margin: float = 1e-3  # continuous: eps of z = logit((x - lo + eps) / (hi - lo + 2 eps)), x range units
    max_fit_rows: int | None = None  # fit on a seeded random subset of at most this many rows (None: all)

    def __post_init__(self) -> None:
        rules = {  # field: (holds, requirement)
            "l2": (lambda v: v >= 0, "a number >= 0"),
            "max_iter": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
            "tol": (lambda v: v > 0, "a number > 0"),
            "unseen_logit": (lambda v: -1000 <= v <= -10, "a number in [-1000, -10]"),
            "margin": (lambda v: 0 < v < 0.5, "a number in (0, 0.5)"),
            "max_fit_rows": (lambda v: isinstance(v, int) and v >= 1, "None or an integer >= 1"),
        }
        for name, (holds, requirement) in rules.items():
            value = getattr(self, name)
            if value is None and name == "max_fit_rows":
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
            if not number or not holds(value):
                raise ConfigError(f"SCMConfig.{name}={value!r} is invalid", f"{name} must be {requirement}")


@dataclass(frozen=True, eq=False)
class CounterfactualCovariates:
    """One counterfactual record: its covariates, which of them differ from the factual, and the noise."""

    covariates: dict[str, Any]
    changed: tuple[str, ...]
    noise: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Node:
    features: ParentFeatures
    mechanism: Any  # one of mechanisms.MECHANISMS


class AttributeSCM:
    """Structural equations over the taxonomy's covariates, fitted on an index; see the module docstring."""

    def __init__(self, taxonomy: Taxonomy, config: SCMConfig | None = None):
        self.taxonomy = taxonomy
        self.config = config or SCMConfig()
        self.order = taxonomy.topological_order()
        self.interventions: dict[str, np.ndarray | int | float] = {}  # encoded, set by do()

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, index: pd.DataFrame, seed: int = 0) -> AttributeSCM:
        """Fit every mechanism in topological order on the rows where its covariate is observed."""
        columns = encode_index(self.taxonomy, index)
        n = len(index)
        if self.config.max_fit_rows is not None and n > self.config.max_fit_rows:
            keep = np.sort(np.random.default_rng(seed).choice(n, self.config.max_fit_rows, replace=False))
            columns, n = {k: v[keep] for k, v in columns.items()}, len(keep)
        self.seed_, self.nodes_, self.n_fit_ = seed, {}, {}
        for name in self.order:
            spec = self.taxonomy[name]
            observed = ~_missing(spec, columns[name])
            parents = {p: columns[p][observed] for p in spec.parents}
            features = ParentFeatures([self.taxonomy[p] for p in spec.parents]).fit(parents)
            X = features.transform(parents, int(observed.sum()))
            self.nodes_[name] = _Node(features, self._mechanism(spec).fit(X, columns[name][observed]))
            self.n_fit_[name] = int(observed.sum())
            if self.n_fit_[name] == 0:
                logger.warning("covariate %r is missing in every row: its mechanism is the prior", name)
        return self

    def _mechanism(self, spec: Covariate):
        c = self.config
        common = {"l2": c.l2, "max_iter": c.max_iter, "tol": c.tol}
        if spec.kind == "continuous":
            lo, hi = spec.range
            return MECHANISMS["continuous"](lo, hi, c.margin * (hi - lo), **common)
        return MECHANISMS[spec.kind](len(spec.values), **common, unseen_logit=c.unseen_logit)

    # -- abduction, action, prediction -----------------------------------------------------------------
    def abduct(self, obs: Mapping[str, Any], generator: np.random.Generator) -> dict[str, np.ndarray]:
        """Exogenous noise of one record, drawn from its posterior under the un-intervened equations."""
        return {k: v[0] for k, v in self.abduct_batch([obs], generator).items()}

    def abduct_batch(
        self,
        records: Sequence[Mapping[str, Any]],
        generator: np.random.Generator | Sequence[np.random.Generator],
    ) -> dict[str, np.ndarray]:
        """Noise of many records: covariate -> (n, noise size).

        One generator (or seed) for the batch: draws depend on the batch. One generator per record: each
        record's noise depends on its own generator only, whatever else is in the batch."""
        if isinstance(generator, Sequence):
            if len(generator) != len(records):
                raise SynthfairError(
                    f"{len(generator)} generators for {len(records)} records", "give one per record, or one"
                )
            parts = [self._abduct(records[i : i + 1], g) for i, g in enumerate(generator)]
            return {name: np.concatenate([p[name] for p in parts]) for name in self.order}
        return self._abduct(records, np.random.default_rng(generator))

    def _abduct(self, records, generator: np.random.Generator) -> dict[str, np.ndarray]:
        columns, n = encode_records(self.taxonomy, records), len(records)
        noise = {}
        for name in self.order:
            node = self._node(name)
            noise[name] = node.mechanism.abduct(node.features.transform(columns, n), columns[name], generator)
        return noise

    def do(self, interventions: Mapping[str, Any]) -> AttributeSCM:
        """A copy where each intervened covariate is a constant cut from its parents.

        A multilabel covariate takes a mapping ``{label: 0 or 1}`` (those labels set, the others keep their
        mechanism) or a collection of positive labels (every label set). Values are checked against the
        taxonomy; interventions add to (and override) this SCM's own."""
        out = copy.copy(self)
        out.interventions = dict(self.interventions)
        for name, value in interventions.items():
            code = encode_value(self.taxonomy[name], value, where=f"do({name})")
            if _missing(self.taxonomy[name], np.asarray(code)).all():
                raise ConfigError(
                    f"do({name}={value!r}): an intervention needs a value",
                    f"use {self.taxonomy[name].domain}",
                )
            old = out.interventions.get(name)
            if self.taxonomy[name].kind == "multilabel" and old is not None:
                code = np.where(np.isnan(code), old, code)
            out.interventions[name] = code
        return out

    def predict(self, noise: Mapping[str, np.ndarray], obs: Mapping[str, Any] | None = None) -> dict:
        """Covariates from one record's noise under this SCM's interventions (see the module docstring).

        With ``obs`` (the factual record), covariates whose parents did not change keep its values."""
        batch = {k: np.asarray(v)[None] for k, v in noise.items()}
        return self.predict_batch(batch, None if obs is None else [obs])[0]

    def predict_batch(
        self, noise: Mapping[str, np.ndarray], records: Sequence[Mapping[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Records from noise, covariate -> (n, noise size); ``records``: the factual ones, if any."""
        values, differs = self._run(noise, records)
        return self._records(values, differs, records)

    def _run(self, noise, records) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Step 3 of the module docstring: encoded values and, per covariate, rows differing from records."""
        n = len(next(iter(noise.values())))
        factual = None if records is None else encode_records(self.taxonomy, records)
        values, differs = {}, {}
        for name in self.order:
            spec, node = self.taxonomy[name], self._node(name)
            value = node.mechanism.predict(node.features.transform(values, n), noise[name])
            if factual is not None:
                moved = np.zeros(n, bool)  # a parent's value changed
                for p in spec.parents:
                    moved |= differs[p]
                moved = moved[:, None] if spec.kind == "multilabel" else moved
                observed = ~_missing(spec, factual[name], per_label=True)
                value = np.where(moved & observed, value, factual[name])  # missing stays missing
            if name in self.interventions:
                do = self.interventions[name]
                value = np.where(np.isnan(do), value, do) if spec.kind == "multilabel" else np.full(n, do)
            values[name] = value
            differs[name] = np.ones(n, bool) if factual is None else _differs(spec, value, factual[name])
        return values, differs

    def _records(self, values, differs, records) -> list[dict[str, Any]]:
        """Decoded records; a value equal to the factual one is the factual object itself (copied)."""
        n = len(next(iter(values.values())))
        return [
            {
                name: decode_value(self.taxonomy[name], values[name][i])
                if differs[name][i]
                else copy.copy(records[i].get(name))
                for name in self.order
            }
            for i in range(n)
        ]

    def counterfactual(
        self, obs: Mapping[str, Any], interventions: Mapping[str, Any], generator: np.random.Generator
    ) -> CounterfactualCovariates:
        """Abduct ``obs``'s noise, intervene, predict: the counterfactual record and what changed."""
        return self.counterfactual_batch([obs], interventions, generator)[0]

    def counterfactual_batch(
        self,
        records: Sequence[Mapping[str, Any]],
        interventions: Mapping[str, Any],
        generator: np.random.Generator | Sequence[np.random.Generator],
    ) -> list[CounterfactualCovariates]:
        """`counterfactual` for many records; ``generator``: one for the batch or one per record."""
        scm = self.do(interventions)  # checks the interventions before drawing noise
        noise = self.abduct_batch(records, generator)
        values, differs = scm._run(noise, records)
        return [
            CounterfactualCovariates(
                covariates=cov,
                changed=tuple(name for name in self.order if differs[name][i]),
                noise={k: v[i] for k, v in noise.items()},
            )
            for i, cov in enumerate(scm._records(values, differs, records))
        ]

    def sample_noise(self, n: int, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """Prior noise of n records, covariate -> (n, noise size), drawn in topological order."""
        generator = np.random.default_rng(generator)
        return {name: self._node(name).mechanism.sample_noise(n, generator) for name in self.order}

    def sample(self, n: int, generator: np.random.Generator) -> list[dict[str, Any]]:
        """n records from the (intervened) SCM."""
        return self.predict_batch(self.sample_noise(n, generator))

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``scm.json`` (config, taxonomy hash, per-node state; deterministic bytes) into directory."""
        path = Path(directory) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "schema": SCHEMA,
            "synthfair_version": synthfair.__version__,
            "taxonomy_sha256": self.taxonomy.sha256,  # provenance
            "model_sha256": self.taxonomy.model_sha256,  # checked on load: covariate domains and graph
            "seed": self._fitted("seed_"),
            "config": asdict(self.config),
            "interventions": {k: decode_value(self.taxonomy[k], v) for k, v in self.interventions.items()},
            "nodes": {
                name: {
                    "kind": self.taxonomy[name].kind,
                    "n_fit": self.n_fit_[name],
                    "features": self._node(name).features.state_dict(),
                    "mechanism": self._node(name).mechanism.state_dict(),
                }
                for name in self.order
            },
        }
        atomic_write(path, lambda f: f.write((_dumps(state) + "\n").encode()))
        return path

    @classmethod
    def load(cls, directory: str | Path, taxonomy: Taxonomy | None = None) -> AttributeSCM:
        """Read a saved SCM; the taxonomy (default: the packaged one) must be the one it was fitted with."""
        path = Path(directory) / FILE
        if not path.is_file():
            raise SynthfairError(f"no attribute SCM at {directory} ({FILE} not found)", "fit and save() one")
        state = json.loads(path.read_text())
        if state.get("schema") != SCHEMA:
            raise SynthfairError(f"{path}: unsupported schema {state.get('schema')!r}", f"expected {SCHEMA}")
        taxonomy = taxonomy or load_taxonomy()
        if state["model_sha256"] != taxonomy.model_sha256:
            raise SynthfairError(
                f"{path} was fitted with taxonomy covariates {state['model_sha256'][:12]}..., but the given "
                f"taxonomy ({taxonomy.path or 'in memory'}) has {taxonomy.model_sha256[:12]}...",
                "load with the taxonomy.yaml it was fitted with, or refit the SCM on the current index",
            )
        scm = cls(taxonomy, dataclass_from_dict(SCMConfig, state["config"], where=f"{path}:config"))
        scm.seed_, scm.nodes_, scm.n_fit_ = state["seed"], {}, {}
        for name in scm.order:
            node = state["nodes"][name]
            parents = [taxonomy[p] for p in taxonomy.parents(name)]
            mechanism = MECHANISMS[node["kind"]].from_state_dict(node["mechanism"])
            scm.nodes_[name] = _Node(ParentFeatures.from_state_dict(parents, node["features"]), mechanism)
            scm.n_fit_[name] = node["n_fit"]
        return scm.do(state["interventions"])

    def _fitted(self, attribute: str) -> Any:
        if not hasattr(self, attribute):
            raise SynthfairError(
                "the attribute SCM is not fitted", "call fit(index) or AttributeSCM.load(dir)"
            )
        return getattr(self, attribute)

    def _node(self, name: str) -> _Node:
        return self._fitted("nodes_")[name]


# -- encoding: covariate values <-> arrays (categorical codes / -1, floats / NaN, label matrices / NaN) ---
def encode_value(spec: Covariate, value: Any, where: str = "") -> Any:
    """One checked value as its code: int (-1 missing), float (NaN), or (L,) float (NaN per missing label)."""
    value = spec.check(value, where)
    if spec.kind == "categorical":
        return -1 if value is None else spec.values.index(value)
    if spec.kind == "continuous":
        return np.nan if value is None else value
    return np.array([(value or {}).get(label, np.nan) for label in spec.values], dtype=float)


def decode_value(spec: Covariate, code: Any) -> Any:
    """Inverse of `encode_value`; a multilabel dict lists every label (None: missing); none known: None."""
    if spec.kind == "categorical":
        return None if code < 0 else spec.values[int(code)]
    if spec.kind == "continuous":
        return None if np.isnan(code) else float(code)
    if np.isnan(code).all():
        return None
    return {label: None if np.isnan(c) else int(c) for label, c in zip(spec.values, code, strict=True)}


def encode_records(taxonomy: Taxonomy, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Records (covariate -> value; absent = missing) as one array per covariate."""
    for record in records:
        for name in record:
            taxonomy[name]  # an unknown covariate raises, with did-you-mean
    columns = {}
    for spec in taxonomy:
        codes = [encode_value(spec, r.get(spec.name), where=f"record {i}") for i, r in enumerate(records)]
        column = np.array(codes, dtype=int if spec.kind == "categorical" else float)
        columns[spec.name] = column.reshape(len(records), -1) if spec.kind == "multilabel" else column
    return columns


def encode_index(taxonomy: Taxonomy, index: pd.DataFrame) -> dict[str, np.ndarray]:
    """The index DataFrame's covariate columns (``<name>``, ``<name>.<label>``) as arrays."""
    columns = {}
    for spec in taxonomy:
        names = list(taxonomy.columns(spec.name))
        absent = [c for c in names if c not in index.columns]
        if absent:
            raise SynthfairError(
                f"the index has no column {absent[0]!r}", "build it with `synthfair ingest` and this taxonomy"
            )
        if spec.kind == "categorical":
            codes = pd.Categorical(index[spec.name], categories=list(spec.values)).codes.astype(int)
            bad = (codes < 0) & index[spec.name].notna().to_numpy()
            if bad.any():
                spec.check(index[spec.name].to_numpy()[bad][0], where=f"index row {np.flatnonzero(bad)[0]}")
            columns[spec.name] = codes
            continue
        x = index[names].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        if spec.kind == "continuous":
            x = x[:, 0]
            bad = ~np.isnan(x) & ((x < spec.range[0]) | (x > spec.range[1]))
            if bad.any():
                spec.check(x[bad][0], where=f"index row {np.flatnonzero(bad)[0]}")
        columns[spec.name] = x
    return columns


def index_records(taxonomy: Taxonomy, index: pd.DataFrame) -> list[dict[str, Any]]:
    """The index's rows as covariate records (missing = None)."""
    columns = encode_index(taxonomy, index)
    return [
        {spec.name: decode_value(spec, columns[spec.name][i]) for spec in taxonomy} for i in range(len(index))
    ]


def _missing(spec: Covariate, codes: np.ndarray, per_label: bool = False) -> np.ndarray:
    """Rows (or, per_label, entries) that are missing; a multilabel row is missing when every label is."""
    if spec.kind == "categorical":
        return codes < 0
    missing = np.isnan(codes)
    return missing if spec.kind == "continuous" or per_label else missing.all(axis=-1)


def _differs(spec: Covariate, new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """(n,) rows whose value differs, missing == missing."""
    if spec.kind == "categorical":
        return new != old
    same = (new == old) | (np.isnan(new) & np.isnan(old))
    return ~same if spec.kind == "continuous" else ~same.all(axis=1)


def _dumps(data: Any, indent: int = 0) -> str:
    """JSON with one line per list of numbers (readable matrices); deterministic for the same data."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(data, Mapping) and data:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, indent + 2)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list) and data and any(isinstance(v, (Mapping, list)) for v in data):
        return "[\n" + ",\n".join(f"{inner}{_dumps(v, indent + 2)}" for v in data) + f"\n{pad}]"
    return json.dumps(data)
