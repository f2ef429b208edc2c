"""Evaluation throughput at 64^2 on this machine, and the shipped model's soundness numbers.

Generates a release of held-out phantom families with the demo's interventions (or reuses ``--release``),
then times the evaluator's stages (reading the shards, the oracles' predictions and features, the phantom
truth re-render, the whole `evaluate` with the generator and the training images) and prints images/s and
the headline soundness numbers per intervention.

    python bench/evaluate.py --index demo/index --train-data data/cache-10k [--families 40] [--out bench-eval]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from synthfair.config import dataclass_from_dict
from synthfair.counterfactual import EngineConfig
from synthfair.demo import DEMO_PLAN
from synthfair.evaluate import EvaluateConfig, Oracles, evaluate, read_release
from synthfair.evaluate.release_truth import phantom_truth
from synthfair.generate import GenerateConfig, PlanSpec, generate, make_plan, write_plan
from synthfair.index import read_index
from synthfair.pretrained import pretrained_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="a phantom index of subjects the model did not see, e.g. demo/index")
    parser.add_argument("--release", default=None, help="evaluate this release instead of generating one")
    parser.add_argument("--oracles", default=None, help="default: the shipped oracles-phantom-64")
    parser.add_argument("--model", default=None, help="default: the shipped phantom-64")
    parser.add_argument("--train-data", default=None, help="the model's training cache, for privacy")
    parser.add_argument("--families", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="bench-evaluate", help="where the release and the report go")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    out = Path(args.out)
    model = Path(args.model or pretrained_path("phantom-64"))
    oracles = Oracles.load(args.oracles or pretrained_path("oracles-phantom-64"))
    release = Path(args.release) if args.release else _generate(args, model, out)

    t = time.perf_counter()
    samples = read_release(release)
    n = len(samples.keys)
    _rate("read shards", n, t)
    t = time.perf_counter()
    oracles.predict(samples.images)
    oracles.features(samples.images)
    _rate("oracle predictions + features", n, t)
    t = time.perf_counter()
    truth = phantom_truth(samples, oracles)
    _rate("phantom truth (re-render + oracles)", len(truth), t)
    config = EvaluateConfig(composition_samples=16, reversibility_samples=32)
    t = time.perf_counter()
    result = evaluate(release, oracles, out / "report", config, checkpoint=model, train_data=args.train_data)
    _rate("whole evaluate (with generator and training images)", n, t)
    print(f"report: {out / 'report' / 'report.html'}\n")
    _headline(result.metrics)


def _generate(args, model: Path, out: Path) -> Path:
    if not args.index:
        raise SystemExit("pass --index (to generate a release) or --release")
    data = {**DEMO_PLAN, "select": {"limit": args.families}, "shard_size": 50}
    spec = dataclass_from_dict(PlanSpec, data, where="bench plan")
    plan = make_plan(read_index(args.index), spec)
    print(plan.summary())
    out.mkdir(parents=True, exist_ok=True)
    write_plan(plan, out / "plan.parquet")
    t = time.perf_counter()
    config = GenerateConfig(engine=EngineConfig(steps=args.steps, batch_size=8))
    result = generate(out / "plan.parquet", model, out / "release", config)
    _rate(f"generate ({args.steps} steps)", result.samples, t)
    return out / "release"


def _rate(stage: str, n: int, start: float) -> None:
    seconds = time.perf_counter() - start
    print(f"{stage}: {n} images in {seconds:.1f} s = {n / seconds:.1f} images/s")


def _headline(metrics: dict) -> None:
    """One line per intervention: effectiveness (oracle), phantom truth, largest amplification."""
    eff = pd.DataFrame(metrics["effectiveness"]["by_intervention"])
    truth = pd.DataFrame(metrics["phantom_truth"]["by_intervention"]).set_index("label")
    amp = pd.DataFrame(metrics["amplification"]["by_intervention"])
    print(
        "| intervention | n | oracle: counterfactual (factual baseline) | truth: mae model / unchanged | "
        "truth: effectiveness | truth: amplification | largest oracle amplification |"
    )
    print("|---|---|---|---|---|---|---|")
    for _, row in eff.iterrows():
        if pd.notna(row["correct"]):
            oracle = f"accuracy {row['correct']:.2f} ({row['baseline_correct']:.2f})"
        else:
            oracle = f"MAE {row['abs_error']:.1f} y ({row['baseline_abs_error']:.1f})"
        cells = [row["label"], str(row["n"]), oracle, "-", "-", "-", "-"]
        if row["label"] in truth.index:
            t = truth.loc[row["label"]]
            cells[3:6] = [
                f"{t['mae_model']:.4f} / {t['mae_unchanged']:.4f}",
                f"{t['effectiveness']:.2f}",
                f"{t['amplification']:.3f}",
            ]
        others = amp[(amp["label"] == row["label"]) & (amp["covariate"] != row["covariate"])]
        if len(others):
            worst = others.loc[others["abs_delta"].idxmax()]
            cells[6] = f"{worst['covariate']} {worst['abs_delta']:.3f}"
        print("| " + " | ".join(cells) + " |")
    cycles = metrics["composition"]["cycles"]
    comp = metrics["composition"]["overall"][0]
    print(
        f"\ncomposition (n={comp['n']}): L1 after 1 = {comp['l1_1']:.2e}, after {cycles} = "
        f"{comp[f'l1_{cycles}']:.2e}"
    )
    rev = pd.DataFrame(metrics["reversibility"]["by_intervention"])
    weights = rev["n"] / rev["n"].sum()
    print(
        f"reversibility (n={int(rev['n'].sum())}): mean L1 {(rev['l1'] * weights).sum():.4f}, "
        f"feature {(rev['feature'] * weights).sum():.3f}"
    )
    real = metrics["realism"]
    print(
        f"realism: FID {real['fid']:.3f}, KID {real['kid']:.4f} (oracle features, "
        f"{real['factual']} factual vs {real['counterfactual']} counterfactual)"
    )
    priv = metrics["privacy"]
    if "note" in priv:
        print(f"privacy: {priv['note']}")
    else:
        print(
            f"privacy: memorized share {priv['memorized_share']:.3f} of {priv['generated']} generated vs "
            f"{priv['train_images']} training images (median distance {priv['median_distance']:.3f}, "
            f"threshold {priv['threshold']:.3f})"
        )


if __name__ == "__main__":
    main()
