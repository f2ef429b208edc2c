"""Draw a subset of a release that injects exactly the biases of a `BiasSpec`, over ``samples.parquet``.

    subset = sample("release/", load_bias_spec("bias.yaml"))      # or a URL prefix, or a DataFrame
    write_subset(subset, "subset/")       # subset.parquet + subset.json (spec, achieved vs targets, shards)

How (one split at a time):

1. Eligible rows: the spec's kinds and ``where`` filter, a known 0/1 target and known group covariates;
   the others are counted by reason in ``subset.excluded``.
2. Splits: patients (or families, if the release has no patient keys) are hashed with the seed into the
   splits by their fractions (``split_by: patient``), or the release's own split is used (``source``), so no
   family and no patient is in two splits.
3. Cells: group x target x (correlated covariate = value). A cell's probability is share(group) x
   P(target | group) x P(value | target); its quota is that times the split's size, rounded so that the
   quotas add up exactly (largest remainders).
4. Fill: cells are filled scarcest first (fewest candidate families per needed sample), each with its
   candidates of unused families in rank order (factual images first, then a seeded hash of
   ``sample_hash``), at most one member per family. Counterfactual members are what make exact targets
   reachable: a family whose factual image is in an abundant cell can fill a scarce cell with its
   counterfactual. A cell that cannot be filled makes the spec infeasible: the error names the cell and
   the largest size and bias strength that can be reached.
5. Label noise: per group, exactly round(rate x n) true labels are flipped (by a seeded hash), in splits
   with ``label_noise``; ``target`` holds the label to train on and ``target_true`` the true one.

Paired mode (``pairs: sex``): a unit is a factual image and one of its counterfactuals that differs from it
in that covariate only (``changed == [sex]``); cells are taken from the factual; both rows are returned
with the same ``pair`` id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import synthfair
from synthfair.config import config_to_dict
from synthfair.errors import ConfigError, SynthfairError, did_you_mean
from synthfair.fileio import atomic_write, jsonable, write_json
from synthfair.release.source import read_samples
from synthfair.sampling.spec import BiasSpec
from synthfair.selection import covariate_of, where_mask
from synthfair.taxonomy import MISSING, Taxonomy, load_taxonomy

SUBSET_SCHEMA = "synthfair.subset/1"
SUBSET_FILE, SUBSET_META = "subset.parquet", "subset.json"
BASE_COLUMNS = ("key", "family", "kind", "shard", "sample_hash", "split")
PAIR_COLUMNS = ("parent", "changed")  # read only in paired mode
ALL = "all"  # the one group when no groups are set


@dataclass(frozen=True)
class Subset:
    table: pd.DataFrame  # one row per chosen sample (see `write_subset`)
    spec: BiasSpec
    stats: dict[str, Any]  # per split: achieved statistics next to their targets
    excluded: dict[str, int]  # eligible-pool exclusions by reason
    release: str
    samples_sha256: str | None = None
    baseline: bool = False

    @property
    def shards(self) -> list[int]:
        return sorted(int(s) for s in self.table["shard"].unique())

    def summary(self) -> str:
        sizes = self.table.groupby("split").size().to_dict()
        parts = ", ".join(f"{sizes.get(s, 0)} {s}" for s in self.spec.splits)
        what = "baseline" if self.baseline else "subset"
        return f"{what}: {len(self.table)} samples ({parts}) from {len(self.shards)} shards"


# -- public -------------------------------------------------------------------------------------------------
def sample(release: str | Path | pd.DataFrame, spec: BiasSpec, taxonomy: Taxonomy | None = None) -> Subset:
    """The subset of ``release`` (a directory or URL holding samples.parquet, or its rows) for ``spec``."""
    taxonomy = taxonomy or load_taxonomy()
    if isinstance(release, pd.DataFrame):
        frame, where, digest = release, "<samples>", None
    else:
        frame, where, digest = read_samples(release, needed_columns(spec))
    pool, excluded = _eligible(frame, spec, taxonomy, where)
    if spec.size > len(pool):  # also before any arithmetic on a size beyond int64
        raise ConfigError(
            f"bias spec infeasible: size {spec.size} exceeds the {len(pool)} eligible samples of {where}",
            f"use size <= {len(pool)}, or widen kinds/where",
        )
    cells = _Cells.build(pool, spec, taxonomy)
    units = _units(pool, spec)
    unit_split = _assign_splits(pool, units, spec)
    sizes = _largest_remainder(spec.size, {name: s.fraction for name, s in spec.splits.items()})
    chosen, stats = [], {}
    for name, split in spec.splits.items():
        in_split = units[unit_split == name]
        knobs = _knobs(spec, 1.0 if split.biased else 0.0, cells, pool, units)
        quotas = _quotas(sizes[name], knobs, cells)
        picked, short = _fill(in_split, cells, quotas, spec)
        if short is not None:
            raise _infeasible(spec, name, short, cells, pool, units, unit_split, sizes)
        rows = _rows_of(picked, pool, spec, name)
        chosen.append(rows)
        stats[name] = {"size": sizes[name], "knobs": knobs}
    table = pd.concat(chosen, ignore_index=True)
    table = _apply_label_noise(table, spec, cells)
    for name in spec.splits:
        stats[name] = _achieved(table[table["split"] == name], spec, cells, stats[name])
    table = table.sort_values(["split", "key"], kind="stable").reset_index(drop=True)
    source = where if isinstance(release, pd.DataFrame) else release_location(release)
    return Subset(table, spec, stats, excluded, source, digest, baseline=False)


def sample_with_baseline(
    release: str | Path, spec: BiasSpec, taxonomy: Taxonomy | None = None
) -> tuple[Subset, Subset]:
    """The biased subset and its matched no-bias baseline (same size, splits, target, groups and seed)."""
    taxonomy = taxonomy or load_taxonomy()
    frame, where, digest = read_samples(release, needed_columns(spec))
    location = release_location(release)
    biased = replace(sample(frame, spec, taxonomy), release=location, samples_sha256=digest)
    base = replace(
        sample(frame, spec.baseline(), taxonomy), release=location, samples_sha256=digest, baseline=True
    )
    return biased, base


def write_subset(subset: Subset, out: str | Path) -> Path:
    """``out/subset.parquet`` (key, family, kind, shard, split, source_split, pair, group, the covariates the
    spec uses, target, target_true, target_flipped) and ``out/subset.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = subset.table
    atomic_write(out / SUBSET_FILE, lambda f: table.to_parquet(f, index=False, compression="zstd"))
    meta = {
        "schema": SUBSET_SCHEMA,
        "release": subset.release,
        "samples_sha256": subset.samples_sha256,
        "baseline": subset.baseline,
        "spec": config_to_dict(subset.spec),
        "size": len(table),
        "splits": table.groupby("split").size().to_dict(),
        "shards": subset.shards,
        "excluded": subset.excluded,
        "stats": subset.stats,
        "synthfair_version": synthfair.__version__,
    }
    write_json(out / SUBSET_META, jsonable(meta))
    return out


