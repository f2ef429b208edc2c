"""`evaluate`: the soundness report of a release — reads shards only; the generator is optional.

    result = evaluate("release/", "oracles/", "report/", checkpoint="runs/NAME", train_data="cache-64/")
    report/metrics.json   every number, for machines
    report/report.html    self-contained: tables, image grids (factual | counterfactual | difference)

Every per-sample metric is also summarized per intersectional subgroup of the factual covariates (the
taxonomy's patient covariates: sex x race x age group) with counts and bootstrap intervals.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.errors import ConfigError
from synthfair.evaluate import realism, soundness
from synthfair.evaluate.independence import check_independence
from synthfair.evaluate.oracles import Oracles
from synthfair.evaluate.release_truth import phantom_truth
from synthfair.evaluate.report import write_report
from synthfair.evaluate.samples import ReleaseSamples, read_release
from synthfair.fileio import jsonable, write_json
from synthfair.model.data import CacheDataset
from synthfair.model.diffusion import resolve_model
from synthfair.release import layout
from synthfair.release.card import intersection_axes
from synthfair.taxonomy import Taxonomy, load_taxonomy

SCHEMA = "synthfair.evaluation/1"
NOT_MEASURED_GENERATOR = "not measured: needs the generator (pass --checkpoint)"
NOT_MEASURED_TRAINING = "not measured: needs the model's training images (pass --train-data CACHE)"


@dataclass(frozen=True)
class EvaluateConfig:
    composition_samples: int = 8  # factual images put through the null intervention `cycles` times
    cycles: int = 10
    reversibility_samples: int = 16  # counterfactuals intervened back to their factual values
    components: int = 32  # principal components of the features for FID
    bootstrap: int = 200  # resamples for the intervals
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cycles < 1 or self.bootstrap < 10:
            raise ConfigError(
                f"evaluate needs cycles >= 1 and bootstrap >= 10, got {self.cycles}, {self.bootstrap}",
                "use e.g. cycles 10, bootstrap 200",
            )


@dataclass(frozen=True)
class Evaluation:
    out: Path
    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame]  # per-sample tables: effectiveness, amplification, truth, ...


def evaluate(
    release: str | Path,
    oracles: str | Path | Oracles,
    out: str | Path,
    config: EvaluateConfig | None = None,
    checkpoint: str | Path | None = None,
    train_data: str | Path | None = None,
    taxonomy: Taxonomy | None = None,
) -> Evaluation:
    config = config or EvaluateConfig()
    taxonomy = taxonomy or load_taxonomy()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples = read_release(release)
    oracles = oracles if isinstance(oracles, Oracles) else Oracles.load(oracles)
    generator = layout.read_request(release).get("generator")
    if checkpoint is not None and generator == "phantom":
        raise ConfigError(
            f"{release} holds the phantom's exact counterfactuals: no generator to check with --checkpoint",
            "evaluate it without --checkpoint",
        )
    independence = (  # before any work: oracles that trained or guided the generator are refused
        check_independence(oracles, resolve_model(checkpoint)).as_dict()
        if checkpoint is not None
        else {"note": NOT_MEASURED_GENERATOR}
    )
    predictions = oracles.predict(samples.images)
    features = oracles.features(samples.images)
    axes = intersection_axes(taxonomy)
    tables: dict[str, pd.DataFrame] = {}
    metrics: dict[str, Any] = {
        "schema": SCHEMA,
        "release": str(Path(release).resolve()),
        "samples": len(samples.keys),
        "kinds": pd.Series([r["kind"] for r in samples.records]).value_counts().to_dict(),
        "subgroup_axes": axes,
        "oracles": {o.covariate: o.metrics for o in oracles},
        "oracle_independence": independence,
        "config": asdict(config),
    }

    def by_label_and_subgroup(name: str, table: pd.DataFrame, columns: list[str], by: list[str]) -> None:
        if table.empty:
            metrics[name] = {"note": "no samples to measure"}
            return
        table["subgroup"] = soundness.subgroups(samples, table["row"].tolist(), taxonomy, axes)
        tables[name] = table
        metrics[name] = {
            "by_intervention": _records(
                soundness.summarize(table, by, columns, config.seed, config.bootstrap)
            ),
            "by_subgroup": _records(
                soundness.summarize(table, [*by[1:], "subgroup"], columns, config.seed, config.bootstrap)
            ),
        }

    eff = soundness.effectiveness(samples, predictions, oracles)
    columns = [c for c in ("correct", "baseline_correct", "abs_error", "baseline_abs_error") if c in eff]
    by_label_and_subgroup("effectiveness", eff, columns, ["label", "covariate"])
    if not eff.empty:
        metrics["effectiveness"]["auc"] = _records(soundness.effectiveness_auc(eff, predictions, oracles))
    amp = soundness.amplification(samples, predictions, oracles)
    by_label_and_subgroup("amplification", amp, ["delta", "abs_delta"], ["label", "covariate"])
    truth = phantom_truth(samples, oracles)
    truth_columns = [
        c for c in ("mae_model", "mae_unchanged", "effectiveness", "amplification") if c in truth
    ]
    by_label_and_subgroup("phantom_truth", truth, truth_columns, ["label"])
    if truth.attrs.get("skipped"):
        metrics["phantom_truth"]["skipped"] = truth.attrs["skipped"]
    metrics["realism"] = _realism(samples, features, taxonomy, axes, config)
    metrics["privacy"], privacy_pairs = _privacy(samples, oracles, features, train_data)
    if checkpoint is None:
        metrics["composition"] = metrics["reversibility"] = {"note": NOT_MEASURED_GENERATOR}
    else:
        _generator_metrics(samples, oracles, checkpoint, release, config, metrics, tables, taxonomy, axes)
    write_json(out / "metrics.json", jsonable(metrics))
    write_report(out / "report.html", samples, metrics, tables, privacy_pairs)
    return Evaluation(out, metrics, tables)


def _realism(samples: ReleaseSamples, features, taxonomy, axes, config) -> dict[str, Any]:
    factual = samples.of_kind("factual")
    generated = samples.of_kind("counterfactual")
    if len(factual) < 3 or len(generated) < 3:
        return {"note": "needs at least 3 factual and 3 counterfactual samples"}
    real, fake = realism.project(features[factual], features[generated], components=config.components)
    out: dict[str, Any] = {
        "fid": realism.fid(real, fake),
        "kid": realism.kid(real, fake, seed=config.seed),
        "factual": len(factual),
        "counterfactual": len(generated),
        "feature_components": real.shape[1],
        "by_subgroup": [],
    }
    groups_f = soundness.subgroups(samples, factual, taxonomy, axes)
    groups_g = soundness.subgroups(samples, generated, taxonomy, axes)
    for group in sorted(set(groups_f)):
        rf = real[[g == group for g in groups_f]]
        rg = fake[[g == group for g in groups_g]]
        if len(rf) >= 2 and len(rg) >= 2:
            out["by_subgroup"].append(
                {
                    "subgroup": group,
                    "factual": len(rf),
                    "counterfactual": len(rg),
                    "kid": realism.kid(rf, rg, seed=config.seed),
                }
            )
    return out


def _privacy(samples, oracles, features, train_data):
    if train_data is None:
        return {"note": NOT_MEASURED_TRAINING}, []
    train = CacheDataset(train_data, split="train")
    train_images = np.stack([train.image(i) for i in range(len(train))])
    generated = samples.of_kind("counterfactual") + samples.of_kind("reconstruction")
    result = realism.privacy(features[generated], oracles.features(train_images))
    pairs = [
        (samples.images[generated[g]], train_images[t], d, samples.keys[generated[g]], train.keys[t])
        for g, t, d in result.closest(6)
    ]
    metrics = {
        "train_images": len(train),
        "generated": len(generated),
        "threshold": result.threshold,
        "memorized_share": result.share,
        "median_distance": float(np.median(result.distances)),
        "closest": [{"generated": p[3], "train": p[4], "distance": p[2]} for p in pairs],
    }
    return metrics, pairs


def _generator_metrics(
    samples, oracles, checkpoint, release, config, metrics, tables, taxonomy, axes
) -> None:
    request = layout.read_request(release)
    engine = CounterfactualEngine.load(checkpoint, EngineConfig(**request["engine"]))
    factual = sorted(samples.of_kind("factual"), key=lambda i: samples.keys[i])[: config.composition_samples]
    comp = soundness.composition(samples, engine, oracles, factual, config.cycles)
    columns = [c for c in comp.columns if c.startswith(("l1_", "feature_"))]
    if not comp.empty:
        comp["subgroup"] = soundness.subgroups(samples, comp["row"].tolist(), taxonomy, axes)
        comp["all"] = "all"
        tables["composition"] = comp
        metrics["composition"] = {
            "cycles": config.cycles,
            "overall": _records(soundness.summarize(comp, ["all"], columns, config.seed, config.bootstrap)),
            "by_subgroup": _records(
                soundness.summarize(comp, ["subgroup"], columns, config.seed, config.bootstrap)
            ),
        }
    cfs = sorted(samples.of_kind("counterfactual"), key=lambda i: samples.keys[i])[
        : config.reversibility_samples
    ]
    rev = soundness.reversibility(samples, engine, oracles, cfs)
    if not rev.empty:
        rev["subgroup"] = soundness.subgroups(samples, rev["row"].tolist(), taxonomy, axes)
        tables["reversibility"] = rev
        metrics["reversibility"] = {
            "by_intervention": _records(
                soundness.summarize(rev, ["label"], ["l1", "feature"], config.seed, config.bootstrap)
            ),
            "by_subgroup": _records(
                soundness.summarize(rev, ["subgroup"], ["l1", "feature"], config.seed, config.bootstrap)
            ),
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records")) if not frame.empty else []
