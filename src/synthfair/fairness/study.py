"""Downstream bias studies: a grid of bias specs, a classifier per cell, fairness per subgroup.

A study spec (YAML, or `StudySpec` in Python)::

    base:                          # a bias spec (docs/sampling.md) shared by every cell
      size: 120
      target: findings.cardiomegaly
      prevalence: {all: 0.5}
      correlation: {covariate: device, value: philips, strength: 0.0}
      splits: {train: 0.6, validate: 0.2, test: 0.2}
    grid:                          # knob -> values; the cells are the product of the lists
      correlation.strength: [0.0, 0.9]
    groups: [device=philips]       # sensitive attributes of the group metrics (intersections if several;
                                   # name=value: that value against all others)
    classifier: {epochs: 15}       # ClassifierConfig
    seeds: [0]                     # one classifier per seed and cell
    baseline: true                 # also train on each cell's matched no-bias baseline
    counterfactual: device         # flip rate on factual-counterfactual pairs differing only in it
    causal: {x: device, x1: philips}   # TV decomposition of the predictions (and of the training labels)
    threshold: 0.5                 # or f1: the threshold maximizing F1 on the validation split
    rebalance:                     # also train each biased cell rebalanced (same budget per method)
      {attribute: sex, minority: female, methods: [none, reweight, oversample, generate]}

    result = run_study(load_study_spec("study.yaml"), "release/", "study/", checkpoint="runs/NAME")
    study/results.json   every number;   study/report.html   plots of each metric against the bias, per group

Per cell and variant (biased subset, matched baseline) and seed: sample the subset from the release,
read its images from the shards, train the classifier on the training split (labels with the spec's label
noise), score the balanced test split against the true labels: group metrics (fairlearn's MetricFrame over
the groups, bootstrap intervals), counterfactual fairness on the test families' pairs, and the causal
decomposition of the disparity in predictions over the protected attribute (confounders = its ancestors in
the taxonomy's graph, mediators = its descendants).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import synthfair
from synthfair.config import config_to_dict, dataclass_from_dict, read_yaml
from synthfair.data import release_images
from synthfair.errors import ConfigError
from synthfair.fairness.causal import tv_decomposition
from synthfair.fairness.classifier import ClassifierConfig, train_classifier
from synthfair.fairness.counterfactual import counterfactual_fairness
from synthfair.fairness.fidelity import fidelity as study_fidelity
from synthfair.fairness.fidelity import summary as fidelity_summary
from synthfair.fairness.groups import f1_threshold, group_metrics
from synthfair.fairness.rebalance import RebalanceSpec, training_set
from synthfair.fairness.representation import representation
from synthfair.fileio import jsonable, write_json
from synthfair.sampling import bias_spec_from_dict, read_samples, sample, write_subset
from synthfair.sampling.sampler import changed_only, release_location
from synthfair.sampling.spec import BiasSpec
from synthfair.taxonomy import MISSING, Taxonomy, load_taxonomy

SCHEMA = "synthfair.study/1"


@dataclass(frozen=True)
class CausalSpec:
    x: str  # the protected attribute, e.g. sex, race or device
    x1: str  # its value compared with all others (x0), e.g. philips
    x0: str | None = None  # None: every other value


@dataclass(frozen=True)
class StudySpec:
    base: dict[str, Any]
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    groups: tuple[str, ...] = ("sex",)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    seeds: tuple[int, ...] = (0,)
    baseline: bool = True
    counterfactual: str | None = None
    causal: CausalSpec | None = None
    threshold: Any = 0.5  # a number, or "f1"
    n_boot: int = 100
    rebalance: RebalanceSpec | None = None  # also train each biased cell's training split rebalanced

    def __post_init__(self) -> None:
        if not (self.threshold == "f1" or isinstance(self.threshold, (int, float))):
            raise ConfigError(
                f"study threshold {self.threshold!r} is neither a number nor 'f1'", "use e.g. threshold: 0.5"
            )
        if not self.seeds:
            raise ConfigError("study seeds is empty", "use e.g. seeds: [0]")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 1:
            raise ConfigError(
                f"study n_boot must be an integer >= 1, got {self.n_boot!r}", "use e.g. n_boot: 100"
            )
        if not self.base.get("target"):
            raise ConfigError(
                "the study's base bias spec has no target: the classifiers need a label",
                "add e.g. target: findings.cardiomegaly under base",
            )
        for knob, values in self.grid.items():
            if not values:
                raise ConfigError(f"study grid {knob!r} has no values", f"e.g. {knob}: [0.0, 0.9]")

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, as {knob: value}."""
        knobs = list(self.grid)
        return [dict(zip(knobs, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def bias_spec(self, cell: Mapping[str, Any]) -> BiasSpec:
        data = json.loads(json.dumps(self.base))
        for knob, value in cell.items():
            _set(data, _knob_path(knob), value)
        return bias_spec_from_dict(data, where=f"study cell {dict(cell)}")


@dataclass(frozen=True)
class StudyResult:
    out: Path
    results: list[dict[str, Any]]  # one per cell x variant x seed
    truth_results: list[dict[str, Any]] | None = None  # the same on the exact release, if given
    fidelity: dict[str, Any] | None = None  # model minus truth per metric (synthfair.fairness.fidelity)

    def table(self, metric: str = "auroc") -> pd.DataFrame:
        """Per cell, variant, seed and group: ``metric`` with its interval."""
        rows = []
        for r in self.results:
            for g in r["groups"]["by_group"]:
                rows.append(
                    {
                        **r["cell"],
                        "variant": r["variant"],
                        "seed": r["seed"],
                        "group": g["group"],
                        metric: g.get(metric),
                        "lo": g.get(f"{metric}_lo"),
                        "hi": g.get(f"{metric}_hi"),
                        "count": g.get("count"),
                    }
                )
        return pd.DataFrame(rows)


def load_study_spec(path: str | Path) -> StudySpec:
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a study spec is a mapping", "see docs/fairness.md")
    return dataclass_from_dict(StudySpec, data, where=str(path))


def run_study(
    spec: StudySpec,
    release: str | Path,
    out: str | Path,
    taxonomy: Taxonomy | None = None,
    on_cell: Callable[[str], None] | None = None,
    checkpoint: str | Path | None = None,
    truth: str | Path | None = None,
) -> StudyResult:
    """Run every cell of ``spec`` on ``release``; write results.json and report.html into ``out``.
    ``checkpoint`` (the generator) is needed by ``rebalance`` with the ``generate`` method. With ``truth``
    (the exact release of the same plan) every cell also runs on it, on the same samples, and results.json
    gets its results (``truth_results``) and the study's ``fidelity`` (`synthfair.fairness.fidelity`)."""
    from synthfair.fairness.report import write_study_report

    taxonomy = taxonomy or load_taxonomy()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    on_cell = on_cell or (lambda text: None)
    engine = _engine(spec, checkpoint)
    frame, _, digest = read_samples(release)
    runs = [_Run(spec, str(release), frame, taxonomy, engine, on_cell)]
    if truth is not None:
        truth_frame, _, truth_digest = read_samples(truth)
        truth_frame = shared_samples(truth_frame, frame, truth, release)
        runs.insert(0, _Run(spec, str(truth), truth_frame, taxonomy, engine, on_cell))
    drawn_from, drawn_digest = (truth, truth_digest) if truth is not None else (release, digest)
    cells = spec.cells() or [{}]
    results: list[list[dict[str, Any]]] = [[] for _ in runs]
    for i, cell in enumerate(cells):
        bias = spec.bias_spec(cell)
        variants = [("biased", bias)] + ([("baseline", bias.baseline())] if spec.baseline else [])
        for variant, variant_spec in variants:
            subset = replace(
                sample(runs[0].frame, variant_spec, taxonomy),
                release=release_location(drawn_from),
                samples_sha256=drawn_digest,
            )
            where = {
                "cell": cell,
                "cell_index": i,
                "subset": str(write_subset(subset, out / "cells" / f"{i:02d}-{variant}")),
            }
            for run, into in zip(runs, results, strict=True):
                images = run.images(subset.table)
                for seed in spec.seeds:
                    name = "truth" if run is not runs[-1] else "study"
                    run.on_cell(f"cell {i + 1}/{len(cells)} {_label(cell)} {variant} seed {seed} ({name})")
                    result = _run_cell(run, subset, images, seed)
                    into.append({**where, "variant": variant, "seed": seed, **result})
                    if variant == "biased" and spec.rebalance:
                        into += _rebalanced(run, subset, images, seed, where)
    meta = {
        "schema": SCHEMA,
        "release": str(release),
        "samples_sha256": digest,
        "spec": config_to_dict(spec),
        "results": results[-1],
        "synthfair_version": synthfair.__version__,
    }
    fidelity = None
    if truth is not None:
        fidelity = study_fidelity(results[-1], results[0])
        meta["truth"], meta["truth_samples_sha256"] = str(truth), truth_digest
        meta["truth_results"] = results[0]
        meta["fidelity"] = {"summary": fidelity_summary(fidelity), "by_cell": fidelity}
    write_json(out / "results.json", jsonable(meta))
    write_study_report(out / "report.html", spec, results[-1], meta.get("fidelity"))
    return StudyResult(out, results[-1], results[0] if truth is not None else None, meta.get("fidelity"))


def shared_samples(truth: pd.DataFrame, frame: pd.DataFrame, truth_path, release) -> pd.DataFrame:
    """The exact release's samples that the model's release holds too (a model release may cover only the
    first families of the plan): every cell is drawn from these, so both runs read the same samples."""
    shared = truth[truth["key"].isin(frame["key"])].reset_index(drop=True)
    if shared.empty:
        raise ConfigError(
            f"the release {release} and the exact release {truth_path} share no sample",
            "generate both from the same plan (synthfair generate --engine phantom for the exact one)",
        )
    return shared


@dataclass(frozen=True)
class _Run:
    """What every cell of a study shares."""

    spec: StudySpec
    release: str
    frame: pd.DataFrame  # the release's samples.parquet
    taxonomy: Taxonomy
    engine: Any  # a CounterfactualEngine when rebalancing by generation
    on_cell: Callable[[str], None]
    cache: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)

    def images(self, rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """key -> (image, record) for ``rows`` (keys, perhaps of another release of the same plan); each
        sample is read from this release's shards once per study, however many cells and seeds use it."""
        missing = rows.loc[~rows["key"].isin(self.cache.keys()), ["key"]]
        if not missing.empty:
            shards = missing.merge(self.frame[["key", "shard"]], on="key", how="left")
            if shards["shard"].isna().any():
                key = shards.loc[shards["shard"].isna(), "key"].iloc[0]
                hint = "compare releases generated from the same plan"
                raise ConfigError(f"sample {key} is not in the release {self.release}", hint)
            self.cache.update(release_images(self.release, shards.astype({"shard": int})))
        return {key: self.cache[key] for key in rows["key"]}


# -- one cell -----------------------------------------------------------------------------------------------
def _run_cell(run: _Run, subset, images, seed: int, train_set=None) -> dict[str, Any]:
    spec, taxonomy = run.spec, run.taxonomy
    table = subset.table
    train, validate, test = (table[table["split"] == s] for s in ("train", "validate", "test"))
    if test.empty:
        raise ConfigError(
            "the study's bias spec gives an empty test split", "give splits.test a fraction > 0"
        )
    config = ClassifierConfig(**{**config_to_dict(spec.classifier), "seed": seed})
    if train_set is None:
        train_set = (np.stack([images[k][0] for k in train["key"]]), train["target"].to_numpy(), None, None)
    x, y, weights, per_epoch = train_set
    model = train_classifier(x, y, config, weights=weights, samples_per_epoch=per_epoch)
    scores = model.predict(np.stack([images[k][0] for k in test["key"]]))
    threshold = _threshold(spec, model, validate, images)
    records = [images[k][1] for k in test["key"]]
    groups = _covariate_frame(records, spec.groups, taxonomy)
    y_true = test["target_true"].to_numpy()
    out: dict[str, Any] = {
        "threshold": threshold,
        "subset_stats": {s: _short_stats(v) for s, v in subset.stats.items()},
        "groups": _labelled(
            group_metrics(
                y_true, scores, groups, threshold=threshold, n_boot=spec.n_boot, seed=seed
            ).to_dict()
        ),
    }
    out["representation"] = _representation(run, train, subset.spec.target)
    if spec.counterfactual:
        out["counterfactual"] = _counterfactual(run, model, test, threshold, seed)
    if spec.causal:
        out["causal"] = _causal(
            spec, records, scores >= threshold, train, images, seed, taxonomy, subset.spec.target
        )
    return out


def _rebalanced(run: _Run, subset, images, seed: int, where: dict[str, Any]) -> list[dict]:
    """The biased cell's training split rebalanced by each method, every one with the same number of
    samples per epoch (``none``: the biased split as drawn, cycled to that number)."""
    train = subset.table[subset.table["split"] == "train"]
    rebalance = run.spec.rebalance
    out = []
    for method in rebalance.methods:
        run.on_cell(f"  rebalance by {method}")
        x, y, w, info = training_set(method, train, images, rebalance, subset.spec.target, seed, run.engine)
        result = _run_cell(run, subset, images, seed, train_set=(x, y, w, info["samples_per_epoch"]))
        out.append({**where, "variant": f"rebalance:{method}", "seed": seed, "rebalance": info, **result})
    return out


def _engine(spec: StudySpec, checkpoint):
    if not (spec.rebalance and "generate" in spec.rebalance.methods):
        return None
    if checkpoint is None:
        raise ConfigError(
            "the study rebalances by generation but no generator was given",
            "pass --checkpoint runs/NAME (or the shipped model's directory)",
        )
    from synthfair.counterfactual import CounterfactualEngine, EngineConfig

    settings = EngineConfig.recommended(checkpoint, steps=spec.rebalance.steps, batch_size=16)  # routes kept
    return CounterfactualEngine.load(checkpoint, settings)


def _labelled(report: dict[str, Any]) -> dict[str, Any]:
    """Each group row also gets ``group``: its values joined (``female x black``)."""
    for row in report["by_group"]:
        row["group"] = " x ".join(str(row[c]) for c in report["group_columns"])
    return report


def _representation(run: _Run, train: pd.DataFrame, target: str | None) -> dict[str, Any]:
    """The training split's groups against the release's factual images: shares, log disparity, EDF."""
    frame = run.frame
    data = frame[frame["key"].isin(set(train["key"]))]
    reference = frame[frame["kind"] == "factual"]
    by = list(dict.fromkeys(g.partition("=")[0] for g in run.spec.groups))
    return representation(data, reference, by, target=target, taxonomy=run.taxonomy).to_dict()


def _threshold(spec, model, validate, images) -> float:
    """The spec's threshold, or ("f1") the one maximizing F1 on the validation split (0.5 without one)."""
    if spec.threshold != "f1":
        return float(spec.threshold)
    if validate.empty or validate["target"].nunique() < 2:
        return 0.5
    scores = model.predict(np.stack([images[k][0] for k in validate["key"]]))
    return f1_threshold(validate["target"].to_numpy(), scores)


def _counterfactual(run: _Run, model, test, threshold, seed) -> dict[str, Any]:
    """Pairs (factual, counterfactual differing only in the attribute) of the test split's families."""
    spec, frame = run.spec, run.frame
    attribute = spec.counterfactual
    cf = frame[changed_only(frame, attribute) & frame["family"].isin(set(test["family"])).to_numpy()]
    factual = frame[frame["key"].isin(set(cf["parent"]))]
    cf = cf[cf["parent"].isin(set(factual["key"]))]  # a pair needs its factual member in the release
    if cf.empty or factual.empty:
        return {
            "note": f"the release has no counterfactual pairs differing only in {attribute!r} for the "
            "test families"
        }
    images = run.images(pd.concat([cf, factual]))
    score = {
        k: s for k, s in zip(images, model.predict(np.stack([v[0] for v in images.values()])), strict=True)
    }
    pairs = pd.DataFrame(
        {
            "score_factual": [score[p] for p in cf["parent"]],
            "score_counterfactual": [score[k] for k in cf["key"]],
            "group": [images[p][1]["covariates"].get(attribute) for p in cf["parent"]],
        }
    )
    result = counterfactual_fairness(
        pairs,
        "score_factual",
        "score_counterfactual",
        threshold=threshold,
        by=["group"],
        n_boot=spec.n_boot,
        seed=seed,
    )
    return {"attribute": attribute, "pairs": len(pairs), **_as_dict(result)}


def _causal(spec, records, predicted, train, images, seed, taxonomy, target) -> dict[str, Any]:
    """TV decomposition over the protected attribute: of the predictions on the test split and of the
    training labels (the bias the data carries). Z = the attribute's ancestors in the taxonomy's graph;
    W = its descendants: for predictions the target finding and the others (the image shows them all), for
    labels only those that are not the finding or its effects (adjusting for an outcome's child biases)."""
    c = spec.causal
    plain = lambda names: [n for n in names if n in taxonomy.names and taxonomy[n].kind != "multilabel"]  # noqa: E731
    head = target.partition(".")[0]
    z = plain(taxonomy.ancestors(c.x))
    below = taxonomy.descendants(c.x)
    w_predictions = ([target] if head in below else []) + plain(below)
    w_labels = [n for n in plain(below) if n not in taxonomy.descendants(head)]
    out = {"x": c.x, "x1": c.x1, "x0": c.x0 or f"not {c.x1}", "z": z}
    for name, recs, y, w in (
        ("predictions", records, np.asarray(predicted, int), w_predictions),
        ("training_labels", [images[k][1] for k in train["key"]], train["target"].to_numpy(), w_labels),
    ):
        data = _covariate_frame(recs, [c.x, *z, *w], taxonomy)
        known = (data[c.x] != MISSING).to_numpy()  # samples without the attribute say nothing about it
        data, y = data[known], y[known]
        data["x"] = np.where(data[c.x] == c.x1, "x1", "x0")
        if c.x0 is not None:
            keep = data[c.x].isin([c.x1, c.x0]).to_numpy()
            data, y = data[keep], y[keep]
        data["y"] = y
        if data["x"].nunique() < 2:
            out[name] = {"w": w, "note": f"only one value of {c.x} in the data"}
            continue
        result = tv_decomposition(data, "x", "x0", "x1", "y", z, w, n_boot=spec.n_boot, seed=seed)
        out[name] = {"w": w, **_as_dict(result)}
    return out


# -- helpers ------------------------------------------------------------------------------------------------
def _covariate_frame(records: list[dict[str, Any]], names, taxonomy: Taxonomy) -> pd.DataFrame:
    """The records' covariates as subgroup labels (`Taxonomy.group_labels`: continuous ones in their
    taxonomy bins, findings 0/1, `MISSING` when unknown); ``name=value`` is a binary group: the value or
    ``not value``."""
    flat = [taxonomy.flatten(r["covariates"]) for r in records]
    flat = pd.DataFrame(flat, columns=taxonomy.columns(), dtype=object)  # object: 0/1 stay ints beside None
    columns = {}
    for name in names:
        column, _, value = name.partition("=")  # device=philips: a binary group, philips vs not philips
        labels = taxonomy.group_labels(flat, [column])[column].map(str)
        if value:
            labels = labels.where(labels == value, f"not {value}")
        columns[name] = labels.to_numpy(object)
    return pd.DataFrame(columns)


def _short_stats(stats: dict[str, Any]) -> dict[str, Any]:
    keep = {"size": stats["size"]["achieved"]}
    if "correlation" in stats:
        keep["correlation_strength"] = stats["correlation"]["achieved_strength"]
    if "prevalence" in stats:
        keep["prevalence"] = {g: v["achieved"] for g, v in stats["prevalence"].items()}
    if "shares" in stats:
        keep["shares"] = {g: v["achieved"] for g, v in stats["shares"].items()}
    return keep


def _knob_path(knob: str) -> list[str]:
    """A grid knob's key path in the bias spec: ``correlation.strength`` -> [correlation, strength];
    mapping-valued keys keep the rest whole (``where.findings.cardiomegaly``, ``shares.female x black``)."""
    head, _, rest = knob.partition(".")
    if head in ("where", "shares", "prevalence", "label_noise") and rest:
        if head == "label_noise" and "." in rest:  # label_noise.<group>.<rate>
            group, _, rate = rest.rpartition(".")
            return [head, group, rate]
        return [head, rest]
    return [head, *rest.split(".")] if rest else [head]


def _set(data: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(
                f"study grid knob {'.'.join(path)!r} goes through a non-mapping", "check the knob"
            )
    data[path[-1]] = value


def _label(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items()) or "no grid"


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, pd.DataFrame):
        return {"table": result.to_dict("records")}
    return dict(result)
