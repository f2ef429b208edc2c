"""Source adapters: one module per published CXR dataset, each reading its files exactly as released.

Every adapter module defines ``read(root, config, notes, taxonomy=None) -> Iterator[SourceRow | Rejected]``
(see `synthfair.sources.records`); `adapter(name)` returns it. ``notes`` collects facts for the ingest
report (which file variant was found, counts); ``taxonomy`` is the one ingest harmonizes with.
Harmonization itself happens outside the adapters, in `synthfair.sources.harmonize`, through taxonomy.yaml.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from synthfair.errors import SynthfairError, did_you_mean

SOURCES = ("mimic", "chexpert", "vindr", "padchest", "brax", "nih", "phantom")


def adapter(name: str) -> Callable:
    """The ``read`` function of source ``name``'s adapter module."""
    if name not in SOURCES:
        raise SynthfairError(
            f"unknown source {name!r}{did_you_mean(name, SOURCES)}", f"sources: {', '.join(SOURCES)}"
        )
    return importlib.import_module(f"synthfair.sources.{name}").read