def changed_only(frame: pd.DataFrame, covariate: str) -> np.ndarray:
    """Rows that are counterfactuals differing from their factual in ``covariate`` only (``changed``)."""
    only = frame["changed"].map(lambda v: v is not None and len(v) == 1 and v[0] == covariate).to_numpy(bool)
    return (frame["kind"] == "counterfactual").to_numpy() & only


def needed_columns(spec: BiasSpec) -> list[str]:
    pairs = (*PAIR_COLUMNS, spec.pairs) if spec.pairs else ()
    names = [*BASE_COLUMNS, *pairs, "patient", *spec.groups, *spec.where]
    if spec.target:
        names.append(spec.target)
    if spec.correlation:
        names.append(spec.correlation.covariate)
    return names


# -- eligibility and groups ---------------------------------------------------------------------------------
def _eligible(frame: pd.DataFrame, spec: BiasSpec, taxonomy: Taxonomy, where: str):
    for name in needed_columns(spec):
        if name not in frame.columns and name != "patient":
            raise SynthfairError(
                f"{where} has no column {name!r}{did_you_mean(name, frame.columns)}",
                "check the spec's covariate names (`synthfair taxonomy`)",
            )
    keep = frame["kind"].isin(spec.kinds).to_numpy().copy()
    excluded = {"kind not in spec.kinds": int((~keep).sum())}
    for name, allowed in spec.where.items():
        ok = where_mask(frame, name, allowed, taxonomy, f"bias spec where.{name}")
        excluded[f"where.{name}"] = int((keep & ~ok).sum())
        keep &= ok
    if spec.target:
        covariate_of(spec.target, taxonomy, "bias spec target")
        if taxonomy[spec.target.split(".")[0]].kind != "multilabel":
            raise ConfigError(
                f"bias spec target {spec.target!r} is not a finding",
                "use findings.<label>, e.g. findings.cardiomegaly",
            )
        ok = frame[spec.target].isin([0, 1]).to_numpy()
        excluded["target unknown or uncertain"] = int((keep & ~ok).sum())
        keep &= ok
    for name in (*spec.groups, *([spec.correlation.covariate] if spec.correlation else [])):
        covariate_of(name, taxonomy, f"bias spec covariate {name}")
        ok = frame[name].notna().to_numpy()
        excluded[f"{name} missing"] = int((keep & ~ok).sum())
        keep &= ok
    pool = frame[keep].reset_index(drop=True)
    if pool.empty:
        raise SynthfairError(
            f"no sample of {where} is eligible for the bias spec "
            f"({', '.join(f'{k}: {v}' for k, v in excluded.items() if v)})",
            "widen kinds or where",
        )
    return pool, {k: v for k, v in excluded.items() if v}


