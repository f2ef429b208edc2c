"""The phantom's structural causal model over the taxonomy's covariates, with explicit exogenous noise.

Every covariate ``V`` with parents ``pa(V)`` (taxonomy.yaml's graph) has one structural equation
``V = f_V(pa(V), U_V)``; the parameters come from the ``scm`` section of phantom.yaml, keyed by covariate
name, so this module names no covariate. Each equation adds parent *effects* to a logit ``eta``:

    categorical   V = argmax_k (eta_k + U_k),              U_k ~ Gumbel(0, 1)     (Gumbel-max)
    continuous    V = lo + (hi - lo) * sigmoid(eta + s U),  U ~ Normal(0, 1)       (strictly increasing in U)
    multilabel    V_l = 1[eta_l + U_l > 0],                 U_l ~ Logistic(0, 1)   (one per simulated label)

``eta`` starts from the node's baseline (``logits``, ``intercept``) and adds, per parent:
a categorical parent's value -> offset; a continuous parent -> ``coef * (x - center) / per``; a
multilabel parent -> the offsets of its positive labels. For a categorical child an offset is a mapping
child value -> number. Categories without a baseline logit have probability zero.

Because ``U`` is stored per subject, ``predict(U, do)`` gives exact counterfactuals: intervened nodes
are cut from their parents and set; every descendant is recomputed from its (new) parents and its *own*
noise; everything else keeps its factual value. A multilabel node may be intervened per label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from synthfair.errors import ConfigError, did_you_mean
from synthfair.taxonomy import Covariate, Taxonomy

_NODE_KEYS = {
    "categorical": ("logits", "effects"),
    "continuous": ("lo", "hi", "intercept", "scale", "effects"),
    "multilabel": ("labels",),
}
_LABEL_KEYS = ("intercept", "effects")
_CONTINUOUS_EFFECT_KEYS = ("center", "per", "coef")


class PhantomSCM:
    """Structural equations of `synthfair.phantom.scm`'s module docstring, validated against a taxonomy."""

    def __init__(self, taxonomy: Taxonomy, spec: Mapping[str, Any], where: str = "phantom.yaml:scm"):
        self.taxonomy = taxonomy
        self.where = where
        unknown = [k for k in spec if k not in taxonomy]
        if unknown:
            raise _error(
                where,
                unknown[0],
                "is not a covariate of the taxonomy",
                f"use one of {list(taxonomy.names)}{did_you_mean(unknown[0], taxonomy.names)}",
            )
        missing = [n for n in taxonomy.names if n not in spec]
        if missing:
            raise _error(where, missing[0], "has no structural equation", "add an entry for every covariate")
        self.order = taxonomy.topological_order()
        self.nodes = {
            name: _parse_node(taxonomy[name], spec[name], taxonomy, f"{where}.{name}") for name in self.order
        }

    # -- noise ---------------------------------------------------------------------------------------
    def noise_size(self, name: str) -> int:
        node = self.nodes[name]
        if node["kind"] == "categorical":
            return len(node["cov"].values)
        return 1 if node["kind"] == "continuous" else len(node["labels"])

    def sample_noise(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw every node's exogenous noise, in topological order (so the stream is stable)."""
        out = {}
        for name in self.order:
            n, kind = self.noise_size(name), self.nodes[name]["kind"]
            if kind == "categorical":
                out[name] = rng.gumbel(size=n)
            elif kind == "continuous":
                out[name] = rng.standard_normal(size=n)
            else:
                out[name] = rng.logistic(size=n)
        return out

    # -- equations -------------------------------------------------------------------------------------
    def predict(
        self,
        noise: Mapping[str, np.ndarray],
        do: Mapping[str, Any] | None = None,
        factual: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Covariates from noise, under the intervention ``do`` (cut from parents, set to the given value).

        Nodes that are neither intervened nor descendants of an intervened node keep ``factual``'s value
        when given (they would anyway: same noise, same parents)."""
        do = self._check_do(do or {})
        affected = set(do)
        for name in do:
            affected.update(self.taxonomy.descendants(name))
        values: dict[str, Any] = {}
        for name in self.order:
            if factual is not None and name not in affected:
                values[name] = factual[name]
                continue
            values[name] = self._equation(name, values, noise[name], do.get(name))
        return values

    def _equation(self, name: str, parents: Mapping[str, Any], u: np.ndarray, do_value: Any) -> Any:
        node = self.nodes[name]
        if do_value is not None and node["kind"] != "multilabel":
            return do_value
        if node["kind"] == "categorical":
            eta = node["logits"] + self._effects(node["effects"], parents, node["cov"])
            return node["cov"].values[int(np.argmax(eta + u))]
        if node["kind"] == "continuous":
            eta = (
                node["intercept"]
                + float(self._effects(node["effects"], parents, None))
                + node["scale"] * u[0]
            )
            return float(node["lo"] + (node["hi"] - node["lo"]) / (1.0 + math.exp(-eta)))
        labels = dict.fromkeys(node["cov"].values, 0)
        for i, (label, spec) in enumerate(node["labels"].items()):
            eta = spec["intercept"] + float(self._effects(spec["effects"], parents, None))
            labels[label] = int(eta + u[i] > 0)
        labels.update(do_value or {})
        return labels

    def _effects(self, effects, parents, child: Covariate | None):
        total = np.zeros(len(child.values)) if child is not None else np.zeros(())
        for parent, table in effects.items():
            x = parents[parent]
            kind = self.taxonomy[parent].kind
            if x is None:
                continue
            if kind == "continuous":
                total = total + _vector(table["coef"], child) * (x - table["center"]) / table["per"]
            elif kind == "categorical":
                total = total + _vector(table.get(x, 0.0), child)
            else:
                for label, flag in x.items():
                    if flag:
                        total = total + _vector(table.get(label, 0.0), child)
        return total

    def _check_do(self, do: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in do.items():
            cov = self.taxonomy[name]
            checked = cov.check(value, where=f"do({name})")
            if checked is None:
                raise ConfigError(f"do({name}=None): an intervention needs a value", f"use {cov.domain}")
            out[name] = checked
        return out

    # -- serialization ---------------------------------------------------------------------------------
    def noise_columns(self) -> tuple[str, ...]:
        return tuple(f"u_{name}" for name in self.order)

    def simulated_labels(self, name: str) -> tuple[str, ...]:
        return tuple(self.nodes[name].get("labels", {}))


def _vector(value, child: Covariate | None):
    """An effect as a number (scalar child) or a vector over the child's values (categorical child)."""
    if child is None:
        return float(value)
    vec = np.zeros(len(child.values))
    for k, v in (value or {}).items():
        vec[child.values.index(k)] = float(v)
    return vec


def _error(where: str, key: str, problem: str, hint: str) -> ConfigError:
    return ConfigError(f"{where}.{key} {problem}", hint)


def _keys(entry: Any, where: str, allowed) -> Mapping:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {entry!r}", f"allowed keys: {list(allowed)}")
    for key in entry:
        if key not in allowed:
            raise _error(
                where, key, "is not a known key", f"allowed keys: {list(allowed)}{did_you_mean(key, allowed)}"
            )
    return entry


def _parse_node(cov: Covariate, entry: Any, taxonomy: Taxonomy, where: str) -> dict:
    _keys(entry, where, _NODE_KEYS[cov.kind])
    node: dict[str, Any] = {"cov": cov, "kind": cov.kind}
    if cov.kind == "categorical":
        logits = entry.get("logits") or {}
        if not logits:
            raise ConfigError(
                f"{where}.logits is missing or empty",
                f"give a logit to each possible value of "
                f"{cov.name} ({list(cov.values)}); values without one are impossible",
            )
        for value in logits:
            cov.check(value, where=f"{where}.logits")
        node["logits"] = np.array(
            [_number(logits[v], f"{where}.logits.{v}") if v in logits else -np.inf for v in cov.values]
        )
        node["effects"] = _parse_effects(entry.get("effects", {}), cov, cov, taxonomy, f"{where}.effects")
    elif cov.kind == "continuous":
        for key in ("lo", "hi"):
            if key not in entry:
                raise ConfigError(f"{where}.{key} is missing", f"give lo < hi within {cov.domain}")
            cov.check(entry[key], where=f"{where}.{key}")
        if not entry["lo"] < entry["hi"]:
            raise ConfigError(f"{where}: lo={entry['lo']!r} is not below hi={entry['hi']!r}", "give lo < hi")
        node.update(
            lo=float(entry["lo"]),
            hi=float(entry["hi"]),
            intercept=_number(entry.get("intercept", 0.0), f"{where}.intercept"),
            scale=_number(entry.get("scale", 1.0), f"{where}.scale"),
        )
        node["effects"] = _parse_effects(entry.get("effects", {}), cov, None, taxonomy, f"{where}.effects")
    else:
        labels = {}
        for label, spec in (entry.get("labels") or {}).items():
            cov.check({label: 1}, where=f"{where}.labels")
            _keys(spec, f"{where}.labels.{label}", _LABEL_KEYS)
            labels[label] = {
                "intercept": _number(spec.get("intercept", 0.0), f"{where}.labels.{label}.intercept"),
                "effects": _parse_effects(
                    spec.get("effects", {}), cov, None, taxonomy, f"{where}.labels.{label}.effects"
                ),
            }
        node["labels"] = labels
    return node


def _parse_effects(
    effects: Any, cov: Covariate, child: Covariate | None, taxonomy: Taxonomy, where: str
) -> dict:
    """Check that every effect comes from a graph parent and names values that exist."""
    out = {}
    for parent, table in (effects or {}).items():
        if parent not in cov.parents:
            raise _error(
                where,
                parent,
                f"is not a parent of {cov.name!r} in the taxonomy graph",
                f"parents of {cov.name} are {list(cov.parents)}; add the edge to taxonomy.yaml's "
                "graph or remove the effect",
            )
        pcov = taxonomy[parent]
        if pcov.kind == "continuous":
            _keys(table, f"{where}.{parent}", _CONTINUOUS_EFFECT_KEYS)
            missing = [k for k in _CONTINUOUS_EFFECT_KEYS if k not in table]
            if missing:
                raise ConfigError(
                    f"{where}.{parent}.{missing[0]} is missing",
                    "a continuous parent's effect is coef * (x - center) / per",
                )
            per = _number(table["per"], f"{where}.{parent}.per")
            if per == 0:
                raise ConfigError(
                    f"{where}.{parent}.per is 0", "per is the unit of x; use e.g. 10 for decades"
                )
            out[parent] = {
                "center": _number(table["center"], f"{where}.{parent}.center"),
                "per": per,
                "coef": _check_offset(table["coef"], child, f"{where}.{parent}.coef"),
            }
            continue
        values = pcov.values
        out[parent] = {}
        for value, offset in _keys(table, f"{where}.{parent}", values).items():
            out[parent][value] = _check_offset(offset, child, f"{where}.{parent}.{value}")
    return out


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}={value!r} must be a number", "write a plain number, e.g. 0.5")
    return float(value)


def _check_offset(offset, child: Covariate | None, where: str):
    if child is None:
        return _number(offset, where)
    for value in _keys(offset, where, child.values):
        child.check(value, where=where)
    return {k: _number(v, f"{where}.{k}") for k, v in offset.items()}
