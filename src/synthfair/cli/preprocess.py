"""`synthfair preprocess INDEX_DIR --size PX --out CACHE`: training-ready WebDataset shards from an index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.cli.progress import bar
from synthfair.environment import usable_cpus
from synthfair.index import count_rows
from synthfair.index.preprocess import PreprocessConfig
from synthfair.index.preprocess import preprocess as preprocess_index


def preprocess(
    index_dir: Annotated[Path, typer.Argument(help="The index directory (from `synthfair ingest`).")],
    out: Annotated[Path, typer.Option(help="The cache directory to write (re-running resumes).")],
    size: Annotated[int, typer.Option(help="Output image size in pixels (square).")] = 64,
    fit: Annotated[str, typer.Option(help="crop (centre), pad (zeros) or stretch.")] = "crop",
    shard_size: Annotated[int, typer.Option(help="Images per shard.")] = 1000,
    workers: Annotated[int, typer.Option(help="Decoding processes (0: every usable core).")] = 0,
) -> None:
    """Decode, resize and shard every indexed image once, so that training never decodes DICOM."""
    config = PreprocessConfig(size=size, fit=fit, shard_size=shard_size, workers=workers or usable_cpus())
    with bar(count_rows(index_dir), "preprocess") as tick:
        result = preprocess_index(index_dir, out, config, on_image=tick)
    typer.echo(
        f"{result.images} images in {result.shards} shards ({result.processed} processed now, "
        f"{result.failed} unreadable: see shards/*.parquet)"
    )
    typer.echo(f"cache: {(out / 'manifest.json').resolve()}")
