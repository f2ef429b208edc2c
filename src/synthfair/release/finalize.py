"""Finalize a generated release: samples index, manifest, wids shard index, dataset card, checksums.

Refuses a release with unfinished shards and names them. Everything it writes is derived from the shards'
own records (``_stats.json``, the per-shard Parquet) and the plan copied into the release, so finalizing
twice gives the same bytes; ``SHA256SUMS`` is written last.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthfair.errors import SynthfairError
from synthfair.fileio import atomic_write, sha256_file, write_json
from synthfair.release import layout
from synthfair.release.card import numbers_section, size_category
from synthfair.release.layout import read_plan
from synthfair.taxonomy import Taxonomy, load_taxonomy

NUMBERS_START = "<!-- synthfair:numbers:start -->"
NUMBERS_END = "<!-- synthfair:numbers:end -->"
MANIFEST_SHARD_FIELDS = ("url", "sha256", "filesize", "nsamples", "failed", "first_key", "last_key")


@dataclass(frozen=True)
class FinalizeResult:
    out: Path
    shards: int
    samples: int
    failed: int
    bytes: int


def finalize(
    release: str | Path, dataset_version: str = "0.1.0", taxonomy: Taxonomy | None = None
) -> FinalizeResult:
    """Write samples.parquet, manifest.json, shardindex.json, DATASET_CARD.md and SHA256SUMS."""
    out = Path(release)
    taxonomy = taxonomy or load_taxonomy()
    n, missing = layout.release_complete(out)
    if missing:
        raise SynthfairError(
            f"{out} is incomplete: {len(missing)} of {n} shards are not done ({_ranges(missing)})",
            "run `synthfair generate` again with the same arguments (it resumes), then finalize",
        )
    request = json.loads((out / layout.REQUEST_FILE).read_text())
    stats = [json.loads(layout.stats_path(out, s).read_text()) for s in range(n)]
    samples = samples_table(out, n, taxonomy)
    atomic_write(out / layout.SAMPLES_FILE, lambda f: pq.write_table(samples, f, compression="zstd"))
    _, plan_meta = read_plan(out / layout.PLAN_FILE)
    shards = [{k: s[k] for k in MANIFEST_SHARD_FIELDS} for s in stats]
    total_bytes = sum(s["filesize"] for s in stats)
    manifest = {
        "schema": layout.RELEASE_SCHEMA,
        "dataset_version": dataset_version,
        "generator": request.get("generator", "model"),  # "model", or "phantom": its exact counterfactuals
        "checkpoint_sha256": request["checkpoint_sha256"],
        "model_config_sha256": request["model_config_sha256"],
        # other image models that made some interventions (synthfair.model.routes): keys, weights, configs
        **{k: request[k] for k in ("routes", "route_sha256", "route_config_sha256") if k in request},
        "config": {k: request[k] for k in ("engine", "fit", "size", "scm")},
        "plan": {"sha256": request["plan_sha256"], "spec": plan_meta.get("spec")},
        "taxonomy_sha256": request["taxonomy_sha256"],
        "synthfair_version": request["synthfair_version"],
        "nsamples": samples.num_rows,
        "failed": sum(s["failed"] for s in stats),
        "bytes": total_bytes,
        "shards": shards,
    }
    write_json(out / layout.MANIFEST_FILE, manifest)
    write_json(out / layout.SHARD_INDEX_FILE, shard_index(shards))
    card = render_card(manifest, stats, samples.to_pandas(), taxonomy)
    atomic_write(out / layout.CARD_FILE, lambda f: f.write(card.encode()))
    _write_sums(out, n)
    return FinalizeResult(out, n, samples.num_rows, manifest["failed"], total_bytes)


def samples_table(out: Path, n_shards: int, taxonomy: Taxonomy) -> pa.Table:
    """One row per written sample, in plan order: plan columns, status columns, covariates as columns."""
    plan, _ = read_plan(out / layout.PLAN_FILE)
    plan = plan.drop_columns(["image", "factual", "phantom"])
    status: dict[str, dict[str, Any]] = {}
    for s in range(n_shards):
        for row in pq.read_table(layout.status_path(out, s)).to_pylist():
            if row["status"] == "ok":
                status[row["key"]] = row
    rows = [r for r in plan.to_pylist() if r["key"] in status]
    extra = [f for f in layout.STATUS_SCHEMA if f.name not in ("key", "status", "error", "covariates")]
    columns = {f.name: pa.array([r[f.name] for r in rows], f.type) for f in plan.schema}
    columns |= {f.name: pa.array([status[r["key"]][f.name] for r in rows], f.type) for f in extra}
    covariates = [json.loads(status[r["key"]]["covariates"]) for r in rows]
    for spec in taxonomy:
        values = [c.get(spec.name) for c in covariates]
        if spec.kind == "continuous":
            columns[spec.name] = pa.array(values, pa.float64())
        elif spec.kind == "categorical":
            columns[spec.name] = pa.array(values, pa.string())
        else:
            for label in spec.values:
                columns[f"{spec.name}.{label}"] = pa.array([(v or {}).get(label) for v in values], pa.int8())
    return pa.table(columns)


def shard_index(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The wids shard index (``wids-shard-index-v1``) of the release's shards; URLs relative to the file."""
    shardlist = [{k: s[k] for k in ("url", "nsamples", "filesize")} for s in shards]
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "synthfair", "shardlist": shardlist}


