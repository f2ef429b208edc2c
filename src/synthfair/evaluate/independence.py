"""Oracle independence: the networks that judge a model never trained or guided it.

A classifier that helped train or guide an image model (counterfactual fine-tuning, classifier guidance,
masks) rewards exactly what it reads; scored by the same classifier, or by one that saw the same subjects,
effectiveness is gamed. So the evaluator refuses oracles that

- share a weights file (sha256) with any of the model's guidance classifiers (``model/guidance/*/``, and
  those of every model its routes hold: ``model/routes/*/guidance/*/``, where a route keeps only their
  digests, ``weights.sha256``), or
- share a training subject with them (``subjects.npy``, `synthfair.subjects`), or
- cannot be told apart: a guidance classifier without a subject record;

and it flags (reports, does not refuse) oracles that saw subjects of the image model's own training data,
or whose own subject record is missing. Agreement with the phantom's exact counterfactuals stays the final
judge either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthfair.errors import SynthfairError
from synthfair.evaluate.oracles import Oracles
from synthfair.fileio import sha256_file
from synthfair.model.finetune import guide_digests
from synthfair.model.routes import route_dirs
from synthfair.model.train import GUIDANCE_DIR
from synthfair.subjects import load_subjects, shared_subjects


@dataclass(frozen=True)
class Independence:
    guides: tuple[str, ...]  # the model's guidance classifiers (folder names)
    shared_with_model: int | None  # training subjects the oracles share with the image model (None: unknown)
    flags: tuple[str, ...]  # reported, not refused

    def as_dict(self) -> dict[str, Any]:
        return {
            "guides": list(self.guides),
            "shared_with_model": self.shared_with_model,
            "flags": list(self.flags),
        }


def check_independence(oracles: Oracles, model_dir: str | Path) -> Independence:
    """Refuse ``oracles`` that trained or guided the model of ``model_dir`` (see the module docstring)."""
    model_dir = Path(model_dir)
    mine = oracles.subjects
    flags = []
    if mine is None:
        flags.append("the oracles carry no subject record (subjects.npy): overlap with the model is unknown")
    weights = {sha256_file(p): p.name for p in oracles.weight_files() if p.is_file()}
    models = [model_dir, *route_dirs(model_dir)]  # a routed model: every image model it holds
    guides = [p for m in models for p in sorted((m / GUIDANCE_DIR).glob("*")) if p.is_dir()]
    for guide in guides:
        for digest, name in guide_digests(guide).items():
            same = weights.get(digest)
            if same:
                raise SynthfairError(
                    f"oracle {same} is the model's guidance classifier {guide.name}/{name}",
                    "evaluate with oracles trained separately, on other subjects (`synthfair oracles train`)",
                )
        theirs = load_subjects(guide)
        if theirs is None:
            raise SynthfairError(
                f"guidance classifier {guide} has no subject record ({guide}/subjects.npy): its independence "
                "from the oracles cannot be checked",
                "retrain it with synthfair, which writes the record",
            )
        if mine is not None and (shared := shared_subjects(mine, theirs)):
            raise SynthfairError(
                f"the oracles share {shared} training subjects with guidance classifier {guide.name}",
                "train the oracles on other subjects (another phantom seed, or a disjoint patient split)",
            )
    shared_total = None
    for model in models:
        trained_on = load_subjects(model)
        shared = None if mine is None or trained_on is None else shared_subjects(mine, trained_on)
        if shared:
            whose = "the image model's" if model == model_dir else f"route {model.name}'s"
            flags.append(f"the oracles saw {shared} of {whose} training subjects")
        if trained_on is None:
            flags.append(f"{model} carries no subject record: overlap with its training data is unknown")
        if shared is not None:
            shared_total = max(shared_total or 0, shared)
    return Independence(tuple(g.name for g in guides), shared_total, tuple(flags))