@dataclass
class _Cells:
    """Group x target x correlated-value cells of the pool: per row codes, and the labels of the groups."""

    groups: list[str]  # group labels ("female x black"), observed in the pool, sorted
    group: np.ndarray  # per pool row: index into groups
    y: np.ndarray  # per pool row: target 0/1 (0 when there is no target)
    c: np.ndarray  # per pool row: 1 if the correlated covariate has the value (0 without correlation)
    factual: np.ndarray  # per pool row: a factual sample
    ny: int = 1
    nc: int = 1

    @classmethod
    def build(cls, pool: pd.DataFrame, spec: BiasSpec, taxonomy: Taxonomy) -> _Cells:
        groups, group = _group_labels(pool, spec, taxonomy)
        code = {g: i for i, g in enumerate(groups)}
        for what in ("shares", "prevalence", "label_noise"):
            for g in getattr(spec, what):
                if g not in code:
                    raise ConfigError(
                        f"bias spec {what}: group {g!r} is not in the eligible samples"
                        f"{did_you_mean(g, groups)}",
                        f"groups present: {groups}",
                    )
        y = pool[spec.target].to_numpy(np.int8) if spec.target else np.zeros(len(pool), np.int8)
        c = np.zeros(len(pool), np.int8)
        if spec.correlation:
            name, value = spec.correlation.covariate, spec.correlation.value
            taxonomy[name].check(value, where=f"bias spec correlation.value ({name})")
            c = (pool[name].astype(str) == str(value)).to_numpy(np.int8)
        factual = (pool["kind"] == "factual").to_numpy()
        return cls(groups, group, y, c, factual, 2 if spec.target else 1, 2 if spec.correlation else 1)

    @property
    def count(self) -> int:
        return len(self.groups) * self.ny * self.nc

    def cell(self, rows: np.ndarray) -> np.ndarray:
        return (self.group[rows] * self.ny + self.y[rows]) * self.nc + self.c[rows]

    def describe(self, cell: int, spec: BiasSpec) -> str:
        g, rest = divmod(cell, self.ny * self.nc)
        y, c = divmod(rest, self.nc)
        parts = [f"group {self.groups[g]}"] if spec.groups else []
        if spec.target:
            parts.append(f"{spec.target}={y}")
        if spec.correlation:
            op = "=" if c else "!="
            parts.append(f"{spec.correlation.covariate}{op}{spec.correlation.value}")
        return " x ".join(parts) or "all samples"


