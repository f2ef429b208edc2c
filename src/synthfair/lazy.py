"""Package attributes imported on first use (PEP 562), so that importing one light submodule of a package
does not pull in torch through its heavy siblings."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps an attribute to the module defining it; a
    loaded attribute is cached in ``namespace`` (the package's globals)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = namespace[name] = getattr(importlib.import_module(names[name]), name)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
