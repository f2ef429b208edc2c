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


MAX_SHOWN = 200  # characters of an input value echoed in an error (values may be megabytes)


def cut(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` itself, or its first ``limit`` characters with its length said."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length said: safe to echo any input."""
    text = repr(value) if not isinstance(value, str) or len(value) <= 4 * limit else repr(value[: 4 * limit])
    if len(text) <= limit:
        return text
    length = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters shown"
    return f"{text[:limit]}... ({length})"


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or ``""`` when nothing is close (or the
    value is far longer than any option: the comparison would cost seconds for nothing)."""
    options = [str(o) for o in options]
    value = str(value) if not isinstance(value, str) else value
    if len(value) > max((len(o) for o in options), default=0) * 2 + 20:
        return ""
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
