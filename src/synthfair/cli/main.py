"""The `synthfair` entry point: it only registers commands, one module per command.

A known error (`SynthfairError`) prints ``error: <message>`` and ``hint: <hint>`` on stderr and exits with
status 2; set ``SYNTHFAIR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

import synthfair
from synthfair.errors import SynthfairError

EXIT_KNOWN_ERROR = 2
DEBUG_VARIABLE = "SYNTHFAIR_DEBUG"

# --- commands: one module per command; register new ones here ----------------------------------------------
# name -> (module in synthfair.cli, its command function or Typer app, one-line help). A module is imported
# only when its command runs (or shows its own --help): `synthfair --help`, `sample`, `download` and
# `index stats` never import torch.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "env": ("env", "env", "Show the synthfair environment: package versions, torch threads, GPUs, taxonomy."),
    "phantom": (
        "phantom",
        "phantom",
        "Render the anatomical phantom: chest radiographs with exact counterfactuals.",
    ),
    "ingest": ("ingest", "ingest", "Ingest SOURCE into INDEX_DIR: a harmonized row per image."),
    "preprocess": ("preprocess", "preprocess", "Decode, resize and shard every indexed image once."),
    "train": ("train", "train", "Train the covariate-conditioned diffusion model; resumable."),
    "counterfactual": (
        "counterfactual",
        "counterfactual",
        'Answer "what would this radiograph look like had...".',
    ),
    "route": (
        "route",
        "route",
        "Add another image model to a model directory for the interventions it serves best.",
    ),
    "plan": ("plan", "plan", "Choose factual images and interventions; a key, shard and seed per sample."),
    "generate": ("generate", "generate", "Generate the planned samples into WebDataset shards."),
    "finalize": (
        "finalize",
        "finalize",
        "Write a finished release's manifest, checksums, samples table and card.",
    ),
    "evaluate": (
        "evaluate",
        "evaluate",
        "The soundness report of a release: oracles, phantom truth, realism, privacy.",
    ),
    "sample": ("sample", "sample", "Draw the subset of RELEASE that a bias spec asks for, and its baseline."),
    "study": ("study", "study", "Train a classifier per bias cell; report fairness per subgroup."),
    "demo": ("demo", "demo", "Run the whole pipeline on the built-in phantom."),
    "download": ("download", "download", "Download a release's metadata and shards, each verified."),
    "index": ("index", "app", "Inspect a harmonized index."),
    "oracles": ("oracles", "app", "Pseudo-oracles: one small CNN per covariate."),
}
# ------------------------------------------------------------------------------------------------------------


class _LazyCommand(click.Command):
    """A command's name and help for the group's listing; the real command is built when it runs."""

    def __init__(self, name: str, help_line: str):
        super().__init__(name, short_help=help_line, help=help_line)

    def make_context(self, info_name, args, parent=None, **extra):
        return _load(self.name).make_context(info_name, args, parent=parent, **extra)


class _LazyGroup(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return _LazyCommand(name, COMMANDS[name][2])


def _load(name: str) -> click.Command:
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(f"synthfair.cli.{module}"), attribute)
    if isinstance(target, typer.Typer):
        return typer.main.get_group(target)
    single = typer.Typer()
    single.command(name)(target)
    return typer.main.get_command(single)


app = typer.Typer(
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # SYNTHFAIR_DEBUG=1 shows Python's plain, complete traceback
    help="Build SynthFair: semi-synthetic chest X-rays with known, traceable confounders.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"synthfair {synthfair.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Build SynthFair: semi-synthetic chest X-rays with known, traceable confounders."""


def run(typer_app: typer.Typer, args: Sequence[str] | None = None, prog_name: str = "synthfair") -> None:
    """Run ``typer_app``; a `SynthfairError` becomes two lines on stderr and exit status 2.

    Usage errors keep click's own message and exit status. With ``SYNTHFAIR_DEBUG=1`` the error propagates
    (and the interpreter prints the traceback).
    """
    try:
        typer_app(args=list(args) if args is not None else None, prog_name=prog_name)
    except SynthfairError as err:
        if os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        print(f"error: {' '.join(err.message.splitlines())}", file=sys.stderr)
        if err.hint:
            print(f"hint: {' '.join(err.hint.splitlines())}", file=sys.stderr)
        raise SystemExit(EXIT_KNOWN_ERROR) from None


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point (``synthfair``, ``python -m synthfair``)."""
    run(app, args)
