"""Generation jobs: plan a release, generate its shards on one or many processes, finalize it.

plan = make_plan(read_index("index/"), load_plan_spec("plan.yaml")); write_plan(plan, "plan.parquet")
generate("plan.parquet", "runs/NAME", "release/")     # per process; under accelerate launch too
generate_in_processes("plan.parquet", None, "release/", GenerateConfig(engine=PhantomEngineConfig()))
finalize("release/")                                  # manifest, SHA256SUMS, samples.parquet, card
"""

from synthfair.lazy import lazy_attributes

_LAZY = {  # name -> module: imported on first use, so that importing one light submodule (e.g.
    # its constants) does not pull in torch through its heavy siblings
    "FinalizeResult": "synthfair.release.finalize",  # a release's files, written once its shards are done
    "finalize": "synthfair.release.finalize",
    "Plan": "synthfair.generate.plan",
    "PlanSpec": "synthfair.generate.plan",
    "Selection": "synthfair.generate.plan",
    "load_plan_spec": "synthfair.generate.plan",
    "make_plan": "synthfair.generate.plan",
    "read_plan": "synthfair.generate.plan",
    "write_plan": "synthfair.generate.plan",
    "GenerateConfig": "synthfair.generate.runner",
    "GenerateResult": "synthfair.generate.runner",
    "generate": "synthfair.generate.runner",
    "generate_in_processes": "synthfair.generate.runner",
    "process_shards": "synthfair.generate.runner",
    "task_shards": "synthfair.generate.runner",
}

__all__ = [
    "FinalizeResult",
    "GenerateConfig",
    "GenerateResult",
    "Plan",
    "PlanSpec",
    "Selection",
    "finalize",
    "generate",
    "generate_in_processes",
    "load_plan_spec",
    "make_plan",
    "process_shards",
    "read_plan",
    "task_shards",
    "write_plan",
]

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
