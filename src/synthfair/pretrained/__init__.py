"""Models that ship inside the package.

``phantom-64``: the image model (and its fitted attribute SCM) trained on the built-in phantom at 64x64 by
the command in ``phantom-64/PROVENANCE.md``, with the image models its routes send some interventions to
(``routes/``, chosen against the phantom's truth on development subjects); small enough (under 20 MB of
safetensors) to ship, so the demo can make counterfactuals without training first.

``oracles-phantom-64``: the pseudo-oracles (one small CNN per covariate) trained on the same training images,
by the command in ``oracles-phantom-64/PROVENANCE.md``; the evaluator's predictors and feature encoder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from synthfair.errors import SynthfairError, did_you_mean

MARKERS = {"phantom-64": "synthfair_model.json", "oracles-phantom-64": "oracles.json"}  # name -> its marker
NAMES = tuple(MARKERS)
TRAIN_CONFIG = "train.yaml"  # the training configuration of the shipped weights' last stage
# phantom-64's training stages in order (each later one fine-tunes the model of the one before: init_from)
TRAIN_STAGES = ("train-base.yaml", "train-findings.yaml", TRAIN_CONFIG)
# phantom-64's routes (synthfair.model.routes): per route, its training stages in order as (config in
# routes/NAME/, the step its run was stopped and exported at, None: its last); a route's first stage with an
# init_from starts from phantom-64's last stage; a fine-tuning stage's classifiers are trained for
# GUIDE_EPOCHS epochs on the first diffusion stage's subjects
ROUTE_STAGES = {
    "diffusion-cft": ((TRAIN_CONFIG, None),),  # ladder row F15
    # H1, then H6 (latents that mediate), then H7 (counterfactual fine-tuning)
    "hvae-mediator-cft": (("train-base.yaml", 5000), ("train-mediator.yaml", None), (TRAIN_CONFIG, None)),
}
GUIDE_EPOCHS = 6


def pretrained_path(name: str = "phantom-64") -> Path:
    """The directory of a shipped model: a `DiffusionModel` directory with ``scm/``, or an `Oracles` one."""
    if name not in NAMES:
        raise SynthfairError(f"no pretrained model {name!r}{did_you_mean(name, NAMES)}", f"shipped: {NAMES}")
    path = Path(str(resources.files("synthfair.pretrained") / name))
    if not (path / MARKERS[name]).is_file():
        raise SynthfairError(
            f"the pretrained model {name} is missing from this installation ({path})",
            "reinstall synthfair, or retrain it: `make demo TRAIN=1` (see docs/model.md)",
        )
    return path
