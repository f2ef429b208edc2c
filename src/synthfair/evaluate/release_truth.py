"""Phantom samples of a release against their exact counterfactuals, re-rendered from the recorded noise.

A phantom sample's JSON holds its subject's noise id (seed, index, noise seed) and the phantom's
configuration; re-rendering the subject under the sample's do() at the source's size and fitting it as
generation fitted the factual gives the exact counterfactual, including the phantom's own propagation to
descendants. So this measures the whole pipeline: the attribute SCM and the image model.

Per counterfactual: ``mae_model`` = mean |generated - truth|, ``mae_unchanged`` = mean |factual - truth|;
and in
the oracles' prediction space (categorical probabilities, finding probabilities, age / 100), with the true
change ``z`` = o(truth) - o(factual) and the generated change ``g`` = o(generated) - o(factual):
``effectiveness`` = <z, g> / |z|^2 (1 = the true change, 0 = none) and ``amplification`` =
sqrt(|g|^2 - <z, g>^2 / |z|^2), the part of the generated change orthogonal to the true one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthfair.errors import SynthfairError
from synthfair.evaluate.oracles import Oracles
from synthfair.evaluate.samples import ReleaseSamples
from synthfair.phantom.engine import PhantomEngine, PhantomEngineConfig, SubjectMismatch


def phantom_truth(samples: ReleaseSamples, oracles: Oracles | None = None) -> pd.DataFrame:
    """One row per phantom counterfactual (and reconstruction) of the release; empty if there are none."""
    engines: dict[tuple[int, str], PhantomEngine] = {}  # one per (size, fit): a release has one
    rows, truths, generated, factual_rows = [], [], [], []
    skipped: dict[str, int] = {}
    for i, record in enumerate(samples.records):
        noise = record.get("phantom")
        f = samples.factual_of(i)
        if not noise or record["kind"] == "factual" or f is None:
            continue
        size, fit = record["generation"]["size"], record["generation"]["fit"]
        exact = engines.setdefault((size, fit), PhantomEngine(PhantomEngineConfig(size=size), fit))
        try:
            truth = exact.counterfactual(noise, record["intervention"]).image
        except SubjectMismatch as err:
            raise SubjectMismatch(f"sample {record['key']}: {err.message}", err.hint) from None
        except SynthfairError as err:  # e.g. a device the phantom has no profile for: no truth to compare
            skipped[err.message] = skipped.get(err.message, 0) + 1
            continue
        image, factual = samples.images[i], samples.images[f]
        unchanged = float(np.abs(factual - truth).mean())
        mae = float(np.abs(image - truth).mean())
        rows.append(
            {
                "key": record["key"],
                "label": record["label"],
                "kind": record["kind"],
                "row": i,
                "mae_model": mae,
                "mae_unchanged": unchanged,
            }
        )
        truths.append(truth)
        generated.append(image)
        factual_rows.append(f)
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = skipped  # samples the phantom cannot render, by reason
    if table.empty or oracles is None:
        return table
    o_truth = _prediction_vectors(oracles, np.stack(truths))
    o_generated = _prediction_vectors(oracles, np.stack(generated))
    o_factual = _prediction_vectors(oracles, samples.images[factual_rows])
    z, g = o_truth - o_factual, o_generated - o_factual
    along = (z * g).sum(1)
    norm2 = (z * z).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["effectiveness"] = np.where(norm2 > 1e-12, along / norm2, np.nan)
        table["amplification"] = np.where(
            norm2 > 1e-12,
            np.sqrt(np.maximum((g * g).sum(1) - along**2 / norm2, 0.0)),
            np.sqrt((g * g).sum(1)),
        )
    return table


def _prediction_vectors(oracles: Oracles, images: np.ndarray) -> np.ndarray:
    """The oracles' outputs as one vector per image: probabilities as they are, age in units of 100 years."""
    predictions = oracles.predict(images)
    parts = []
    for oracle in oracles:
        p = predictions[oracle.covariate]
        parts.append(p[:, None] / 100.0 if oracle.kind == "continuous" else p)
    return np.concatenate(parts, axis=1)
