"""The covariate taxonomy: names, kinds, value domains, groups, the causal graph and per-source value maps.

``taxonomy.yaml`` is the single source of covariate names; code asks this module instead of spelling them:

    tax = load_taxonomy()
    tax.topological_order()                       # parents before children, ties in YAML order
    tax.by_group("site")                          # the covariate(s) naming the site
    tax[name].range, tax[name].values             # a covariate's domain
    tax.check_record(record, where="index.parquet row 12")
    tax.mapping(source, name).harmonize(raw)      # raw source value -> harmonized value

Missing values are ``None`` (float NaN, pandas' marker, is read as ``None`` too); they are allowed everywhere
and never guessed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import numbers
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from synthfair.config import read_yaml
from synthfair.errors import TaxonomyError, did_you_mean, shown

SCHEMA = "synthfair.taxonomy/1"
MISSING = "(missing)"  # the group label of an unknown value
KINDS = ("continuous", "categorical", "multilabel")
GROUPS = ("patient", "acquisition", "site")

_TOP_KEYS = ("schema", "groups", "covariates", "graph", "sources")
_COVARIATE_KEYS = ("kind", "group", "description", "values", "range", "unit", "bins", "extent")
EXTENTS = ("global", "local")  # where a covariate acts on the image: everywhere, or in a region
_SOURCE_KEYS = ("description", "covariates")
_MAPPING_KEYS = ("field", "map", "missing", "default", "normal", "description")
_NO_DEFAULT = object()  # a mapping without `default:` raises on unlisted raw values
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")  # covariate and source names: also column names and key parts


def is_missing(value: Any) -> bool:
    """``None`` and NaN mean "missing"."""
    return value is None or (isinstance(value, numbers.Real) and value != value)


@dataclass(frozen=True)
class Covariate:
    """One covariate: its kind, group, value domain and causal parents, as declared in taxonomy.yaml."""

    name: str
    kind: str  # one of KINDS
    group: str  # one of GROUPS
    description: str = ""
    values: tuple[str, ...] = ()  # categorical values or multilabel labels, in YAML order
    range: tuple[float, float] | None = None  # continuous only: [lo, hi], both inclusive
    unit: str | None = None
    bins: tuple[float, ...] | None = None  # continuous only: increasing edges from lo to hi
    parents: tuple[str, ...] = ()
    extent: str = (
        "global"  # "local": its image effect is confined to a region (counterfactual edits are masked)
    )

    @property
    def domain(self) -> str:
        """The allowed values as text, for messages: ``one of ['female', 'male']`` or ``[0, 120] years``."""
        if self.kind == "continuous":
            lo, hi = self.range
            return f"[{lo:g}, {hi:g}]" + (f" {self.unit}" if self.unit else "")
        return f"one of {list(self.values)}"

    @property
    def bin_labels(self) -> tuple[str, ...]:
        """Bin labels in order, ``[0, 20)`` ... ``[80, 120]`` (the last bin is closed); () without bins."""
        edges = [f"{b:g}" for b in self.bins or ()]
        last = len(edges) - 2
        return tuple(
            f"[{a}, {b}{']' if i == last else ')'}"
            for i, (a, b) in enumerate(zip(edges, edges[1:], strict=False))
        )

    def check(self, value: Any, where: str = "") -> Any:
        """Return ``value`` if it lies in the domain (``None`` if missing), else raise `TaxonomyError`.

        Continuous values come back as ``float``. A multilabel value is a set (list, tuple) of positive
        labels, giving every label 0/1, or a mapping label -> 0/1 for the labels it gives (missing ones are
        dropped); either way the result is a dict label -> int in YAML label order.
        """
        if is_missing(value):
            return None
        if self.kind == "continuous":
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not (self.range[0] <= value <= self.range[1])
            ):
                raise self._outside(value, where)
            return float(value)
        if self.kind == "categorical":
            if not isinstance(value, str) or value not in self.values:
                raise self._outside(value, where)
            return str(value)
        return self._check_labels(value, where)

    def bin_label(self, value: Any) -> str | None:
        """The label of the bin holding ``value`` (e.g. ``[40, 60)``); ``None`` if the value is missing."""
        if not self.bins:
            raise TaxonomyError(
                f"covariate {self.name!r} has no bins", hint=f"add bins: [...] under covariates.{self.name}"
            )
        x = self.check(value)
        if x is None:
            return None
        for label, lo, hi in zip(self.bin_labels, self.bins, self.bins[1:], strict=False):
            if lo <= x < hi:
                return label
        return self.bin_labels[-1]  # x == hi: the last bin is closed

    def bin_codes(self, values: Any, where: str = "") -> np.ndarray:
        """The bin index of each value (vectorized `bin_label`; -1 for a missing value). A value outside
        the bins raises, naming it and its position."""
        if not self.bins:
            raise TaxonomyError(
                f"covariate {self.name!r} has no bins", hint=f"add bins: [...] under covariates.{self.name}"
            )
        try:
            x = np.asarray(values, dtype=float)  # None and NaN (missing) become NaN; fast for a million
        except (TypeError, ValueError) as err:
            raise TaxonomyError(
                f"{_at(where)}{self.name}: a value that is not a number ({err})",
                f"{self.name} is continuous: give numbers, or leave the value empty (missing)",
            ) from None
        lo, hi = self.bins[0], self.bins[-1]
        bad = np.flatnonzero(~np.isnan(x) & ((x < lo) | (x > hi)))
        if len(bad):
            raise TaxonomyError(
                f"{_at(where)}{self.name}={x[bad[0]]:g} at position {bad[0]} ({len(bad)} values) is outside "
                f"the bins [{lo:g}, {hi:g}]",
                f"check the {self.name} values or widen covariates.{self.name}.bins in taxonomy.yaml",
            )
        codes = np.clip(np.searchsorted(self.bins, x, side="right") - 1, 0, len(self.bin_labels) - 1)
        return np.where(np.isnan(x), -1, codes)

    def _check_labels(self, value: Any, where: str) -> dict[str, int]:
        if isinstance(value, Mapping):
            out = {}
            for label, flag in value.items():
                self._check_label(label, where)
                if is_missing(flag):
                    continue
                if isinstance(flag, str) or flag not in (0, 1):
                    raise TaxonomyError(
                        f"{_at(where)}{self.name}[{label!r}]={flag!r} is not 0 or 1",
                        hint="resolve uncertain labels with an explicit policy first; use None for missing",
                    )
                out[label] = int(flag)
            return {label: out[label] for label in self.values if label in out}
        if isinstance(value, (set, frozenset, list, tuple)):
            for label in value:
                self._check_label(label, where)
            return {label: int(label in value) for label in self.values}
        raise TaxonomyError(
            f"{_at(where)}{self.name}={value!r} is not a set of labels nor a mapping label -> 0/1",
            hint=f"labels are {list(self.values)}",
        )

    def _check_label(self, label: Any, where: str) -> None:
        if not isinstance(label, str) or label not in self.values:
            raise self._outside(label, where)

    def _outside(self, value: Any, where: str) -> TaxonomyError:
        return TaxonomyError(
            f"{_at(where)}{self.name}={value!r} is not {self.domain}{did_you_mean(value, self.values)}",
            hint=f"use a value from covariates.{self.name} in taxonomy.yaml, or None for missing",
        )


@dataclass(frozen=True)
class SourceMapping:
    """How one source records one covariate: the raw field(s) and the raw -> harmonized value map."""

    source: str
    covariate: str
    fields: tuple[str, ...]
    map: Mapping[Any, Any] | None  # None: the source writes harmonized values; a map value None = missing
    spec: Covariate = field(repr=False)
    taxonomy_path: str = field(default="taxonomy.yaml", repr=False)
    missing: frozenset[str] = frozenset()  # raw values (as text) that mean "missing", e.g. CheXpert's Age 0
    default: Any = field(default=_NO_DEFAULT, repr=False)  # harmonized value of unlisted raw values
    normal: frozenset[str] = frozenset()  # multilabel: raw labels meaning "no finding" (e.g. "No Finding")

    def listed(self, raw: Any) -> bool:
        """Whether ``raw`` is named by the map or the ``missing`` list (not left to ``default``)."""
        if self.map is None or self.is_missing_raw(raw):
            return True
        return _hashable(raw) and raw in self.map

    def is_missing_raw(self, raw: Any) -> bool:
        """``raw`` is missing: None, NaN, empty text, or one of the source's ``missing`` values."""
        return is_missing(raw) or str(raw).strip() == "" or str(raw) in self.missing

    def lookup(self, raw: Any, where: str = "") -> Any:
        """The mapped (not yet checked) value of one raw value; unmapped raises `TaxonomyError`."""
        if self.is_missing_raw(raw):
            return None
        if self.map is None:
            return raw
        return self._lookup(raw, where)

    def harmonize(self, raw: Any, where: str = "") -> Any:
        """The harmonized, checked value for ``raw``; an unmapped raw value raises `TaxonomyError`.

        For a multilabel covariate ``raw`` is a collection of raw label names, or a mapping raw name -> 0/1
        (several raw names mapped to one label are combined with max).
        """
        if not isinstance(raw, (Mapping, set, frozenset, list, tuple)) and self.is_missing_raw(raw):
            return None
        if self.map is None:
            return self.spec.check(raw, where)
        if self.spec.kind != "multilabel":
            return self.spec.check(self._lookup(raw, where), where)
        if isinstance(raw, Mapping):
            out: dict[str, int] = {}
            for key, flag in raw.items():
                label = self._lookup(key, where)
                for lab, v in self.spec.check({} if label is None else {label: flag}, where).items():
                    out[lab] = max(out.get(lab, 0), v)
            return {label: out[label] for label in self.spec.values if label in out}
        if isinstance(raw, (set, frozenset, list, tuple)):
            labels = {self._lookup(key, where) for key in raw} - {None}
            return self.spec.check(labels, where)
        return self.spec.check(raw, where)  # not a collection: raises with the expected shapes

    def _lookup(self, raw: Any, where: str) -> Any:
        if _hashable(raw) and raw in self.map:
            return self.map[raw]
        if self.default is not _NO_DEFAULT:
            return self.default
        raise TaxonomyError(
            f"{_at(where)}unmapped raw value {shown(raw)} for covariate {self.covariate!r} of source "
            f"{self.source!r} (field {', '.join(self.fields)}){did_you_mean(raw, self.map)}",
            hint=f"add it under sources.{self.source}.covariates.{self.covariate}.map in "
            f"{self.taxonomy_path} (map it to null if it means missing)",
        )


