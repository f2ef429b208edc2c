"""`synthfair train --config configs/NAME.yaml --data CACHE --out runs/NAME [--resume latest]`.

The same command runs in one process (CPU or one GPU) and under ``accelerate launch`` on many GPUs and nodes:

    accelerate launch --num_processes 8 -m synthfair train --config configs/real-256.yaml ...

Only the main process shows the progress bar and prints where the outputs went.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from accelerate import PartialState
from tqdm.auto import tqdm

from synthfair.cli.progress import LOG_EVERY
from synthfair.model.train import TrainConfig, TrainResult, checkpoints, load_train_config
from synthfair.model.train import train as train_model

# tqdm's own rate left out: the postfix shows the training loop's images/s
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} img [{elapsed}<{remaining}{postfix}]"


def train(
    config: Annotated[Path, typer.Option(help="Training config YAML (see configs/README.md).")],
    data: Annotated[Path, typer.Option(help="A preprocessed cache (from `synthfair preprocess`).")],
    out: Annotated[Path, typer.Option(help="The run directory: checkpoints, model, loss curve.")],
    resume: Annotated[
        str | None,
        typer.Option(help="latest (start fresh if there is no checkpoint yet) or a checkpoint directory."),
    ] = None,
    stop_at: Annotated[
        int | None, typer.Option(help="End at this step with a checkpoint (continue with --resume latest).")
    ] = None,
    export: Annotated[
        bool, typer.Option("--export", help="With --stop-at: also write the model (EMA weights) there.")
    ] = False,
) -> None:
    """Train the covariate-conditioned image model (diffusion, or an HVAE with an hvae: section); resumable,
    unchanged under `accelerate launch`."""
    train_config = load_train_config(config)
    # train() sets up accelerate's process state (CPU or GPU, one or many processes) and calls on_step on the
    # main process only, so the bar is made there, at the first step; the state must not be created before.
    with _ImageBar(train_config) as on_step:
        result = train_model(
            train_config, data, out, resume=resume, on_step=on_step, stop_at=stop_at, export=export
        )
    if PartialState().is_main_process:
        _report(result, train_config)


class _ImageBar:
    """A tqdm bar counting training images (the global batch per step), made at the first ``on_step`` call,
    which happens on the main process only; a resumed run's bar starts at the checkpoint's step."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.progress: tqdm | None = None
        self.logged = -LOG_EVERY

    def __enter__(self):
        return self.on_step

    def on_step(self, step: int, loss: float, images_per_second: float) -> None:
        if self.progress is None:
            self.per_step = self.config.batch_size * PartialState().num_processes
            done = (step - 1) * self.per_step  # > 0 when resumed: counted, but not in the rate
            total = self.config.steps * self.per_step
            self.progress = tqdm(
                total=total,
                initial=done,
                desc="train",
                unit="img",
                bar_format=BAR_FORMAT,
                disable=None,
                dynamic_ncols=True,
            )
        self.progress.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_second:.1f}", refresh=False)
        self.progress.update(step * self.per_step - self.progress.n)
        if self.progress.disable and time.monotonic() - self.logged >= LOG_EVERY:  # no terminal: log lines
            self.logged = time.monotonic()
            line = f"[train] step {step}/{self.config.steps}: loss {loss:.4f}, {images_per_second:.1f} img/s"
            typer.echo(line, err=True)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.close()


def _report(result: TrainResult, config: TrainConfig) -> None:
    out = result.out
    start = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    typer.echo(
        f"trained to step {result.steps} of {config.steps}{start}: loss {result.final_loss:.4f}, "
        f"{result.images_per_second:.1f} images/s"
    )
    if result.skipped_updates:
        typer.echo(
            f"{result.skipped_updates} updates skipped (gradient norm above grad_skip {config.grad_skip})"
        )
    if result.multiplier is not None:
        typer.echo(
            f"ELBO constraint: Lagrange multiplier {result.multiplier:.4g} "
            f"(negative ELBO held at {result.elbo_target:.4f} nats/pixel)"
        )
    if result.steps == config.steps or (out / "model").is_dir():
        typer.echo(f"model (EMA weights): {(out / 'model').resolve()}")
    if result.steps != config.steps:
        typer.echo(f"stopped early at step {result.steps}: continue with --resume latest")
    found = checkpoints(out)
    if found:
        typer.echo(f"checkpoints: {found[-1].parent.resolve()} (latest: {found[-1].name})")
    typer.echo(f"loss curve: {(out / 'loss.csv').resolve()}")
    if (out / "loss.png").is_file():
        typer.echo(f"loss plot: {(out / 'loss.png').resolve()}")
    typer.echo(f"run record: {(out / 'train.json').resolve()}, {(out / 'config.yaml').resolve()}")
