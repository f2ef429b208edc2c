"""Covariate filters over index- or release-shaped tables, shared by the planner and the sampler.

mask = where_mask(frame, "age", [18, 90], taxonomy, "plan select.where.age")   # continuous: [lo, hi]
mask = where_mask(frame, "view", ["PA", "AP"], taxonomy, "...")                 # categorical: values
mask = where_mask(frame, "findings.cardiomegaly", 1, taxonomy, "...")           # a finding: values
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthfair.errors import ConfigError, did_you_mean
from synthfair.taxonomy import Covariate, Taxonomy


def where_mask(frame: pd.DataFrame, name: str, allowed: Any, taxonomy: Taxonomy, key: str) -> np.ndarray:
    """Rows of ``frame`` whose covariate ``name`` is allowed; ``key`` names the setting in errors."""
    spec = covariate_of(name, taxonomy, key)
    if spec.kind == "continuous":
        if not (isinstance(allowed, (list, tuple)) and len(allowed) == 2):
            raise ConfigError(f"{key}: {allowed!r} is not a [lo, hi] range", f"e.g. {name}: [18, 90]")
        lo, hi = (spec.check(v, where=key) for v in allowed)
        return frame[name].between(lo, hi).to_numpy()
    values = allowed if isinstance(allowed, (list, tuple)) else [allowed]
    if spec.kind == "categorical":
        for v in values:
            spec.check(v, where=key)
    return frame[name].isin(values).to_numpy()


def covariate_of(name: str, taxonomy: Taxonomy, key: str) -> Covariate:
    """The taxonomy entry of a covariate name or of a finding written ``findings.<label>``."""
    if name in taxonomy and taxonomy[name].kind != "multilabel":
        return taxonomy[name]
    finding = name.split(".", 1)
    if len(finding) == 2 and finding[0] in taxonomy and taxonomy[finding[0]].kind == "multilabel":
        taxonomy[finding[0]].check({finding[1]: 0}, where=key)
        return taxonomy[finding[0]]
    raise unknown_covariate(name, key, taxonomy)


def unknown_covariate(name: str, key: str, taxonomy: Taxonomy) -> ConfigError:
    options = list(taxonomy.names) + list(taxonomy.label_columns())
    return ConfigError(
        f"{key}: unknown covariate {name!r}{did_you_mean(name, options)}",
        f"covariates: {', '.join(taxonomy.names)}; findings as findings.<label>",
    )
