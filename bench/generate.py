"""Generation throughput on this machine: plan -> generate -> finalize over a phantom index.

Prints samples/s of `synthfair.generate.generate` (model or exact phantom engine + PNG encoding + tar +
hashes) with 1 and 2 encoding threads, bytes per sample, and how long `finalize` takes.

    python bench/generate.py --index demo/index [--families 16] [--steps 10] [--model PATH]
    python bench/generate.py --index INDEX --engine phantom --size 256 [--families 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from synthfair.counterfactual import EngineConfig
from synthfair.generate import GenerateConfig, PlanSpec, Selection, finalize, generate, make_plan, write_plan
from synthfair.index import read_index
from synthfair.phantom.engine import PhantomEngineConfig
from synthfair.pretrained import pretrained_path

INTERVENTIONS = (
    {"sex": "flip"},
    {"age": [25, 85]},
    {"findings.cardiomegaly": "toggle"},
    {"view": ["PA", "AP"]},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="an index directory, e.g. demo/index")
    parser.add_argument("--model", default=None, help="a model directory (default: the shipped phantom-64)")
    parser.add_argument("--families", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--engine", default="model", choices=("model", "phantom"))
    parser.add_argument("--size", type=int, default=256, help="image size of the phantom engine")
    parser.add_argument("--workers", default="1,2", help="encoding threads to try, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    exact = args.engine == "phantom"
    model = None if exact else args.model or pretrained_path("phantom-64")
    select = Selection(limit=args.families)
    spec = PlanSpec(select=select, interventions=INTERVENTIONS, shard_size=args.shard_size)
    plan = make_plan(read_index(args.index), spec)
    print(plan.summary())
    if exact:
        engine_config = PhantomEngineConfig(size=args.size, batch_size=8)
    else:
        engine_config = EngineConfig.recommended(model, steps=args.steps, batch_size=8)
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.parquet"
        write_plan(plan, plan_path)
        model_rows = sum(k != "factual" for k in plan.table["kind"].to_pylist())
        for workers in (int(w) for w in args.workers.split(",")):
            out = Path(tmp) / f"release-{workers}"
            t = time.perf_counter()
            config = GenerateConfig(engine=engine_config, encode_workers=workers)
            result = generate(plan_path, model, out, config)
            seconds = time.perf_counter() - t
            size = sum(p.stat().st_size for p in (out / "shards").glob("*.tar"))
            how = f"rendered exactly at {args.size} px" if exact else f"through the model, {args.steps} steps"
            rate = result.samples / seconds
            per_sample = size / result.samples / 1e3
            print(f"encode_workers {workers}: {result.samples} samples in {seconds:.1f} s = {rate:.2f}/s")
            print(f"  ({model_rows} {how}); {per_sample:.1f} kB/sample")
        t = time.perf_counter()
        done = finalize(out)
        print(f"finalize: {done.samples} samples, {done.shards} shards in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