def _group_labels(pool: pd.DataFrame, spec: BiasSpec, taxonomy: Taxonomy) -> tuple[list[str], np.ndarray]:
    """(sorted group labels, per pool row the index of its label); values are factorized, not joined."""
    if not spec.groups:
        return [ALL], np.zeros(len(pool), np.int64)
    code = np.zeros(len(pool), np.int64)
    names: list[np.ndarray] = []
    for name in spec.groups:
        covariate = covariate_of(name, taxonomy, f"bias spec groups ({name})")
        if covariate.kind == "continuous":  # the taxonomy's bins, as in every report (`group_labels`)
            if not covariate.bins:
                raise ConfigError(
                    f"bias spec groups: {name} is continuous and has no bins",
                    f"add bins under covariates.{name} in the taxonomy",
                )
            codes = covariate.bin_codes(pool[name].to_numpy(), where=f"bias spec groups ({name})")
            uniques = list(covariate.bin_labels)
        else:
            codes, found = pd.factorize(pool[name])
            uniques = [str(u) for u in found]
        codes = np.where(codes < 0, len(uniques), codes)  # a missing value is a group of its own
        uniques = np.asarray([*uniques, MISSING], object)
        code = code * len(uniques) + codes
        names.append(uniques)
    present = np.flatnonzero(np.bincount(code))  # combinations that occur, in code order (O(n), no sort)
    remap = np.zeros(int(code.max()) + 1 if len(code) else 1, np.int64)
    remap[present] = np.arange(len(present))
    inverse = remap[code]
    labels = []
    for value in present:
        parts = []
        for uniques in reversed(names):
            value, i = divmod(int(value), len(uniques))
            parts.append(str(uniques[i]))
        labels.append(" x ".join(reversed(parts)))
    order = np.argsort(labels, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return [labels[i] for i in order], rank[inverse]


# -- units and splits ---------------------------------------------------------------------------------------
def _units(pool: pd.DataFrame, spec: BiasSpec) -> pd.DataFrame:
    """One row per choosable unit: ``row`` (the pool row whose covariates place it in a cell), ``family``
    (a code), ``partner`` (the pair's counterfactual row in paired mode, else -1), ``factual``, ``rank``."""
    rank = _mix(pool["sample_hash"].to_numpy(np.int64), spec.seed)
    family, _ = pd.factorize(pool["family"])
    factual = (pool["kind"] == "factual").to_numpy()
    if spec.pairs is None:
        units = pd.DataFrame(
            {"row": np.arange(len(pool)), "family": family, "partner": -1, "factual": factual, "rank": rank}
        )
        return units.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
    cf = np.flatnonzero(changed_only(pool, spec.pairs))
    factual_row = pd.Series(np.arange(len(pool)), index=pool["key"])
    parents = factual_row.reindex(pool["parent"].to_numpy()[cf]).to_numpy()
    ok = ~np.isnan(parents)
    if not ok.any():
        raise SynthfairError(
            f"no eligible factual-counterfactual pair differs only in {spec.pairs!r}",
            f"generate a release with a {spec.pairs} intervention (e.g. {spec.pairs}: "
            "flip), and keep both kinds in spec.kinds",
        )
    cf, parents = cf[ok], parents[ok].astype(np.int64)
    units = pd.DataFrame(
        {"row": parents, "family": family[cf], "partner": cf, "factual": True, "rank": rank[cf]}
    )
    return units.iloc[np.argsort(rank[cf], kind="stable")].reset_index(drop=True)


def _assign_splits(pool: pd.DataFrame, units: pd.DataFrame, spec: BiasSpec) -> np.ndarray:
    if spec.split_by == "source":
        split = pool["split"].to_numpy(object)[units["row"].to_numpy()]
        unknown = sorted(set(split) - set(spec.splits))
        if len(unknown) == len(set(split)):
            raise ConfigError(
                f"bias spec split_by source: the release's splits {unknown} are none of {list(spec.splits)}",
                "use split_by: patient, or name the release's splits",
            )
        return split
    who = pool["family"].astype(str).radd("family:")  # rows without a patient key: their family alone
    if "patient" in pool.columns:
        who = pool["patient"].astype(object).where(pool["patient"].notna(), who)
    codes, uniques = pd.factorize(who)
    digest = pd.util.hash_array(np.asarray(uniques, dtype=object), categorize=False)  # fixed-key siphash
    u = (_mix(digest.astype(np.int64), spec.seed) >> np.uint64(11)).astype(np.float64) / 2**53
    u = u[codes[units["row"].to_numpy()]]
    names = list(spec.splits)
    edges = np.cumsum([spec.splits[n].fraction for n in names])
    idx = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    return np.asarray(names, object)[idx]


# -- targets ------------------------------------------------------------------------------------------------
def _knobs(spec: BiasSpec, t: float, cells: _Cells, pool: pd.DataFrame, units: pd.DataFrame) -> dict:
    """A split's target distribution, a fraction ``t`` of the way from no bias (0) to the spec's knobs (1):
    share per group, P(y=1 | group), and the correlation strength. Natural shares and rates come from the
    whole eligible pool (``units``), so every split, and the baseline, refer to the same numbers: the no-bias
    prevalence is exactly the biased setting's overall rate."""
    rows = units["row"].to_numpy()
    natural = rows[cells.factual[rows]] if cells.factual[rows].any() else rows
    counts = np.bincount(cells.group[natural], minlength=len(cells.groups)).astype(float)
    pool_share = counts / max(counts.sum(), 1)
    pool_prev = float(cells.y[natural].mean()) if len(natural) else 0.0
    groups = cells.groups
    if spec.shares:
        rest = [g for g in groups if g not in spec.shares]
        left = max(0.0, 1.0 - sum(spec.shares.values()))
        natural = {g: float(v) for g, v in zip(groups, pool_share, strict=True)}
        rest_total = sum(natural[g] for g in rest)
        rest_share = {g: left * natural[g] / rest_total if rest_total else left / len(rest) for g in rest}
        biased = {g: spec.shares.get(g, rest_share.get(g, 0.0)) for g in groups}
        if not rest and abs(sum(biased.values()) - 1) > 1e-6:
            raise ConfigError(
                f"bias spec shares name every group but sum to {sum(biased.values()):.3f}",
                "make them add up to 1",
            )
        unbiased = {g: 1.0 / len(groups) for g in groups}
    else:
        biased = unbiased = {g: float(v) for g, v in zip(groups, pool_share, strict=True)}
    share = {g: unbiased[g] + t * (biased[g] - unbiased[g]) for g in groups}
    prevalence = {}
    if spec.target:
        biased_prev = {g: spec.prevalence.get(g, pool_prev) for g in groups}
        overall = sum(biased[g] * biased_prev[g] for g in groups)  # kept by the matched no-bias setting
        prevalence = {g: overall + t * (biased_prev[g] - overall) for g in groups}
    strength = t * spec.correlation.strength if spec.correlation else None
    return {"share": share, "prevalence": prevalence, "strength": strength}


def _quotas(n: int, knobs: dict, cells: _Cells) -> np.ndarray:
    p = np.zeros(cells.count)
    for gi, g in enumerate(cells.groups):
        for y in range(cells.ny):
            py = (knobs["prevalence"][g] if y else 1 - knobs["prevalence"][g]) if cells.ny == 2 else 1.0
            for c in range(cells.nc):
                if cells.nc == 2:
                    p1 = (1 + knobs["strength"]) / 2 if y else (1 - knobs["strength"]) / 2
                    pc = p1 if c else 1 - p1
                else:
                    pc = 1.0
                p[(gi * cells.ny + y) * cells.nc + c] = knobs["share"][g] * py * pc
    quotas = _largest_remainder(n, dict(enumerate(p)))
    return np.array([quotas[i] for i in range(cells.count)], np.int64)


def _largest_remainder(n: int, weights: dict) -> dict:
    """Integers proportional to ``weights`` that add up to ``n`` exactly (ties broken by key order)."""
    keys = list(weights)
    w = np.array([max(float(weights[k]), 0.0) for k in keys])
    exact = n * w / w.sum() if w.sum() > 0 else np.zeros(len(w))
    base = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - base), kind="stable")
    base[order[: n - int(base.sum())]] += 1
    return dict(zip(keys, base.tolist(), strict=True))


