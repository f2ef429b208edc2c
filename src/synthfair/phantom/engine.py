"""The phantom's exact counterfactuals as a generation engine (``synthfair generate --engine phantom``).

For a plan row of a phantom subject, the counterfactual is the phantom's render of the *same* subject (the
noise the plan recorded: seed, index, noise seed and the phantom's configuration) under the row's do(),
propagated to descendants through the phantom's own SCM with the same noise: the truth that a model's
counterfactuals are judged against, as a release. It is rendered at the source's size and fitted to the
release size exactly as generation fits the factual image, so a reconstruction is the factual image, byte
for byte. Rows of other sources fail with the reason (recorded in the shard's status, never dropped).

Every render depends only on the row (subject noise, intervention, sizes), so shards are byte-identical
whichever process, rank or array task writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthfair.config import dataclass_from_dict
from synthfair.counterfactual import Counterfactual
from synthfair.errors import ConfigError, SynthfairError
from synthfair.images.resize import fit_image
from synthfair.phantom.simulator import Phantom, PhantomConfig

NAME = "phantom"


class SubjectMismatch(SynthfairError):
    """This phantom re-creates a subject with another noise seed than the plan recorded (another version)."""


@dataclass(frozen=True)
class PhantomEngineConfig:
    size: int = 64  # release image size (each render is fitted to it like the factual image)
    batch_size: int = 8  # plan rows per call (rendering is per row; this only paces the progress)

    def __post_init__(self) -> None:
        if self.size < 16 or self.batch_size < 1:
            raise ConfigError(
                f"the phantom engine needs size >= 16, batch_size >= 1; got {self.size}, {self.batch_size}",
                "use e.g. size 64",
            )


class PhantomEngine:
    """Exact counterfactuals of phantom subjects, re-rendered from the noise a plan row records."""

    def __init__(self, config: PhantomEngineConfig | None = None, fit: str = "crop"):
        self.config = config or PhantomEngineConfig()
        self.fit = fit
        self._phantoms: dict[str, Phantom] = {}

    @property
    def size(self) -> int:
        return self.config.size

    def __call__(
        self, noises: Sequence[Mapping[str, Any] | None], interventions: Sequence[Mapping[str, Any]]
    ) -> list[Counterfactual | SynthfairError]:
        """One exact counterfactual per (subject noise id of a plan row, do()); an error for a row the
        phantom cannot render (not a phantom subject, a value its spec has no profile for)."""
        out: list[Counterfactual | SynthfairError] = []
        for noise, do in zip(noises, interventions, strict=True):
            try:
                out.append(self.counterfactual(noise, do))
            except SubjectMismatch:
                raise
            except SynthfairError as err:
                out.append(err)
        return out

    def counterfactual(self, noise: Mapping[str, Any] | None, do: Mapping[str, Any]) -> Counterfactual:
        if not noise:
            raise SynthfairError(
                "not a phantom subject: the exact engine renders phantom subjects only",
                "plan phantom sources for --engine phantom, or generate with a model",
            )
        phantom = self.phantom(noise)
        subject = phantom.subject(noise["seed"], noise["index"])
        if subject.noise_seed != noise["noise_seed"]:
            raise SubjectMismatch(
                f"the phantom re-creates subject ({noise['seed']}, {noise['index']}) with noise seed "
                f"{subject.noise_seed}, the plan recorded {noise['noise_seed']}",
                "generate with the synthfair version that rendered the source",
            )
        rendered = phantom.counterfactual(subject, dict(do), size=noise.get("size") or self.size)
        image = fit_image(rendered.image / 65535.0, self.size, self.fit).astype(np.float32)
        return Counterfactual(
            image=image,
            covariates=rendered.covariates,
            factual=rendered.factual,
            intervention=dict(do),
            changed=rendered.changed,
            propagated=True,
            reconstruction_error=0.0,
        )

    def phantom(self, noise: Mapping[str, Any]) -> Phantom:
        """The phantom a noise id was rendered with (its recorded configuration), built once."""
        key = json.dumps(noise.get("config"), sort_keys=True)
        if key not in self._phantoms:
            config = {k: v for k, v in (noise.get("config") or {}).items() if v is not None}
            self._phantoms[key] = Phantom(
                dataclass_from_dict(PhantomConfig, config, where="the phantom config")
            )
        return self._phantoms[key]
