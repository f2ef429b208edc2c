"""`synthfair env`: print versions, threads, accelerators and the taxonomy, for bug reports."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from synthfair.environment import collect_env


def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show the synthfair environment: package versions, torch threads, GPUs and the taxonomy in use."""
    info = collect_env()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for line in format_env(info):
        typer.echo(line)


def format_env(info: dict[str, Any]) -> list[str]:
    """The report as aligned ``key: value`` lines; nested sections are indented."""
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            width = max((len(k) for k in value), default=0)
            lines += [f"  {k:<{width}}  {_text(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return lines


def _text(value: Any) -> str:
    if isinstance(value, list):  # CUDA devices
        return "; ".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value) or "-"
    return str(value)
