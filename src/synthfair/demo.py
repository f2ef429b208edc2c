"""`synthfair demo`: the whole pipeline as it stands, on the built-in phantom, in minutes on a laptop CPU.

The demo is its list of stages, `STAGES`, run in order, each timed and each adding its section to
``report.md``: render a phantom source and a counterfactual grid; ingest it into a harmonized index and
preprocess it into training shards; re-render the model's training subjects (or, with ``train``, retrain
phantom-64 on them); compare the model's counterfactuals with the phantom's exact ones; plan, generate and
finalize a release and judge its soundness; make an exact study release, a biased subset and its baseline;
run a fairness study on it; and measure the study's fidelity on the model's release of the same plan.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from synthfair import reportkit as kit
from synthfair.counterfactual import CounterfactualEngine, EngineConfig
from synthfair.data import subset_pipeline
from synthfair.environment import usable_cpus
from synthfair.errors import ConfigError
from synthfair.evaluate.evaluate import EvaluateConfig, evaluate
from synthfair.evaluate.oracles import OracleConfig, Oracles, train_oracles
from synthfair.evaluate.phantom_truth import compare_with_truth
from synthfair.fairness.study import load_study_spec, run_study, shared_samples
from synthfair.generate import (
    GenerateConfig,
    finalize,
    generate,
    generate_in_processes,
    load_plan_spec,
    make_plan,
    write_plan,
)
from synthfair.index import read_index
from synthfair.index.ingest import ingest
from synthfair.index.preprocess import PreprocessConfig, preprocess
from synthfair.index.stats import index_stats
from synthfair.model.routes import ROUTES_DIR, add_route
from synthfair.model.train import load_train_config, train
from synthfair.phantom.engine import PhantomEngineConfig
from synthfair.phantom.grid import render_grid
from synthfair.phantom.simulator import Phantom, PhantomConfig
from synthfair.phantom.source import write_source
from synthfair.pretrained import GUIDE_EPOCHS, ROUTE_STAGES, TRAIN_STAGES, pretrained_path
from synthfair.sampling import (
    bias_spec_from_dict,
    load_bias_spec,
    read_samples,
    sample,
    sample_with_baseline,
    write_subset,
)


@dataclass(frozen=True)
class DemoConfig:
    n: int = 800  # phantom subjects (every one a family of the exact study release)
    size: int = 128  # image size
    seed: int = 0
    workers: int = 0  # rendering processes; 0 = every usable core
    grid_rows: int = 4
    grid_size: int = 160
    anatomy: str = "ct"
    cache_size: int = 64  # preprocessed (training) image size
    train: bool = False  # retrain phantom-64 (three stages, ~3.5 hours on 2 cores) instead of the shipped one
    train_n: tuple[int, ...] = (3000, 10000, 10000)  # phantom subjects (seed + 1) each training stage learns
    truth_subjects: int = 4  # held-out subjects whose model counterfactuals are compared with the truth
    truth_draws: int = 8  # posterior draws of each counterfactual's unidentified part (the ceilings)
    cf_steps: int | None = None  # diffusion steps of the engine; None = the model's recommended settings
    release_families: int = 8  # subjects whose counterfactual families make the demo release
    oracle_epochs: int = 8  # pseudo-oracles, trained on subjects of their own seed when train=True
    oracle_n: int = 6000  # phantom subjects rendered for the oracles when train=True (seed + 2)
    privacy_n: int = 400  # of the model's training subjects re-rendered for the privacy check (train=False)
    study_families: int = 800  # subjects in the exact study release (factual + 2 counterfactuals each)
    bias_size: int = 100  # samples in the biased subset (and in its baseline)
    study: bool = True  # the fairness study on the exact study release, and its fidelity
    study_size: int = 440  # samples per study cell (train 60%, validation 10%, test 30%)
    study_strengths: tuple[float, ...] = (0.0, 0.9, 0.95, 1.0)  # of the device-cardiomegaly correlation
    study_epochs: int = 30  # of each cell's downstream classifier
    fidelity_families: int = 80  # the model's release of the study plan: its first families
    fidelity_size: int = 56  # samples per fidelity cell (strengths 0 and 0.9), drawn from those families

    def __post_init__(self):
        if self.train and len(self.train_n) != len(TRAIN_STAGES):
            raise ConfigError(
                f"DemoConfig.train_n={self.train_n}: {len(self.train_n)} subject counts for phantom-64's "
                f"{len(TRAIN_STAGES)} training stages ({', '.join(TRAIN_STAGES)})",
                "give one count of training subjects per stage",
            )


DEMO_ORACLES = ("age", "sex", "findings", "view", "device")

# the study release: every demo subject's factual image, its device=philips and its cardiomegaly-toggled
# counterfactuals; what lets the bias sampler reach a strong spurious correlation one family member at a time.
# The demo renders it with the phantom's exact engine (the truth); the model renders its first families too,
# and the same study on both measures the study's fidelity
DEMO_STUDY_PLAN = {
    "seed": 0,
    "shard_size": 50,
    "select": {},
    "include_factual": True,
    "include_reconstruction": False,
    "interventions": [{"device": ["philips"]}, {"findings.cardiomegaly": "toggle"}],
}
# the demo's study: the same bias at rising strength, one classifier per cell, fairness across devices
DEMO_STUDY = {
    "base": {
        "seed": 0,
        "target": "findings.cardiomegaly",
        "prevalence": {"all": 0.5},
        "correlation": {"covariate": "device", "value": "philips", "strength": 0.0},
        "splits": {"train": 0.6, "validate": 0.1, "test": 0.3},
    },
    "grid": {"correlation.strength": [0.0, 0.9, 0.95, 1.0]},
    "groups": ["device=philips"],
    "baseline": False,
    "counterfactual": "device",
    "causal": {"x": "device", "x1": "philips"},
}
# the demo's bias: cardiomegaly in half the training images, 90% of them from philips devices, 10% of the
# others (strength 0.8); validation and test balanced (strength 0); the baseline has no bias anywhere
DEMO_BIAS = {
    "seed": 0,
    "target": "findings.cardiomegaly",
    "prevalence": {"all": 0.5},
    "correlation": {"covariate": "device", "value": "philips", "strength": 0.8},
    "splits": {"train": 0.6, "validate": 0.2, "test": 0.2},
}  # what the demo release intervenes on

# the demo release's plan (written to DEMO/plan.yaml): per family the factual, its reconstruction and its
# counterfactuals (no-ops left out), in shards of 20 samples; every demo subject is held out from the model
DEMO_PLAN = {
    "seed": 0,
    "shard_size": 20,
    "select": {},
    "include_factual": True,
    "include_reconstruction": True,
    "interventions": [
        {"sex": "flip"},
        {"age": [25, 85]},
        {"findings.cardiomegaly": "toggle"},
        {"findings.pleural_effusion": "toggle"},
        {"view": ["PA", "AP"]},
        {"device": ["philips", "siemens"]},
    ],
}


@dataclass
class DemoResult:
    out: Path
    source: Path
    grid: Path
    index: Path
    cache: Path
    model: Path
    truth_grid: Path
    release: Path
    evaluation: Path
    study_release: Path
    subset: Path
    study: Path
    fidelity_release: Path
    fidelity: Path
    report: Path
    train_cache: Path | None = None  # the model's training subjects (all of them, or a sample for privacy)
    train_caches: list[Path] = field(default_factory=list)  # each training stage's subjects (train=True)
    seconds: dict[str, float] = field(default_factory=dict)


class _Timings(dict):
    """Stage -> seconds; each stage's end is reported to ``on_stage`` as it is recorded."""

    def __init__(self, on_stage: Callable[[str], None] | None):
        super().__init__()
        self.on_stage = on_stage

    def __setitem__(self, stage: str, seconds: float) -> None:
        super().__setitem__(stage, seconds)
        if self.on_stage is not None:
            self.on_stage(f"[demo] {stage}: {seconds:.1f} s")


