"""Models that ship inside the package.

``phantom-64``: the image model (and its fitted attribute SCM) trained on the built-in phantom at 64x64 by
the command in ``phantom-64/PROVENANCE.md``; small enough (a few MB of safetensors) to ship, so the demo
can make counterfactuals without training first.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from synthfair.errors import SynthfairError, did_you_mean

NAMES = ("phantom-64",)
TRAIN_CONFIG = "train.yaml"  # the training configuration the shipped weights were made with


def pretrained_path(name: str = "phantom-64") -> Path:
    """The directory of a shipped model (a `DiffusionModel` directory with ``scm/``)."""
    if name not in NAMES:
        raise SynthfairError(f"no pretrained model {name!r}{did_you_mean(name, NAMES)}", f"shipped: {NAMES}")
    path = Path(str(resources.files("synthfair.pretrained") / name))
    if not (path / "synthfair_model.json").is_file():
        raise SynthfairError(
            f"the pretrained model {name} is missing from this installation ({path})",
            "reinstall synthfair, or retrain it: `make demo TRAIN=1` (see docs/model.md)",
        )
    return path
