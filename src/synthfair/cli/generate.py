"""`synthfair generate --plan plan.parquet --checkpoint runs/NAME --out RELEASE_DIR`: write planned shards.

Alone it writes every shard (or ``--shards A:B``). In a Slurm array task, ``--task-index/--num-tasks``
(default: ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT``) pick a contiguous block of shards. Under
``accelerate launch`` each process writes the block's shards at positions congruent to its process index.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.compute as pc
import typer

from synthfair.cli.progress import bar
from synthfair.counterfactual import EngineConfig
from synthfair.errors import ConfigError
from synthfair.generate.plan import read_plan
from synthfair.generate.runner import (
    GenerateConfig,
    generate_in_processes,
    process_shards,
    shard_count,
    task_shards,
)
from synthfair.generate.runner import generate as generate_release
from synthfair.phantom.engine import NAME as PHANTOM
from synthfair.phantom.engine import PhantomEngineConfig


def generate(
    plan: Annotated[Path, typer.Option(help="The plan (from `synthfair plan`).")],
    out: Annotated[Path, typer.Option(help="The release directory (re-running resumes).")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="A run directory (runs/NAME), a model directory or a shipped model (phantom-64); "
            "none with --engine phantom."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="model (the image model at --checkpoint) or phantom (exact counterfactuals).")
    ] = "model",
    size: Annotated[
        int, typer.Option(help="Image size of a phantom-engine release (a model has its own).")
    ] = 64,
    shards: Annotated[str | None, typer.Option(help="A shard range A:B (B excluded); default: all.")] = None,
    task_index: Annotated[
        int | None, typer.Option(help="Array task index (default SLURM_ARRAY_TASK_ID).")
    ] = None,
    num_tasks: Annotated[
        int | None, typer.Option(help="Array tasks (default SLURM_ARRAY_TASK_COUNT).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Diffusion steps (default: the model's).")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale of every changed group (default: the model's).")
    ] = None,
    abduction: Annotated[
        str | None,
        typer.Option(help="ddpm (noise maps) or ddim (inversion + residual); default: the model's."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per network evaluation.")] = 8,
    encode_workers: Annotated[int, typer.Option(help="PNG-encoding threads.")] = 2,
    fit: Annotated[str, typer.Option(help="How factual images are fitted: crop, pad or stretch.")] = "crop",
    workers: Annotated[
        int,
        typer.Option(help="Local processes without a launcher (the phantom engine renders on a core each)."),
    ] = 1,
) -> None:
    """Generate the planned samples into WebDataset shards, each process writing whole shards."""
    import torch
    from accelerate import PartialState  # lazy: the CLI starts fast

    table, _ = read_plan(plan)
    wanted = _wanted(shards, task_index, num_tasks, shard_count(table))
    settings = _engine(engine, checkpoint, size, steps, guidance, abduction, batch_size)
    config = GenerateConfig(engine=settings, fit=fit, encode_workers=encode_workers)
    if workers != 1:
        _local_processes(plan, checkpoint, out, config, workers, wanted, table)
        return
    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes join a gloo group, as in training
    mine = process_shards(wanted, state.process_index, state.num_processes)
    rows = pc.sum(pc.is_in(table["shard"], pa.array(mine, pa.int32()))).as_py() or 0
    label = (
        f"generate [{state.process_index}/{state.num_processes}]" if state.num_processes > 1 else "generate"
    )
    with bar(rows, label) as tick:
        result = generate_release(
            plan,
            checkpoint,
            out,
            config,
            wanted,
            state.process_index,
            state.num_processes,
            str(state.device),
            tick,
        )
    typer.echo(
        f"process {state.process_index}: {len(result.shards)} shards ({result.written} written now, "
        f"{result.skipped} already done), {result.samples} samples, {result.failed} failed, "
        f"{result.seconds:.0f} s"
    )
    if state.is_main_process:
        typer.echo(f"release: {out.resolve()} (when every shard is done: synthfair finalize {out})")


def _local_processes(plan, checkpoint, out, config, workers: int, wanted: list[int], table) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            f"--workers {workers} under a launcher ({os.environ['WORLD_SIZE']} processes)",
            "use either accelerate launch or --workers, not both",
        )
    rows = Counter(table["shard"].to_pylist())  # plan rows per shard: the bar moves a shard at a time
    with bar(sum(rows[s] for s in wanted), f"generate [{workers} processes]") as tick:
        result = generate_in_processes(
            plan, checkpoint, out, config, workers, wanted, on_shard=lambda s: tick(rows[s])
        )
    typer.echo(
        f"{workers} processes: {len(result.shards)} shards ({result.written} written now, {result.skipped} "
        f"already done), {result.samples} samples, {result.failed} failed, {result.seconds:.0f} s"
    )
    typer.echo(f"release: {out.resolve()} (when every shard is done: synthfair finalize {out})")


def _engine(engine, checkpoint, size, steps, guidance, abduction, batch_size):
    if engine == PHANTOM:
        if checkpoint is not None:
            raise ConfigError(
                "--engine phantom renders exact counterfactuals: it takes no --checkpoint",
                "leave out --checkpoint",
            )
        return PhantomEngineConfig(size=size, batch_size=batch_size)
    if engine != "model":
        raise ConfigError(
            f"--engine {engine!r} is not model or phantom", "use --engine model or --engine phantom"
        )
    if checkpoint is None:
        raise ConfigError("--engine model needs --checkpoint", "pass --checkpoint runs/NAME or phantom-64")
    options = {"steps": steps, "guidance": guidance, "abduction": abduction, "batch_size": batch_size}
    return EngineConfig.recommended(checkpoint, **options)


def _wanted(shards: str | None, task_index: int | None, num_tasks: int | None, n_shards: int) -> list[int]:
    if shards is not None:
        first, sep, last = shards.partition(":")
        try:
            a, b = int(first), int(last) if sep else int(first) + 1
        except ValueError:
            raise ConfigError(f"--shards {shards!r} is not a range A:B", "e.g. --shards 0:4") from None
        return list(range(a, min(b, n_shards)))
    task_index = _env_int("SLURM_ARRAY_TASK_ID") if task_index is None else task_index
    num_tasks = _env_int("SLURM_ARRAY_TASK_COUNT") if num_tasks is None else num_tasks
    if task_index is None or num_tasks is None:
        return list(range(n_shards))
    return list(task_shards(n_shards, task_index, num_tasks))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None
