"""The `synthfair` entry point: it only registers commands, one module per command.

A known error (`SynthfairError`) prints ``error: <message>`` and ``hint: <hint>`` on stderr and exits with
status 2; set ``SYNTHFAIR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

import synthfair
from synthfair.cli import (
    counterfactual,
    demo,
    download,
    env,
    evaluate,
    finalize,
    generate,
    index,
    ingest,
    oracles,
    phantom,
    plan,
    preprocess,
    sample,
    study,
    train,
)
from synthfair.errors import SynthfairError

EXIT_KNOWN_ERROR = 2
DEBUG_VARIABLE = "SYNTHFAIR_DEBUG"

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # SYNTHFAIR_DEBUG=1 shows Python's plain, complete traceback
    help="Build SynthFair: semi-synthetic chest X-rays with known, traceable confounders.",
)

# --- commands: one module per command; register new ones here ----------------------------------------------
COMMANDS = [
    ("env", env.env),
    ("phantom", phantom.phantom),
    ("ingest", ingest.ingest),
    ("preprocess", preprocess.preprocess),
    ("train", train.train),
    ("counterfactual", counterfactual.counterfactual),
    ("plan", plan.plan),
    ("generate", generate.generate),
    ("finalize", finalize.finalize),
    ("evaluate", evaluate.evaluate),
    ("sample", sample.sample),
    ("study", study.study),
    ("demo", demo.demo),
    ("download", download.download),
]
for _name, _function in COMMANDS:
    app.command(_name)(_function)
app.add_typer(index.app, name="index")
app.add_typer(oracles.app, name="oracles")
# ------------------------------------------------------------------------------------------------------------


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