def run_demo(
    out: str | Path,
    config: DemoConfig = DemoConfig(),
    on_image: Callable[[], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> DemoResult:
    """The whole pipeline into ``out``; ``on_stage(line)`` hears of each stage's end (with its seconds)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    phantom_config = PhantomConfig(anatomy=config.anatomy)
    result = DemoResult(
        out=out,
        source=out / "phantom",
        grid=out / "phantom_grid.png",
        index=out / "index",
        cache=out / f"cache-{config.cache_size}",
        model=out / "runs" / "phantom-64" if config.train else pretrained_path("phantom-64"),
        truth_grid=out / "model_vs_truth.png",
        release=out / "release",
        evaluation=out / "evaluation",
        study_release=out / "study-release",
        subset=out / "subset",
        study=out / "study",
        fidelity_release=out / "fidelity-release",
        fidelity=out / "fidelity",
        report=out / "report.md",
        seconds=_Timings(on_stage),
    )
    run = _Run(config, result, phantom_config, Phantom(phantom_config), on_image)
    sections = []
    for stage in STAGES:
        if stage.when(config):
            start = time.perf_counter()
            sections.append(stage.run(run))
            result.seconds[stage.name] = time.perf_counter() - start
    result.report.write_text(_report(run.phantom, result, config) + "".join(sections))
    return result


def _evaluate(result: DemoResult, config: DemoConfig, phantom_config: PhantomConfig, on_image) -> str:
    """The soundness report of the demo release, with the shipped pseudo-oracles (or, when the demo trained
    the model, oracles trained on subjects of their own seed, which the model never saw) and privacy against
    the training subjects."""
    if config.train:
        oracle_config = OracleConfig(covariates=DEMO_ORACLES, epochs=config.oracle_epochs)
        seed = config.seed + 2
        data = _phantom_cache(
            result.out / "oracle-data", config.oracle_n, seed, config, phantom_config, on_image
        )
        oracles = train_oracles(oracle_config, data, result.out / "oracles")
        origin = f"trained by this demo -> `{result.out / 'oracles'}`"
    else:
        oracles = Oracles.load(pretrained_path("oracles-phantom-64"))
        origin = f"shipped with the package: `{pretrained_path('oracles-phantom-64')}`"
    evaluate_config = EvaluateConfig(composition_samples=4, reversibility_samples=8)
    evaluation = evaluate(
        result.release,
        oracles,
        result.evaluation,
        evaluate_config,
        checkpoint=result.model,
        train_data=result.train_cache,
    )
    scores = ", ".join(f"{o.covariate} {_headline(o.metrics)}" for o in oracles)
    truth = evaluation.tables.get("phantom_truth")
    privacy = evaluation.metrics["privacy"]
    lines = [
        "",
        "## Soundness of the demo release",
        "",
        f"Pseudo-oracles ({origin}; trained on {oracles.report['train_images']} decorrelated images of "
        f"subjects the model never saw; held-out: {scores}). Independence from the generator: "
        f"{_independence(evaluation.metrics['oracle_independence'])}.",
        f"Report -> `{result.evaluation / 'report.html'}` (numbers: `metrics.json`): effectiveness, "
        "amplification, phantom truth, realism, privacy, composition and reversibility, per intervention "
        "and subgroup.",
        f"Privacy: {privacy['memorized_share']:.1%} of {privacy['generated']} generated images are closer to "
        f"one of {privacy['train_images']} re-rendered training images than the training set's own 5th "
        "percentile nearest-neighbour distance (independent images give about 5%; far more means "
        "memorization).",
    ]
    if truth is not None and not truth.empty:
        cf = truth[truth["kind"] == "counterfactual"]
        model, unchanged = cf["mae_model"].mean(), cf["mae_unchanged"].mean()
        lines.append(
            f"Against the exact counterfactuals ({len(cf)}): mean |generated - truth| {model:.4f}, "
            f"unchanged image {unchanged:.4f}."
        )
    return "\n".join([*lines, ""])


def _independence(record: dict) -> str:
    if "note" in record:
        return record["note"]
    return "checked, no shared weights or subjects" + "".join(f"; {flag}" for flag in record["flags"])


def _headline(metrics: dict) -> str:
    for key in ("accuracy", "mae", "mean_auc"):
        if metrics.get(key) is not None:
            return f"{key} {metrics[key]:.2f}"
    return "not scored"


@dataclass
class _Run:
    """What the demo's stages share: its settings, its outputs, and what earlier stages made."""

    config: DemoConfig
    result: DemoResult
    phantom_config: PhantomConfig
    phantom: Phantom
    on_image: Callable[[], None] | None


@dataclass(frozen=True)
class Stage:
    """One step of the demo: its name (in the timings), what it does (returning its section of the report,
    Markdown, or ""), and whether a config runs it."""

    name: str
    run: Callable[[_Run], str]
    when: Callable[[DemoConfig], bool] = lambda config: True


def _phantom_source(run: _Run) -> str:
    c = run.config
    workers = c.workers or usable_cpus()
    write_source(
        run.result.source,
        n=c.n,
        size=c.size,
        seed=c.seed,
        workers=workers,
        config=run.phantom_config,
        on_image=run.on_image,
    )
    return ""


def _grid(run: _Run) -> str:
    subjects = run.phantom.sample_subjects(run.config.grid_rows, run.config.seed)
    render_grid(run.phantom, subjects, size=run.config.grid_size).save(run.result.grid)
    return ""


def _ingest(run: _Run) -> str:
    ingest("phantom", run.result.source, run.result.index)
    return ""


def _preprocess(run: _Run) -> str:
    workers = run.config.workers or usable_cpus()
    preprocess(
        run.result.index, run.result.cache, PreprocessConfig(size=run.config.cache_size, workers=workers)
    )
    return ""


def _training_subjects(run: _Run) -> str:
    c = run.config
    counts = c.train_n if c.train else (c.privacy_n,)
    rendered = {
        n: _training_cache(run.result, c, run.phantom_config, run.on_image, n) for n in dict.fromkeys(counts)
    }
    run.result.train_caches = [rendered[n] for n in counts]  # stages with the same count share their subjects
    run.result.train_cache = rendered[max(counts)]  # the largest: it holds every stage's subjects
    return ""


def _train(run: _Run) -> str:
    """phantom-64's training stages, each on its own subjects and from the model of the stage before; then
    the image models of its routes."""
    stages, caches = TRAIN_STAGES, run.result.train_caches
    previous = None
    for i, (name, cache) in enumerate(zip(stages, caches, strict=True)):
        config = load_train_config(pretrained_path("phantom-64") / name)
        if previous is not None:
            config = replace(config, init_from=str(previous))
        last = i == len(stages) - 1
        out = run.result.model if last else run.result.model.with_name(f"phantom-64-stage{i + 1}")
        train(config, cache, out, resume="latest")
        previous = out
    _train_routes(run)
    return ""


def _train_routes(run: _Run) -> None:
    """Each route of the shipped phantom-64 (`ROUTE_STAGES`), as its PROVENANCE.md says: its stages on the
    10,000 subjects, each stopped and exported where the shipped run was (a stage two routes share is
    trained once), a route's first fine-tuning stage from phantom-64's last, its classifiers trained here on
    the first stage's 3,000 subjects (never the demo's oracles); then routed with the shipped keys."""
    shipped, caches, model_run = pretrained_path("phantom-64"), run.result.train_caches, run.result.model
    keys = EngineConfig.recommended(shipped).routes
    guides = model_run.with_name("phantom-64-guides")
    for name, stages in ROUTE_STAGES.items():
        previous = model_run
        for config_name, stop_at in stages:
            path = shipped / ROUTES_DIR / name / config_name
            config = load_train_config(path)
            if config.init_from is not None:
                config = replace(config, init_from=str(previous))
            if config.tuning.classifiers:
                if not (guides / "oracles.json").is_file():
                    train_oracles(OracleConfig(epochs=GUIDE_EPOCHS), caches[0], guides)
                config = replace(config, tuning=replace(config.tuning, classifiers=str(guides)))
            stage = hashlib.sha256(f"{path.read_text()}/{previous}/{stop_at}".encode()).hexdigest()[:12]
            out = model_run.with_name(f"phantom-64-route-{stage}")  # the same stage of two routes: once
            train(config, caches[1], out, resume="latest", stop_at=stop_at, export=True)
            previous = out
        add_route(model_run / "model", name, previous / "model", [k for k, v in keys.items() if v == name])


def _truth(run: _Run) -> str:
    c, result = run.config, run.result
    engine = CounterfactualEngine.load(result.model, _engine(result, c))
    subjects = run.phantom.sample_subjects(c.truth_subjects, c.seed)
    comparison = compare_with_truth(engine, run.phantom, subjects, draws=c.truth_draws)
    comparison.grid(rows=c.truth_subjects).save(result.truth_grid)
    return _truth_section(result, comparison, c)


STAGES = (
    Stage("phantom source", _phantom_source),
    Stage("counterfactual grid", _grid),
    Stage("ingest", _ingest),
    Stage("preprocess", _preprocess),
    Stage("training subjects (re-)rendered", _training_subjects),
    Stage("train phantom-64", _train, when=lambda config: config.train),
    Stage("model counterfactuals vs truth", _truth),
    Stage("plan, generate, finalize", lambda run: _release(run.result, run.config)),
    Stage(
        "oracles, soundness report",
        lambda run: _evaluate(run.result, run.config, run.phantom_config, run.on_image),
    ),
    Stage("exact study release, biased subset, baseline", lambda run: _bias_subset(run.result, run.config)),
    Stage("fairness study", lambda run: _study(run.result, run.config), when=lambda config: config.study),
    Stage(
        "model release of the study plan, study fidelity",
        lambda run: _fidelity(run.result, run.config),
        when=lambda config: config.study,
    ),
)


def _release(result: DemoResult, config: DemoConfig) -> str:
    """Plan, generate and finalize a small release of held-out subjects; the report's section on it."""
    spec = {**DEMO_PLAN, "select": {"limit": config.release_families}}
    plan, done = _make_release(result, config, spec, result.out / "plan", result.release)
    lines = [
        "",
        "## A generated release",
        "",
        f"Plan `{result.out / 'plan.yaml'}` -> {plan.summary()}.",
        f"Release -> `{result.release}`: {done.samples} samples in {done.shards} WebDataset shards "
        f"({done.bytes / 1e6:.1f} MB, {done.failed} failed); `manifest.json`, `samples.parquet`, "
        f"`SHA256SUMS` (check: `cd {result.release} && sha256sum -c SHA256SUMS`) and the dataset card "
        f"`{result.release / 'DATASET_CARD.md'}`, its numbers filled by `synthfair finalize`.",
        "",
    ]
    return "\n".join(lines)


def _make_release(
    result: DemoResult, config: DemoConfig, spec: dict, plan_stem: Path, out: Path, exact: bool = False
):
    """(plan, finalize result) of the plan spec ``spec`` over the demo index, generated into ``out`` by the
    model, or with ``exact`` by the phantom's exact engine at the training cache's size."""
    spec_path = plan_stem.with_suffix(".yaml")
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = make_plan(read_index(result.index), load_plan_spec(spec_path))
    write_plan(plan, plan_stem.with_suffix(".parquet"), result.index)
    engine = PhantomEngineConfig(size=config.cache_size) if exact else _engine(result, config)
    shutil.rmtree(out, ignore_errors=True)  # regenerated, never mixed with an older model's shards
    plan_path, settings = plan_stem.with_suffix(".parquet"), GenerateConfig(engine=engine)
    if exact:  # the phantom renders on one core per process
        generate_in_processes(plan_path, None, out, settings, workers=config.workers or usable_cpus())
    else:
        generate(plan_path, result.model, out, settings)
    return plan, finalize(out)


def _bias_subset(result: DemoResult, config: DemoConfig) -> str:
    """The exact study release (every demo subject, its device=philips and cardiomegaly-toggled
    counterfactuals, rendered by the phantom), a subset of it with a spurious device-cardiomegaly correlation,
    its matched baseline, and a stream."""
    spec = {**DEMO_STUDY_PLAN, "select": {"limit": config.study_families}}
    stem = result.out / "study-plan"
    plan, done = _make_release(result, config, spec, stem, result.study_release, exact=True)
    bias_path = result.out / "bias.yaml"
    bias_path.write_text(yaml.safe_dump({**DEMO_BIAS, "size": config.bias_size}, sort_keys=False))
    biased, baseline = sample_with_baseline(result.study_release, load_bias_spec(bias_path))
    write_subset(biased, result.subset)
    write_subset(baseline, result.subset / "baseline")
    streamed = sum(1 for _ in subset_pipeline(result.subset, split="train"))
    lines = [
        "",
        "## A biased subset and its matched baseline",
        "",
        f"Exact study release (`synthfair generate --engine phantom`: the phantom's own counterfactuals) -> "
        f"`{result.study_release}`: {plan.summary()}; {done.samples} samples.",
        f"Bias spec `{bias_path}` -> `{result.subset}` ({biased.summary()}) and its no-bias baseline -> "
        f"`{result.subset / 'baseline'}` ({baseline.summary()}); achieved next to target:",
        "",
        "| subset | split | n | prevalence | P(philips \\| finding) | P(philips \\| no finding) | strength |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, subset in (("biased", biased), ("baseline", baseline)):
        for split, stats in subset.stats.items():
            prev, corr, n = stats["prevalence"]["all"], stats["correlation"], stats["size"]["achieved"]
            cells = [
                name,
                split,
                str(n),
                f"{prev['achieved']:.2f} ({prev['target']:.2f})",
                f"{corr['p_value_given_target_1']:.2f}",
                f"{corr['p_value_given_target_0']:.2f}",
                f"{corr['achieved_strength']:+.2f} ({corr['target_strength']:+.2f})",
            ]
            lines.append(kit.markdown_row(cells))
    lines += [
        "",
        f"Streamed back with `synthfair.data.subset_pipeline('{result.subset}', split='train')`: {streamed} "
        "samples (images, labels, provenance).",
        "",
    ]
    return "\n".join(lines)


def _study_spec(config: DemoConfig, path: Path, size: int, strengths) -> Path:
    base = {**DEMO_STUDY["base"], "size": size}
    grid = {"correlation.strength": [float(v) for v in strengths]}
    spec = {**DEMO_STUDY, "base": base, "grid": grid, "classifier": {"epochs": config.study_epochs}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _study(result: DemoResult, config: DemoConfig) -> str:
    """One cell per correlation strength on the exact study release, from none to a perfect spurious
    device-cardiomegaly correlation: a classifier per cell, its fairness across philips vs other devices on
    the balanced test split."""
    spec_path = _study_spec(config, result.out / "study.yaml", config.study_size, config.study_strengths)
    study = run_study(load_study_spec(spec_path), result.study_release, result.study)
    lines = [
        "",
        "## A fairness study: from no bias to a perfect spurious correlation",
        "",
        f"Study spec `{spec_path}` on the exact study release -> `{result.study / 'report.html'}` (numbers: "
        f"`results.json`; plots: `{result.study / 'plots'}`). One classifier per cell, trained on the biased "
        "training split, scored on the balanced test split against the true labels, grouped by device "
        "(philips vs the others):",
        "",
        "| correlation strength | AUROC | selection rate philips / others | TPR philips / others | "
        "equalized-odds difference | score change under do(device) (flip rate) | TV of predictions "
        "(Ctf-DE) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in study.results:
        groups = {g["group"]: g for g in r["groups"]["by_group"]}
        philips, other = groups.get("philips", {}), groups.get("not philips", {})
        flips = (r.get("counterfactual") or {}).get("overall") or {}
        causal = (r.get("causal") or {}).get("predictions") or {}
        cells = [
            str(r["cell"]["correlation.strength"]),
            _f(r["groups"]["overall"].get("auroc")),
            f"{_f(philips.get('selection_rate'))} / {_f(other.get('selection_rate'))}",
            f"{_f(philips.get('tpr'))} / {_f(other.get('tpr'))}",
            _f(r["groups"]["aggregates"]["equalized_odds_difference"]["value"]),
            f"{_f(flips.get('mean_change'))} ({_f(flips.get('flip_rate'))})",
            f"{_f((causal.get('tv') or {}).get('value'))} ({_f((causal.get('ctf_de') or {}).get('value'))})",
        ]
        lines.append(kit.markdown_row(cells))
    lines += [
        "",
        "Without bias the classifier learns the finding; as the correlation rises it trades the finding for "
        "the device: its AUROC falls and its decisions split by device on a test set where device says "
        "nothing about the finding.",
        "",
    ]
    return "\n".join(lines)


def _fidelity(result: DemoResult, config: DemoConfig) -> str:
    """The model's release of the study plan's first families, and a smaller study run on it and, on the
    same samples, on the exact release: would the model's counterfactuals lead to the truth's conclusions?"""
    spec = {**DEMO_STUDY_PLAN, "select": {"limit": config.fidelity_families}}
    _, done = _make_release(result, config, spec, result.out / "fidelity-plan", result.fidelity_release)
    size = _feasible_size(result, config.fidelity_size, 0.9)
    spec_path = _study_spec(config, result.out / "fidelity.yaml", size, (0.0, 0.9))
    study = run_study(
        load_study_spec(spec_path), result.fidelity_release, result.fidelity, truth=result.study_release
    )
    lines = [
        "",
        "## Study fidelity: the same study on the model's counterfactuals and on the truth",
        "",
        f"The model's release of the study plan's first {config.fidelity_families} families -> "
        f"`{result.fidelity_release}` ({done.samples} samples). Study spec `{spec_path}` ({size} samples per "
        "cell, the most these families allow at strength 0.9) run on it and, on the same samples, on the "
        f"exact release -> `{result.fidelity / 'report.html'}` (`results.json` key `fidelity`). Per cell, "
        "truth / model and model minus truth with its 95% interval:",
        "",
        kit.markdown_row(["correlation strength", *FIDELITY_METRICS]),
        "|---|" + "---|" * len(FIDELITY_METRICS),
    ]
    for record in study.fidelity["by_cell"]:
        cells = [str(record["cell"]["correlation.strength"])]
        for name in FIDELITY_METRICS:
            d = record["metrics"].get(name)
            cells.append("n/a" if d is None else f"{_f(d['truth'])} / {_f(d['model'])}: {_interval(d)}")
        lines.append(kit.markdown_row(cells))
    lines.append("")
    return "\n".join(lines)


def _feasible_size(result: DemoResult, size: int, strength: float) -> int:
    """The largest study size up to ``size`` that the samples both study releases hold can fill at the
    correlation ``strength`` (a model release of a few families cannot fill what the exact one can)."""
    truth, _, _ = read_samples(result.study_release)
    model, _, _ = read_samples(result.fidelity_release)
    shared = shared_samples(truth, model, result.study_release, result.fidelity_release)
    base = {**DEMO_STUDY["base"], "correlation": {**DEMO_STUDY["base"]["correlation"], "strength": strength}}
    while size > 8:
        try:
            sample(shared, bias_spec_from_dict({**base, "size": size}))
            return size
        except ConfigError:
            size = int(size * 0.85)
    return size


FIDELITY_METRICS = ("auroc", "equalized_odds_difference", "flip_rate", "ctf_de")


def _interval(d: dict) -> str:
    if d["lo"] != d["lo"]:  # NaN: no interval (e.g. the overall AUROC)
        return f"{d['difference']:+.2f}"
    return f"{d['difference']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _engine(result: DemoResult, config: DemoConfig) -> EngineConfig:
    return EngineConfig.recommended(result.model, steps=config.cf_steps, batch_size=8)


def _training_cache(result: DemoResult, config: DemoConfig, phantom_config: PhantomConfig, on_image, n: int):
    """Render the first ``n`` subjects of seed + 1 at 64x64 (disjoint from the demo's subjects; the shipped
    model was trained on the first 3,000, then twice on the first 10,000 of seed 1) and preprocess them."""
    return _phantom_cache(
        result.out / f"train-data-{n}", n, config.seed + 1, config, phantom_config, on_image
    )


def _phantom_cache(base: Path, n: int, seed: int, config: DemoConfig, phantom_config, on_image) -> Path:
    """Render ``n`` phantom subjects of ``seed`` at 64x64 into ``base`` and preprocess them; the cache."""
    workers = config.workers or usable_cpus()
    write_source(
        base / "phantom", n=n, size=64, seed=seed, workers=workers, config=phantom_config, on_image=on_image
    )
    ingest("phantom", base / "phantom", base / "index")
    preprocess(base / "index", base / "cache-64", PreprocessConfig(size=64, workers=workers))
    return base / "cache-64"


def _routes_text(engine: EngineConfig) -> str:
    """The engine's routes for the report (`synthfair.model.routes`): empty without."""
    if not engine.routes:
        return ""
    routes = ", ".join(f"{key} -> routes/{name}" for key, name in engine.routes.items())
    return f"; routes (another image model for these interventions, chosen on development subjects): {routes}"


def _truth_section(result: DemoResult, comparison, config: DemoConfig) -> str:
    columns = ["n", "captured", "captured_ceiling", "cosine", "cosine_ceiling", "magnitude"]
    columns += ["n_direct", "captured_direct"]  # the subjects whose do() changes nothing else
    table = comparison.table.set_index("intervention")[columns]
    origin = "retrained by this demo" if config.train else "shipped with the package"
    engine = _engine(result, config)
    lines = [
        "",
        "## Model counterfactuals vs the phantom's exact counterfactuals",
        "",
        f"Model: `{result.model}` ({origin}); {config.truth_subjects} held-out subjects; engine: "
        f"{engine.abduction} abduction, {engine.steps} steps (skip {engine.skip:g}), guidance "
        f"{engine.guidance:g} {dict(engine.group_guidance)} away from the {engine.guide} condition, "
        f"{'masked local edits' if engine.mask else 'no masks'}{_routes_text(engine)}. The image model gets "
        "the true counterfactual covariates.",
        f"Grid (per subject: truth, model, then the true edit and the model's edit on one scale, grey = no "
        f"change) -> `{result.truth_grid}`",
        "",
        "captured = 1 - mean |model - truth| / mean |factual - truth| (1 exact, 0 doing nothing); cosine "
        "between the model's edit and the true edit; magnitude = |model edit| / |true edit|. The ceilings "
        "are what the factual image lets any model reach: where a finding appears and how severe it is are "
        "not in the factual image (docs/evaluation.md). captured_direct: captured over the n_direct subjects "
        "whose exact counterfactual changes only the intervened covariate (no change through the SCM).",
        "",
        *kit.markdown_table(table.round(4)),
        "",
    ]
    return "\n".join(lines)


def _report(phantom: Phantom, result: DemoResult, config: DemoConfig) -> str:
    meta = pd.read_csv(result.source / "metadata.csv")
    r = phantom.spec.roles
    lines = [
        "# synthfair demo report",
        "",
        f"Phantom source: {config.n} subjects, {config.size}x{config.size} 16-bit PNG, seed {config.seed}, "
        f"anatomy `{config.anatomy}` -> `{result.source}`",
        "",
        f"Counterfactual grid (rows: subjects; columns: interventions) -> `{result.grid}`",
        "",
        "## Covariates",
        "",
    ]
    for cov in phantom.taxonomy:
        if cov.kind == "categorical":
            counts = meta[cov.name].value_counts().to_dict()
            lines.append(f"- {cov.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        elif cov.kind == "continuous":
            lines.append(
                f"- {cov.name}: mean {meta[cov.name].mean():.1f}, range {meta[cov.name].min():.1f}"
                f"-{meta[cov.name].max():.1f} {cov.unit or ''}"
            )
        else:
            pos = {label: int(meta[f"{cov.name}.{label}"].sum()) for label in cov.values}
            lines.append(f"- {cov.name} (positives): " + ", ".join(f"{k} {v}" for k, v in pos.items() if v))
    labels = [f"{r.findings}.{label}" for label in phantom.spec.scm.simulated_labels(r.findings)]
    sick = meta[labels].sum(axis=1) > 0
    portable = [v for v, spec in phantom.spec.views.items() if spec.supine]
    lines += ["", "## Confounding planted by the phantom's SCM", ""]
    if portable:
        share = meta[r.view].isin(portable)
        lines.append(
            f"- portable ({', '.join(portable)}) share: {share[sick].mean():.0%} with a finding vs "
            f"{share[~sick].mean():.0%} without ({int(sick.sum())} / {int((~sick).sum())} subjects)"
        )
    by_site = pd.crosstab(meta[phantom.taxonomy.parents(r.race)[0]], meta[r.race], normalize="index")
    lines += ["- race mix by site:", "", *kit.markdown_table(by_site.round(2)), ""]
    lines += _index_section(result)
    lines += ["## Timing", ""] + [f"- {k}: {v:.1f} s" for k, v in result.seconds.items()]
    return "\n".join(lines) + "\n"


def _index_section(result: DemoResult) -> list[str]:
    stats = index_stats(read_index(result.index))
    inter = stats.intersections
    lines = [
        "## Index and training cache",
        "",
        f"Harmonized index -> `{result.index / 'index.parquet'}` ({int(inter['n'].sum())} images); "
        f"training shards ({result.cache.name}) -> `{result.cache}`",
        "",
        f"- {len(stats.flagged)} of {len(inter)} intersections of {' x '.join(stats.axes)} have fewer than "
        f"{stats.min_count} images (`synthfair index stats {result.index}` lists them); smallest non-empty:",
        "",
    ]
    smallest = inter[inter["n"] > 0].nsmallest(5, "n")
    smallest.index = [" x ".join(map(str, row)) for row in smallest[list(stats.axes)].itertuples(index=False)]
    smallest = smallest[["n"]].rename_axis(" x ".join(stats.axes))
    return lines + kit.markdown_table(smallest) + [""]
