"""Progress bars for the CLI layer (tqdm; hidden when stderr is not a terminal)."""

from __future__ import annotations

from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def bar(total: int | None, desc: str, unit: str = "img"):
    """A tqdm bar; yields a ``tick(n=1)`` callback for library functions (``total=None``: no known end)."""
    with tqdm(total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True) as progress:
        yield lambda n=1: progress.update(n)
