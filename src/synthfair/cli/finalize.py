"""`synthfair finalize RELEASE_DIR`: manifest, SHA256SUMS, samples.parquet and the dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthfair.release.finalize import finalize as finalize_release


def finalize(
    release: Annotated[Path, typer.Argument(help="The release directory written by `synthfair generate`.")],
    dataset_version: Annotated[
        str, typer.Option(help="The version written into the manifest and card.")
    ] = "0.1.0",
) -> None:
    """Check every shard is done, then write the release's index, manifest, checksums and card."""
    result = finalize_release(release, dataset_version)
    typer.echo(
        f"{result.samples} samples in {result.shards} shards ({result.bytes / 1e6:.1f} MB; "
        f"{result.failed} failed, see shards/*.parquet)"
    )
    typer.echo(f"release: {release.resolve()} (check with: cd {release} && sha256sum -c SHA256SUMS)")