def _generator(manifest: dict) -> str:
    if manifest.get("generator") == "phantom":
        return (
            "counterfactuals: the phantom's **exact** counterfactuals (each subject re-rendered under the "
            "do-intervention, no image model)"
        )
    text = f"image-model weights sha256 `{manifest['checkpoint_sha256']}`"
    for name, digest in manifest.get("route_sha256", {}).items():
        keys = ", ".join(k for k, v in manifest["routes"].items() if v == name)
        text += f"; for {keys}: route `{name}`, weights sha256 `{digest}`"
    return text


def render_card(manifest: dict, stats: list[dict], samples: pd.DataFrame, taxonomy: Taxonomy) -> str:
    """The dataset card template with its tokens and numbers section filled from the release."""
    template = resources.files("synthfair.release").joinpath("card_template.md").read_text()
    tokens = {
        "{size_category}": size_category(manifest["nsamples"]),
        "{dataset_version}": manifest["dataset_version"],
        "{generator}": _generator(manifest),
        "{taxonomy_sha256}": manifest["taxonomy_sha256"],
        "{synthfair_version}": manifest["synthfair_version"],
    }
    for token, value in tokens.items():
        template = template.replace(token, str(value))
    head, start, rest = template.partition(NUMBERS_START)
    _, end, tail = rest.partition(NUMBERS_END)
    if not start or not end:
        raise SynthfairError(
            f"the dataset card template has no {NUMBERS_START} ... {NUMBERS_END} section",
            "restore synthfair/release/card_template.md",
        )
    errors = Counter()
    for s in stats:
        errors.update(s.get("errors", {}))
    numbers = numbers_section(manifest, samples, taxonomy, dict(errors))
    return f"{head}{NUMBERS_START}\n{numbers}\n{NUMBERS_END}{tail}"


def _write_sums(out: Path, n_shards: int) -> None:
    files = [
        layout.REQUEST_FILE,
        layout.PLAN_FILE,
        layout.SAMPLES_FILE,
        layout.MANIFEST_FILE,
        layout.SHARD_INDEX_FILE,
        layout.CARD_FILE,
    ]
    for s in range(n_shards):
        files += [str(p.relative_to(out)) for p in (layout.tar_path(out, s), layout.status_path(out, s))]
    lines = "".join(f"{sha256_file(out / f)}  {f}\n" for f in sorted(files))
    atomic_write(out / layout.SUMS_FILE, lambda f: f.write(lines.encode()))


def _ranges(shards: list[int]) -> str:
    """[0, 1, 2, 5] -> "shards 0-2, 5" (what to resubmit)."""
    parts, start = [], None
    for i, s in enumerate(shards):
        start = s if start is None else start
        if i + 1 == len(shards) or shards[i + 1] != s + 1:
            parts.append(f"{start}-{s}" if s != start else f"{s}")
            start = None
    return "shards " + ", ".join(parts)