# -- filling ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shortfall:
    cell: int
    needed: int
    available: int


def _fill(units: pd.DataFrame, cells: _Cells, quotas: np.ndarray, spec: BiasSpec):
    """(chosen unit rows, None) or (partial, the first cell that could not be filled)."""
    rows = units["row"].to_numpy()
    cell = cells.cell(rows)
    family = units["family"].to_numpy()
    prefer = ~units["factual"].to_numpy() if spec.prefer_factual else np.zeros(len(units), bool)
    # units come in rank order; a stable (radix) sort by cell, factual first, keeps rank order inside
    sort_key = cell.astype(np.int64) * 2 + prefer
    order = np.argsort(sort_key.astype(np.int16) if cells.count < 16000 else sort_key, kind="stable")
    # one candidate per (cell, family): its best-ranked member
    first = np.ones(len(order), bool)
    key = cell[order].astype(np.int64) * (family.max() + 2 if len(family) else 1) + family[order]
    seen = pd.Series(key).duplicated().to_numpy()
    first &= ~seen
    order = order[first]
    bounds = np.searchsorted(cell[order], np.arange(cells.count + 1))
    available = np.diff(bounds)
    needed = quotas.astype(float)
    scarcity = np.where(needed > 0, available / np.maximum(needed, 1), np.inf)
    used = np.zeros(family.max() + 1 if len(family) else 0, bool)
    chosen = []
    for c in np.argsort(scarcity, kind="stable"):
        if quotas[c] == 0:
            continue
        candidates = order[bounds[c] : bounds[c + 1]]
        candidates = candidates[~used[family[candidates]]]
        take = candidates[: quotas[c]]
        if len(take) < quotas[c]:
            return units.iloc[np.concatenate(chosen)] if chosen else units.iloc[:0], _Shortfall(
                int(c), int(quotas[c]), int(len(candidates))
            )
        used[family[take]] = True
        chosen.append(take)
    picked = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    return units.iloc[np.sort(picked)], None


