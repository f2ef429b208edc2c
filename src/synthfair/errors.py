"""Errors that name what was wrong, the offending value and where, and what to do about it.

Every known failure raises a `SynthfairError` (or a subclass). The CLI prints its message on one line and its
hint on the next; ``SYNTHFAIR_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SynthfairError(Exception):
    """A known, user-fixable error: ``message`` says what and where, ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(SynthfairError):
    """A configuration file or argument is invalid."""


class TaxonomyError(ConfigError):
    """taxonomy.yaml, or a value checked against it, is invalid."""


class AssetError(SynthfairError):
    """A downloaded or cached data file is missing, corrupt or cannot be fetched."""


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
