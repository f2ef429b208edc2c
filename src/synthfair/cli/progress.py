"""Progress bars for the CLI layer (tqdm; hidden when stderr is not a terminal)."""

from __future__ import annotations

from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def bar(total: int, desc: str, unit: str = "img"):
    """A tqdm bar; yields a zero-argument ``tick`` callback for library functions."""
    with tqdm(total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True) as progress:
        yield lambda: progress.update(1)