def _rows_of(picked: pd.DataFrame, pool: pd.DataFrame, spec: BiasSpec, split: str) -> pd.DataFrame:
    """The output rows of the chosen units: both members of a pair in paired mode."""
    keep = [
        c
        for c in (
            "key",
            "family",
            "kind",
            "shard",
            "split",
            "sample_hash",
            *spec.groups,
            *([spec.correlation.covariate] if spec.correlation else []),
            *spec.where,
            *([spec.pairs] if spec.pairs else []),
        )
        if c in pool.columns
    ]
    keep = list(dict.fromkeys(keep))
    main = pool.iloc[picked["row"].to_numpy()][keep].reset_index(drop=True)
    main["_row"] = picked["row"].to_numpy()
    if spec.pairs is not None:
        main["pair"] = main["family"]
        partner = pool.iloc[picked["partner"].to_numpy()][keep].reset_index(drop=True)
        partner["_row"] = picked["partner"].to_numpy()
        partner["pair"] = main["pair"]
        main = pd.concat([main, partner], ignore_index=True)
    main = main.rename(columns={"split": "source_split"})
    main.insert(4, "split", split)
    return main


# -- label noise and statistics -----------------------------------------------------------------------------
def _apply_label_noise(table: pd.DataFrame, spec: BiasSpec, cells: _Cells) -> pd.DataFrame:
    rows = table.pop("_row").to_numpy()
    table["group"] = np.asarray(cells.groups, object)[cells.group[rows]]
    if not spec.target:
        return table
    y = cells.y[rows].astype(np.int8)
    flipped = np.zeros(len(table), bool)
    noisy = table["split"].map(lambda s: spec.splits[s].label_noise).to_numpy(bool)
    rank = _mix(table["sample_hash"].to_numpy(np.int64), spec.seed + 1)  # a different draw from selection
    unit = np.ones(len(table), bool) if spec.pairs is None else (table["kind"] == "factual").to_numpy()
    for group, flip in spec.label_noise.items():
        for truth, rate in ((1, flip.positive_to_negative), (0, flip.negative_to_positive)):
            for split in table["split"].unique():
                idx = np.flatnonzero(
                    unit
                    & noisy
                    & (table["group"].to_numpy() == group)
                    & (y == truth)
                    & (table["split"].to_numpy() == split)
                )
                k = int(round(rate * len(idx)))
                flipped[idx[np.argsort(rank[idx], kind="stable")[:k]]] = True
    if spec.pairs is not None:  # a pair shares its factual member's flip: the pair still differs in one thing
        by_pair = dict(zip(table["pair"].to_numpy()[unit], flipped[unit], strict=True))
        flipped = table["pair"].map(by_pair).to_numpy(bool)
    table["target_true"] = y
    table["target"] = np.where(flipped, 1 - y, y).astype(np.int8)
    table["target_flipped"] = flipped
    table["correlated"] = cells.c[rows].astype(bool) if spec.correlation else False
    return table


