"""Raw source values -> harmonized covariates, through taxonomy.yaml; raw values are kept beside them.

For each covariate the source maps (``sources.<source>.covariates``):

- categorical: the raw value is the first non-blank of the mapping's ``field`` list (so a fallback column can
  follow the main one) and is mapped through ``map``; an unlisted value is a `RowError` that names the value,
  the file and row, and the taxonomy entry to extend.
- continuous: the adapter's derived value when it computed one (MIMIC's age from the study year, BRAX's age
  group), else the number in the field; raw values in the mapping's ``missing`` list (CheXpert's Age 0) mean
  missing. An interval (lo, hi) is stored as its midpoint plus ``<covariate>_lo`` / ``_hi``.
- multilabel (findings): raw labels are mapped to harmonized labels (several raw labels may feed one; the
  strongest wins: positive > uncertain > negative > not mentioned) and then resolved by `FindingsPolicy`.
  A label the source does not cover at all stays missing.

Covariates a source does not map are missing. The result is a flat record for the index.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synthfair.errors import SynthfairError, TaxonomyError
from synthfair.sources.records import RowError, SourceRow, blank_to_none
from synthfair.taxonomy import SourceMapping, Taxonomy

UNCERTAIN_POLICIES = {"negative": 0, "positive": 1, "missing": None}
DATASET_FIELD = "dataset"  # the field synthfair sets to the source's name; the site covariate maps it


@dataclass(frozen=True)
class FindingsPolicy:
    """How raw label states become 0 / 1 / missing. Defaults follow the CheXpert labeller's convention
    (U-Zeros): an uncertain mention counts as negative, an unmentioned finding as absent. The uncertain mask
    is stored either way (``uncertain.<label>``), so a user can apply another policy later."""

    uncertain: str = "negative"  # -1 -> "negative" (0), "positive" (1) or "missing"
    unmentioned: str = "negative"  # blank -> "negative" (0) or "missing"

    def __post_init__(self) -> None:
        for name in ("uncertain", "unmentioned"):
            value = getattr(self, name)
            if value not in UNCERTAIN_POLICIES:
                raise SynthfairError(
                    f"findings policy {name}={value!r} is not one of {list(UNCERTAIN_POLICIES)}",
                    f"pass --{name} negative, positive or missing",
                )
        if self.unmentioned == "positive":
            raise SynthfairError("an unmentioned finding cannot count as positive", "use negative or missing")


class Harmonizer:
    """Harmonizes `SourceRow`s of one source; counts raw labels left to a mapping's ``default``."""

    def __init__(self, taxonomy: Taxonomy, source: str, policy: FindingsPolicy | None = None):
        self.taxonomy = taxonomy
        self.source = source
        self.policy = policy or FindingsPolicy()
        self.mappings = {m.covariate: m for m in (taxonomy.sources.get(source) or {}).values()}
        if not self.mappings:
            raise SynthfairError(
                f"taxonomy.yaml has no section sources.{source}",
                f"add sources.{source}.covariates (field and map per covariate) to the taxonomy",
            )
        self.defaulted: Counter[str] = Counter()  # "covariate=raw value" -> rows
        self._memo: dict[tuple[str, Any], tuple[Any, bool]] = {}  # (covariate, raw) -> (value, listed)
        self._covered_labels: dict[str, frozenset[str]] = {}  # covariate -> labels the source reports

    def record(self, row: SourceRow) -> dict[str, Any]:
        """The harmonized record of ``row``: covariates, ``<covariate>_raw`` and findings columns."""
        fields = {DATASET_FIELD: self.source, **row.fields}
        out: dict[str, Any] = {}
        for spec in self.taxonomy:
            mapping = self.mappings.get(spec.name)
            if spec.kind == "multilabel":
                out.update(self.findings(spec.name, spec.values, mapping, row))
            elif spec.kind == "continuous":
                out.update(self.continuous(spec.name, mapping, row, fields))
            else:
                out.update(self.categorical(spec.name, mapping, row, fields))
        return out

    def categorical(self, name: str, mapping: SourceMapping | None, row: SourceRow, fields: Mapping) -> dict:
        raw = _first(fields, mapping.fields) if mapping else None
        value = None
        if mapping is not None and raw is not None:
            value = self._mapped(mapping, raw, row.where, check=True)
        return {name: value, f"{name}_raw": None if raw is None else str(raw)}

    def continuous(self, name: str, mapping: SourceMapping | None, row: SourceRow, fields: Mapping) -> dict:
        out = {name: None, f"{name}_lo": None, f"{name}_hi": None, f"{name}_raw": None}
        if mapping is None:
            return out
        values = [(f, blank_to_none(fields.get(f))) for f in mapping.fields]
        raw = values[0][1] if len(values) == 1 else None
        if len(values) > 1 and any(v is not None for _, v in values):
            raw = ";".join(f"{f}={'' if v is None else v}" for f, v in values)
        out[f"{name}_raw"] = None if raw is None else str(raw)
        if name in row.derived:
            value = row.derived[name]
        elif raw is None or mapping.is_missing_raw(raw):
            return out
        else:
            value = _number(raw, name, row.where)
        if isinstance(value, tuple):  # an interval, e.g. BRAX's 5-year age group
            lo, hi = (self._check(name, v, row.where, raw) for v in value)
            out.update({name: (lo + hi) / 2, f"{name}_lo": lo, f"{name}_hi": hi})
        else:
            out[name] = self._check(name, value, row.where, raw)
        return out

    def findings(
        self, name: str, labels: tuple[str, ...], mapping: SourceMapping | None, row: SourceRow
    ) -> dict[str, Any]:
        states: dict[str, list[float | None]] = {label: [] for label in labels}
        covered = self._covered(mapping, labels)
        normal = False  # a positive "no finding" label: unmentioned labels are negative
        if mapping is not None and row.findings is not None:
            normal = any(row.findings.get(n) == 1.0 for n in mapping.normal)
            for raw_label, state in row.findings.items():
                label = self._mapped(mapping, raw_label, row.where, check=False)
                if label is not None and label not in states:
                    raise RowError(
                        "unmapped_value",
                        f"{row.where}: finding {raw_label!r} is not one of {list(labels)}",
                        f"map it under sources.{self.source}.covariates.{name}.map in taxonomy.yaml",
                    )
                if label is not None:
                    states[label].append(state)
        out: dict[str, Any] = {}
        for label in labels:
            known = label in covered and row.findings is not None
            value, uncertain = self._resolve(states[label], normal) if known else (None, 0)
            out[f"{name}.{label}"] = value
            out[f"uncertain.{label}"] = uncertain if known else None
        raw = None
        if row.findings is not None:
            raw = json.dumps({k: v for k, v in row.findings.items() if v is not None}, separators=(",", ":"))
        out[f"{name}_raw"] = raw
        return out

    def _covered(self, mapping: SourceMapping | None, labels: tuple[str, ...]) -> frozenset[str]:
        """The labels a source reports at all (without a map: every label, as harmonized values); computed
        once per covariate, not per row."""
        key = "" if mapping is None else mapping.covariate
        if key not in self._covered_labels:
            covered: frozenset[str] = frozenset()
            if mapping is not None:
                values = labels if mapping.map is None else mapping.map.values()
                covered = frozenset(v for v in values if v is not None)
            self._covered_labels[key] = covered
        return self._covered_labels[key]

    def _resolve(self, states: list[float | None], normal: bool) -> tuple[int | None, int]:
        """Positive beats uncertain beats negative beats not mentioned; a label absent from a list is 0, and
        so is an unmentioned one when the image is labelled normal."""
        if 1.0 in states:
            return 1, 0
        if -1.0 in states:
            return UNCERTAIN_POLICIES[self.policy.uncertain], 1
        if 0.0 in states or not states or normal:
            return 0, 0
        return UNCERTAIN_POLICIES[self.policy.unmentioned], 0

    def _mapped(self, mapping: SourceMapping, raw: Any, where: str, check: bool) -> Any:
        """``raw`` through the map (and the domain check); memoized, since a source has few distinct raw
        values and millions of rows. Raw values left to the map's default are counted."""
        key = (mapping.covariate, raw)
        hit = self._memo.get(key)
        if hit is None:
            value = self._lookup(mapping, raw, where)  # raises for an unmapped value: never memoized
            if check:
                value = self._check(mapping.covariate, value, where, raw)
            hit = self._memo[key] = (value, mapping.listed(raw))
        if not hit[1]:
            self.defaulted[f"{mapping.covariate}={raw}"] += 1
        return hit[0]

    def _lookup(self, mapping: SourceMapping, raw: Any, where: str) -> Any:
        try:
            return mapping.lookup(raw, where)
        except TaxonomyError as err:
            raise RowError("unmapped_value", err.message, err.hint) from None

    def _check(self, name: str, value: Any, where: str, raw: Any) -> Any:
        try:
            return self.taxonomy[name].check(value, where)
        except TaxonomyError as err:
            message = f"{err.message} (raw value {raw!r})" if str(raw) != str(value) else err.message
            hint = "fix the value in the source file or quarantine the row"
            raise RowError("invalid_value", message, hint) from None


def _first(fields: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = blank_to_none(fields.get(name))
        if value is not None:
            return value
    return None


def _number(raw: Any, name: str, where: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RowError(
            "invalid_value", f"{where}: {name} = {raw!r} is not a number", "fix or quarantine the row"
        )
    return value