class Taxonomy:
    """The parsed, validated taxonomy; build it with `load_taxonomy`, `Taxonomy.load` or `.from_dict`."""

    def __init__(
        self,
        covariates: Mapping[str, Covariate],
        groups: Mapping[str, str],
        sources: Mapping[str, Mapping[str, SourceMapping]],
        sha256: str,
        path: Path | None = None,
    ):
        self.path = path
        self.covariates: Mapping[str, Covariate] = MappingProxyType(dict(covariates))
        self.groups: Mapping[str, str] = MappingProxyType(dict(groups))
        self.sources = MappingProxyType({s: MappingProxyType(dict(m)) for s, m in sources.items()})
        self._sha256 = sha256
        self._order = _topological_order({n: c.parents for n, c in self.covariates.items()}, str(path))
        self._children = {
            n: tuple(c for c in self._order if n in self.covariates[c].parents) for n in self._order
        }

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        """Read and validate a taxonomy file; ``None`` reads the packaged ``synthfair/taxonomy.yaml``."""
        if path is None:
            with resources.as_file(resources.files("synthfair") / "taxonomy.yaml") as real:
                return cls.from_dict(read_yaml(real, error=TaxonomyError), where=str(real), path=Path(real))
        return cls.from_dict(read_yaml(path, error=TaxonomyError), where=str(path), path=Path(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "<dict>", *, path: Path | None = None) -> Taxonomy:
        """Validate parsed YAML content; ``where`` (the file) is named in every error."""
        read = _Reader(where)
        top = read.keys(data, "", _TOP_KEYS, required=("schema", "groups", "covariates", "graph"))
        if top["schema"] != SCHEMA:
            raise read.fail("schema", f"unsupported schema {top['schema']!r}", f"use schema: {SCHEMA}")
        groups = read.keys(top["groups"], "groups", GROUPS, required=GROUPS)
        for group, text in groups.items():
            read.text(text, f"groups.{group}")
        entries = top["covariates"]
        if not isinstance(entries, Mapping) or not entries:
            raise read.fail(
                "covariates", f"expected a non-empty mapping, got {entries!r}", "declare covariates"
            )
        covariates = {name: read.covariate(name, entry) for name, entry in entries.items()}
        parents = read.graph(top["graph"], list(covariates))
        _topological_order(parents, where)  # raises on a cycle
        covariates = {name: replace(cov, parents=parents[name]) for name, cov in covariates.items()}
        sources = read.sources(top.get("sources") or {}, covariates)
        return cls(covariates, dict(groups), sources, _canonical_sha256(data), path=path)

    @property
    def sha256(self) -> str:
        """Hash of the parsed content (canonical JSON): formatting and comments do not change it."""
        return self._sha256

    @property
    def model_sha256(self) -> str:
        """Hash of what fitted models depend on: covariate names, kinds, value domains and the graph.

        Descriptions, groups, bins and per-source raw-value maps are left out: adding a raw value of a
        source does not invalidate a trained model or a fitted SCM."""
        domains = {
            c.name: {
                "kind": c.kind,
                "values": list(c.values),
                "range": list(c.range or ()),
                "parents": list(c.parents),
            }
            for c in self
        }
        return _canonical_sha256(domains)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.covariates)

    def __getitem__(self, name: str) -> Covariate:
        try:
            return self.covariates[name]
        except (KeyError, TypeError):
            raise TaxonomyError(
                f"unknown covariate {name!r}{did_you_mean(name, self.covariates)}",
                hint=f"covariates in {self._label}: {', '.join(self.names)}",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.covariates

    def __iter__(self) -> Iterator[Covariate]:
        return iter(self.covariates.values())

    def __len__(self) -> int:
        return len(self.covariates)

    def __repr__(self) -> str:
        return f"Taxonomy({self._label!r}, covariates={list(self.names)}, sha256={self.sha256[:12]!r})"

    def parents(self, name: str) -> tuple[str, ...]:
        return self[name].parents

    def children(self, name: str) -> tuple[str, ...]:
        return self._children[self[name].name]

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every covariate with a directed path to ``name``, in topological order."""
        return self._closure(name, self.parents)

    def descendants(self, name: str) -> tuple[str, ...]:
        """Every covariate reachable from ``name``, in topological order."""
        return self._closure(name, self.children)

    def topological_order(self) -> tuple[str, ...]:
        """Parents before children; among ready covariates the one first in taxonomy.yaml goes first."""
        return self._order

    def by_group(self, group: str) -> tuple[str, ...]:
        if group not in GROUPS:
            raise TaxonomyError(
                f"unknown group {group!r}{did_you_mean(group, GROUPS)}", hint=f"groups: {GROUPS}"
            )
        return tuple(c.name for c in self if c.group == group)

    def of_kind(self, kind: str) -> tuple[str, ...]:
        if kind not in KINDS:
            raise TaxonomyError(f"unknown kind {kind!r}{did_you_mean(kind, KINDS)}", hint=f"kinds: {KINDS}")
        return tuple(c.name for c in self if c.kind == kind)

    # -- flat records: a column per covariate, ``<name>.<label>`` per label of a multilabel one ------------
    def columns(self, name: str | None = None) -> tuple[str, ...]:
        """The flat columns of covariate ``name``, or of every covariate in taxonomy order: the covariate's
        own name, or ``<name>.<label>`` for each label of a multilabel covariate."""
        specs = [self[name]] if name is not None else list(self)
        out: list[str] = []
        for spec in specs:
            multilabel = spec.kind == "multilabel"
            out += [f"{spec.name}.{label}" for label in spec.values] if multilabel else [spec.name]
        return tuple(out)

    def label_columns(self) -> tuple[str, ...]:
        """``<name>.<label>`` for every label of every multilabel covariate (the findings), in order."""
        return tuple(c for spec in self if spec.kind == "multilabel" for c in self.columns(spec.name))

    def flatten(self, record: Mapping[str, Any], label=lambda value: value) -> dict[str, Any]:
        """A covariate record ({name: value}, a multilabel value as {label: 0/1}) as flat columns; each
        label's value passes through ``label`` (e.g. ``int``), an absent label is None before it does."""
        row: dict[str, Any] = {}
        for spec in self:
            value = record.get(spec.name)
            if spec.kind == "multilabel":
                row.update({f"{spec.name}.{k}": label((value or {}).get(k)) for k in spec.values})
            else:
                row[spec.name] = value
        return row

    def unflatten(self, row: Mapping[str, Any], label=lambda value: value) -> dict[str, Any]:
        """Flat columns back to a covariate record: ``<name>.<label>`` columns become {label: value}, each
        value passed through ``label``; covariates without columns in ``row`` are left out."""
        record: dict[str, Any] = {}
        for spec in self:
            if spec.kind == "multilabel":
                if any(f"{spec.name}.{k}" in row for k in spec.values):
                    record[spec.name] = {k: label(row.get(f"{spec.name}.{k}")) for k in spec.values}
            elif spec.name in row:
                record[spec.name] = row[spec.name]
        return record

    def group_labels(self, frame: Any, by: Any) -> Any:
        """One text label per row of ``frame`` (a DataFrame) and column of ``by``: the bin label of a
        continuous covariate, else the value (a ``<name>.<label>`` column's 0/1 too); `MISSING` when
        unknown. The subgroup labels of every report (index stats, representation, soundness, studies)."""
        import pandas as pd  # lazy: the taxonomy itself needs no pandas

        out = {}
        for name in by:
            column = frame[name]
            if name in self and self[name].kind == "continuous" and self[name].bins:
                spec = self[name]
                codes = spec.bin_codes(column.to_numpy(object), where=f"column {name}")
                labels = np.asarray(spec.bin_labels, dtype=object)[np.maximum(codes, 0)]
                out[name] = np.where(codes < 0, MISSING, labels)
            else:
                values = column.astype(object)
                out[name] = values.where(values.notna(), MISSING).to_numpy(object)
        return pd.DataFrame(out, index=frame.index, dtype=object)

    def column(self, column: str) -> tuple[Covariate, str | None]:
        """(covariate, label) of a flat column: ``findings.effusion`` -> (findings, "effusion"); ``age`` ->
        (age, None). An unknown covariate or label raises with the options."""
        name, dot, label = column.partition(".")
        spec = self[name]
        if not dot:
            return spec, None
        if spec.kind != "multilabel" or label not in spec.values:
            raise TaxonomyError(
                f"unknown column {column!r}{did_you_mean(column, self.columns())}",
                hint=f"columns: {', '.join(self.columns())}",
            )
        return spec, label

    def check_record(self, record: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Check every value of ``record`` (covariate name -> value); returns the checked values."""
        out = {}
        for name, value in record.items():
            if name not in self.covariates:
                raise TaxonomyError(
                    f"{_at(where)}unknown covariate {name!r}{did_you_mean(name, self.covariates)}",
                    hint=f"covariates in {self._label}: {', '.join(self.names)}",
                )
            out[name] = self.covariates[name].check(value, where)
        return out

    def mapping(self, source: str, covariate: str) -> SourceMapping:
        """How ``source`` records ``covariate`` (raw fields and value map)."""
        if source not in self.sources:
            raise TaxonomyError(
                f"unknown source {source!r}{did_you_mean(source, self.sources)}",
                hint=f"sources in {self._label}: {', '.join(self.sources)}; add sources.{source} if new",
            )
        self[covariate]  # unknown covariate: raises with did-you-mean
        if covariate not in self.sources[source]:
            raise TaxonomyError(
                f"source {source!r} has no mapping for covariate {covariate!r}",
                hint=f"add sources.{source}.covariates.{covariate} (field, map) in {self._label}",
            )
        return self.sources[source][covariate]

    @property
    def _label(self) -> str:
        return str(self.path) if self.path else "taxonomy.yaml"

    def _closure(self, name: str, step) -> tuple[str, ...]:
        found, stack = set(), list(step(name))
        while stack:
            node = stack.pop()
            if node not in found:
                found.add(node)
                stack.extend(step(node))
        return tuple(n for n in self._order if n in found)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The taxonomy at ``path``, or the packaged default (read once and cached) when ``path`` is None."""
    return _default_taxonomy() if path is None else Taxonomy.load(path)


@functools.lru_cache(maxsize=1)
def _default_taxonomy() -> Taxonomy:
    return Taxonomy.load()


# --- validation ------------------------------------------------------------------------------------------


def _at(where: str) -> str:
    return f"{where}: " if where else ""


class _Reader:
    """Checks the parsed YAML of one file; every error names the file, key path, bad value and a fix."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, problem: str, hint: str) -> TaxonomyError:
        return TaxonomyError(f"{self.where}: {key or 'top level'}: {problem}", hint)

    def keys(self, data: Any, key: str, allowed: tuple, required: tuple = ()) -> Mapping:
        """``data`` as a mapping whose keys are all ``allowed`` and include every ``required`` one."""
        if not isinstance(data, Mapping):
            raise self.fail(key, f"expected a mapping, got {data!r}", "write it as `key: value` lines")
        under = f" under {key}" if key else ""
        for k in data:
            self.one_of(
                k,
                allowed,
                f"{key}.{k}" if key else str(k),
                "key",
                f"allowed keys{under}: {', '.join(allowed)}",
            )
        for k in required:
            if k not in data:
                raise self.fail(key, f"missing required key {k!r}", f"add `{k}:`{under}")
        return data

    def one_of(self, value: Any, options: Any, key: str, what: str, hint: str = "") -> Any:
        options = list(options)
        if value not in options:
            problem = f"unknown {what} {value!r}{did_you_mean(value, options)}"
            raise self.fail(key, problem, hint or f"use one of {options}")
        return value

    def name(self, value: Any, key: str, what: str) -> None:
        if not isinstance(value, str) or not _NAME.match(value):
            raise self.fail(
                key, f"invalid {what} name {value!r}", "use lower_snake_case, starting with a letter"
            )

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {value!r}", "quote it")
        return value

    def numbers(self, value: Any, key: str) -> tuple[float, ...]:
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Real) for v in value
        ):
            raise self.fail(key, f"expected a list of numbers, got {value!r}", "write it as [number, ...]")
        return tuple(float(v) for v in value)

    def covariate(self, name: Any, entry: Any) -> Covariate:
        key = f"covariates.{name}"
        self.name(name, key, "covariate")
        entry = self.keys(entry, key, _COVARIATE_KEYS, required=("kind", "group"))
        kind = self.one_of(entry["kind"], KINDS, f"{key}.kind", "kind")
        group = self.one_of(entry["group"], GROUPS, f"{key}.group", "group")
        description = self.text(entry.get("description", ""), f"{key}.description")
        extent = self.one_of(entry.get("extent", "global"), EXTENTS, f"{key}.extent", "extent")
        if kind == "continuous":
            return replace(self.continuous(name, group, description, entry), extent=extent)
        for k in ("range", "unit", "bins"):
            if k in entry:
                raise self.fail(
                    f"{key}.{k}", f"{k} is only for continuous covariates", f"remove {k} from {key}"
                )
        values = entry.get("values")
        if not isinstance(values, list) or not values:
            problem = f"a {kind} covariate needs a non-empty list of values, got {values!r}"
            raise self.fail(f"{key}.values", problem, "write values: [a, b, ...]")
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v:
                hint = "quote it: YAML reads yes/no/on/off as booleans and bare numbers as numbers"
                raise self.fail(f"{key}.values[{i}]", f"value {v!r} is not a non-empty string", hint)
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise self.fail(f"{key}.values", f"duplicate values {duplicates}", "list each value once")
        return Covariate(name, kind, group, description, values=tuple(values), extent=extent)

    def continuous(self, name: str, group: str, description: str, entry: Mapping) -> Covariate:
        key = f"covariates.{name}"
        if "values" in entry:
            problem = "values are only for categorical and multilabel covariates"
            raise self.fail(f"{key}.values", problem, "give a continuous covariate range: [lo, hi] instead")
        if "range" not in entry:
            raise self.fail(
                key, "missing required key 'range' for a continuous covariate", "add range: [lo, hi]"
            )
        bounds = self.numbers(entry["range"], f"{key}.range")
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            problem = f"expected [lo, hi] with lo < hi, got {entry['range']!r}"
            raise self.fail(f"{key}.range", problem, "fix the bounds")
        lo, hi = bounds
        unit = None if entry.get("unit") is None else self.text(entry["unit"], f"{key}.unit")
        bins = None
        if "bins" in entry:
            bins = self.numbers(entry["bins"], f"{key}.bins")
            if len(bins) < 2 or any(a >= b for a, b in zip(bins, bins[1:], strict=False)):
                problem = f"expected at least two increasing edges, got {entry['bins']!r}"
                raise self.fail(f"{key}.bins", problem, "list the edges in increasing order, from lo to hi")
            outside = [f"{b:g}" for b in bins if not lo <= b <= hi]
            if outside or bins[0] != lo or bins[-1] != hi:
                problem = f"bins {entry['bins']!r} " + (
                    f"have edges {outside} outside range [{lo:g}, {hi:g}]"
                    if outside
                    else "do not cover the range"
                )
                raise self.fail(f"{key}.bins", problem, f"start bins at {lo:g} and end them at {hi:g}")
        return Covariate(name, "continuous", group, description, (), (lo, hi), unit, bins)

    def graph(self, graph: Any, names: list[str]) -> dict[str, tuple[str, ...]]:
        """The graph as covariate -> parents, in covariate (YAML) order."""
        if not isinstance(graph, Mapping):
            raise self.fail("graph", f"expected a mapping, got {graph!r}", "write `node: [parents]` lines")
        for node, parents in graph.items():
            key = f"graph.{node}"
            self.one_of(
                node,
                names,
                key,
                "graph node",
                f"declare it under covariates, or remove it; covariates: {names}",
            )
            if not isinstance(parents, list):
                hint = f"write {node}: [parent, ...], or {node}: [] for a root"
                raise self.fail(key, f"expected a list of parents, got {parents!r}", hint)
            for parent in parents:
                self.one_of(parent, names, key, "parent", f"parents are covariates: {names}")
            if len(set(parents)) != len(parents):
                raise self.fail(key, f"duplicate parents in {parents!r}", "list each parent once")
        missing = [n for n in names if n not in graph]
        if missing:
            hint = f"add `{missing[0]}: []` (a root) or `{missing[0]}: [parents]` under graph"
            raise self.fail("graph", f"covariates {missing} are missing from the graph", hint)
        return {n: tuple(graph[n]) for n in names}

    def sources(self, data: Any, covariates: Mapping[str, Covariate]) -> dict[str, dict[str, SourceMapping]]:
        if not isinstance(data, Mapping):
            raise self.fail(
                "sources", f"expected a mapping, got {data!r}", "write `<source>: {covariates: ...}`"
            )
        out: dict[str, dict[str, SourceMapping]] = {}
        for source, entry in data.items():
            key = f"sources.{source}"
            self.name(source, key, "source")
            entry = self.keys(entry, key, _SOURCE_KEYS, required=("covariates",))
            self.text(entry.get("description", ""), f"{key}.description")
            if not isinstance(entry["covariates"], Mapping):
                problem = f"expected a mapping covariate -> entry, got {entry['covariates']!r}"
                raise self.fail(f"{key}.covariates", problem, "write `<covariate>: {field: ..., map: ...}`")
            out[source] = {
                name: self.source_mapping(source, name, item, covariates)
                for name, item in entry["covariates"].items()
            }
        return out

    def source_mapping(self, source: str, name: Any, item: Any, covariates: Mapping) -> SourceMapping:
        key = f"sources.{source}.covariates.{name}"
        self.one_of(name, covariates, key, "covariate")
        item = self.keys(item, key, _MAPPING_KEYS, required=("field",))
        self.text(item.get("description", ""), f"{key}.description")
        fields = [item["field"]] if isinstance(item["field"], str) else item["field"]
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            problem = f"expected a field name or a list of them, got {item['field']!r}"
            raise self.fail(f"{key}.field", problem, "write field: <raw column> or field: [<column>, ...]")
        raw_map = item.get("map")
        if "map" in item:
            if not isinstance(raw_map, Mapping):
                problem = f"expected a mapping raw value -> harmonized value, got {raw_map!r}"
                raise self.fail(f"{key}.map", problem, "write map: {<raw value>: <harmonized value>, ...}")
            for raw, value in raw_map.items():
                self.mapped_value(covariates[name], value, f"{key}.map.{raw}")
            raw_map = MappingProxyType(dict(raw_map))
        missing = item.get("missing", [])
        if not isinstance(missing, list) or not all(isinstance(m, (str, int, float)) for m in missing):
            problem = f"expected a list of raw values meaning missing, got {missing!r}"
            raise self.fail(f"{key}.missing", problem, 'write missing: ["0", "Unknown"]')
        extra: dict[str, Any] = {}
        if "normal" in item:
            normal = item["normal"]
            if covariates[name].kind != "multilabel" or not isinstance(normal, list) or raw_map is None:
                problem = f"expected a list of raw labels of a multilabel map, got {normal!r}"
                raise self.fail(f"{key}.normal", problem, "write normal: [No Finding] under a findings map")
            unknown = [n for n in normal if n not in raw_map]
            if unknown:
                problem = f"normal labels {unknown} are not keys of the map"
                raise self.fail(f"{key}.normal", problem, "list them under map (usually mapped to null) too")
            extra["normal"] = frozenset(normal)
        if "default" in item:
            if raw_map is None:
                problem = "a default needs a map (it is the value of raw values the map does not list)"
                raise self.fail(f"{key}.default", problem, "add map: {...} or remove default")
            self.mapped_value(covariates[name], item["default"], f"{key}.default")
            extra["default"] = item["default"]
        return SourceMapping(
            source,
            name,
            tuple(fields),
            raw_map,
            covariates[name],
            taxonomy_path=self.where,
            missing=frozenset(str(m) for m in missing),
            **extra,
        )

    def mapped_value(self, spec: Covariate, value: Any, key: str) -> None:
        """A harmonized value must be in the covariate's domain (a single label for multilabel) or null."""
        if value is None:
            return
        try:
            spec.check([value] if spec.kind == "multilabel" else value)
        except TaxonomyError:
            problem = f"{value!r} is not in the domain of {spec.name}: {spec.domain}"
            hint = f"map it to a value of covariates.{spec.name} or to null (missing), or add that value"
            raise self.fail(key, problem + did_you_mean(value, spec.values), hint) from None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _topological_order(parents: Mapping[str, tuple[str, ...]], where: str) -> tuple[str, ...]:
    """Kahn's algorithm; among ready nodes the first in ``parents`` order goes first. Raises on a cycle."""
    order: list[str] = []
    remaining = list(parents)
    while remaining:
        ready = next((n for n in remaining if all(p in order for p in parents[n])), None)
        if ready is None:
            cycle = _find_cycle(remaining, parents)
            hint = "remove one edge of the cycle: the causal graph must be acyclic"
            raise _Reader(where).fail("graph", f"the graph has a cycle: {cycle}", hint)
        order.append(ready)
        remaining.remove(ready)
    return tuple(order)


def _find_cycle(remaining: list[str], parents: Mapping[str, tuple[str, ...]]) -> str:
    """Walk parents among the nodes left by Kahn's algorithm (each has one left) until a node repeats."""
    node, path = remaining[0], []
    while node not in path:
        path.append(node)
        node = next(p for p in parents[node] if p in remaining)
    cycle = path[path.index(node) :] + [node]
    return " -> ".join(reversed(cycle))  # in edge direction, parent -> child


def _canonical_sha256(data: Any) -> str:
    """SHA-256 of sorted-key compact JSON; keys are JSON-encoded so that YAML keys 1 and "1" stay distinct."""

    def canon(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return {json.dumps(k, default=str): canon(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [canon(v) for v in obj]
        return obj

    text = json.dumps(canon(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