def _achieved(rows: pd.DataFrame, spec: BiasSpec, cells: _Cells, planned: dict) -> dict:
    knobs = planned["knobs"]
    unit = rows if spec.pairs is None else rows[rows["kind"] == "factual"]  # pairs count once
    out: dict[str, Any] = {"size": {"target": planned["size"], "achieved": len(unit)}}
    shares = unit["group"].value_counts(normalize=True)
    out["shares"] = {
        g: {
            "target": round(knobs["share"][g], 6),
            "achieved": round(float(shares.get(g, 0)), 6),
            "n": int((unit["group"] == g).sum()),
        }
        for g in cells.groups
    }
    if spec.target:
        prev = unit.groupby("group")["target_true"].mean()
        observed = unit.groupby("group")["target"].mean()
        out["prevalence"] = {
            g: {
                "target": round(knobs["prevalence"][g], 6),
                "achieved": round(float(prev.get(g, np.nan)), 6),
                "observed_after_label_noise": round(float(observed.get(g, np.nan)), 6),
            }
            for g in cells.groups
        }
    if spec.correlation:
        y, c = unit["target_true"].to_numpy(), unit["correlated"].to_numpy()
        p1 = float(c[y == 1].mean()) if (y == 1).any() else float("nan")
        p0 = float(c[y == 0].mean()) if (y == 0).any() else float("nan")
        out["correlation"] = {
            "target_strength": knobs["strength"],
            "achieved_strength": round(p1 - p0, 6),
            "p_value_given_target_1": round(p1, 6),
            "p_value_given_target_0": round(p0, 6),
            "phi": round(_phi(y, c), 6),
        }
    noisy = len(rows) > 0 and spec.splits[rows["split"].iloc[0]].label_noise
    if spec.target and spec.label_noise and noisy:
        noise = {}
        for group, flip in spec.label_noise.items():
            g = unit[unit["group"] == group]
            pos, neg = g[g["target_true"] == 1], g[g["target_true"] == 0]
            noise[group] = {
                "positive_to_negative": {
                    "target": flip.positive_to_negative,
                    "achieved": _rate(pos["target_flipped"]),
                },
                "negative_to_positive": {
                    "target": flip.negative_to_positive,
                    "achieved": _rate(neg["target_flipped"]),
                },
            }
        out["label_noise"] = noise
    out["families"] = int(rows["family"].nunique())
    return out


