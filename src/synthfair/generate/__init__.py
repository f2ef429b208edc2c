"""Generation jobs: plan a release, generate its shards on one or many processes, finalize it.

plan = make_plan(read_index("index/"), load_plan_spec("plan.yaml")); write_plan(plan, "plan.parquet")
generate("plan.parquet", "runs/NAME", "release/")     # per process; under accelerate launch too
finalize("release/")                                  # manifest, SHA256SUMS, samples.parquet, card
"""

from synthfair.generate.finalize import FinalizeResult, finalize
from synthfair.generate.plan import (
    Plan,
    PlanSpec,
    Selection,
    load_plan_spec,
    make_plan,
    read_plan,
    write_plan,
)
from synthfair.generate.runner import GenerateConfig, GenerateResult, generate, process_shards, task_shards

__all__ = [
    "FinalizeResult",
    "GenerateConfig",
    "GenerateResult",
    "Plan",
    "PlanSpec",
    "Selection",
    "finalize",
    "generate",
    "load_plan_spec",
    "make_plan",
    "process_shards",
    "read_plan",
    "task_shards",
    "write_plan",
]