def _rate(flags: pd.Series) -> float | None:
    return round(float(flags.mean()), 6) if len(flags) else None


def _phi(y: np.ndarray, c: np.ndarray) -> float:
    if len(y) < 2 or y.std() == 0 or c.std() == 0:
        return 0.0
    return float(np.corrcoef(y.astype(float), c.astype(float))[0, 1])


# -- infeasible specs ---------------------------------------------------------------------------------------
def _infeasible(spec, split, short: _Shortfall, cells, pool, units, unit_split, sizes) -> ConfigError:
    what = cells.describe(short.cell, spec)
    feasible = lambda size, t: _feasible(replace(spec, size=size), t, pool, units, unit_split, cells)  # noqa: E731
    best_size = _largest(lambda n: feasible(n, 1.0), 1, spec.size - 1)
    hint = [
        f"the largest feasible size with these knobs is {best_size}"
        if best_size
        else "no size is feasible with these knobs"
    ]
    if spec.splits[split].biased and spec.knobs:
        steps = 20
        best = _largest(lambda k: feasible(spec.size, k / steps), 0, steps - 1)
        if best is not None:
            knobs = _knobs(spec, best / steps, cells, pool, units)
            hint.append(
                f"at size {spec.size} the knobs can go {best / steps:.0%} of the way from no bias "
                f"({_knob_text(knobs, spec)})"
            )
        else:
            hint.append(f"even without bias, size {spec.size} is out of reach")
    return ConfigError(
        f"bias spec infeasible in split {split!r}: {what} needs {short.needed} samples but only "
        f"{short.available} unused families can supply one ({sizes[split]} samples in the split)",
        "; ".join(hint) + "; or allow counterfactual kinds, widen where, or generate more families",
    )


def _largest(ok, lo: int, hi: int) -> int | None:
    """The largest k in [lo, hi] with ``ok(k)``, assuming ok is monotone (binary search)."""
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _feasible(spec: BiasSpec, t: float, pool, units, unit_split, cells) -> bool:
    sizes = _largest_remainder(spec.size, {name: s.fraction for name, s in spec.splits.items()})
    for name, split in spec.splits.items():
        in_split = units[unit_split == name]
        quotas = _quotas(sizes[name], _knobs(spec, t if split.biased else 0.0, cells, pool, units), cells)
        if _fill(in_split, cells, quotas, spec)[1] is not None:
            return False
    return True


def _knob_text(knobs: dict, spec: BiasSpec) -> str:
    parts = []
    if spec.shares:
        parts.append("shares " + ", ".join(f"{g} {knobs['share'][g]:.3f}" for g in spec.shares))
    if spec.prevalence:
        parts.append("prevalence " + ", ".join(f"{g} {knobs['prevalence'][g]:.3f}" for g in spec.prevalence))
    if spec.correlation:
        parts.append(f"correlation.strength {knobs['strength']:.3f}")
    return "; ".join(parts)


# -- helpers ------------------------------------------------------------------------------------------------
def _mix(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (value + seed): a seeded, platform-independent rank per sample_hash."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def release_location(release: str | Path) -> str:
    """A release's location as recorded in subset.json: URLs as given, local paths absolute."""
    text = str(release)
    return text if "://" in text else str(Path(text).resolve())
