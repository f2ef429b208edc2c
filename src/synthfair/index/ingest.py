"""Ingest one source into the index: adapter rows -> harmonized records -> index part + quarantine + report.

Nothing is lost: every row the adapter reads ends up in the index or in the quarantine file with its reason,
and the report counts both (``read == indexed + quarantined``). With ``on_error="stop"`` the first bad row
raises an error naming the file, row, field, value and fix instead; rows dropped by a documented policy
(`POLICY_CODES`: the source's own exclusions, the race-conflict policy) are quarantined either way.

Splits are patient-disjoint. A source's official split is kept; rows without one get a split from a hash of
their patient key (fractions in `IngestConfig.split_fractions`), so a patient's images always land together,
on every machine. A patient that an official split puts in two splits is quarantined (``split_conflict``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pyarrow as pa

import synthfair
from synthfair.config import config_to_dict
from synthfair.environment import package_version
from synthfair.errors import SynthfairError, cut, shown
from synthfair.index import table as index_table
from synthfair.sources import adapter
from synthfair.sources.harmonize import FindingsPolicy, Harmonizer
from synthfair.sources.records import SPLITS, Rejected, RowError, SourceRow, key_part
from synthfair.taxonomy import Taxonomy, load_taxonomy

ON_ERROR = ("stop", "skip")
# Rows dropped by a policy (the source's own exclusions, the race-conflict policy) are quarantined and counted
# whatever --on-error says: they are expected outcomes, not faults in the input.
POLICY_CODES = frozenset({"excluded_by_source", "race_conflict"})


@dataclass(frozen=True)
class IngestConfig:
    on_error: str = "stop"  # "stop": the first bad row raises; "skip": bad rows are quarantined and counted
    findings: FindingsPolicy = field(default_factory=FindingsPolicy)
    # patients recorded with different races (MIMIC-IV admissions, CheXpert demographics; compared after
    # harmonization, unknowns ignored): "drop" quarantines their images (the chexploration convention),
    # "missing" keeps them with race missing
    race_conflict: str = "drop"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, validate, test where not official
    check_images: bool = True  # quarantine rows whose image file does not exist

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise SynthfairError(f"--on-error {self.on_error!r} is not one of {ON_ERROR}", "use stop or skip")
        if self.race_conflict not in ("drop", "missing"):
            raise SynthfairError(
                f"race_conflict {self.race_conflict!r} is not 'drop' or 'missing'", "use drop or missing"
            )
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
            raise SynthfairError(
                f"split fractions {fractions} are not three non-negative numbers summing to 1",
                "pass e.g. 0.8,0.1,0.1 (train, validate, test)",
            )


@dataclass(frozen=True)
class IngestReport:
    source: str
    out: Path
    read: int
    indexed: int
    quarantined: Counter  # reason code -> rows
    defaulted: Counter  # "covariate=raw value" -> rows left to a mapping's default
    notes: dict[str, Any]

    @property
    def total_quarantined(self) -> int:
        return sum(self.quarantined.values())


def ingest(
    source: str,
    root: str | Path,
    out: str | Path,
    config: IngestConfig | None = None,
    taxonomy: Taxonomy | None = None,
    on_row: Callable[[], None] | None = None,
) -> IngestReport:
    """Read ``source`` at ``root`` and (re)place its rows in the index at ``out`` (see the module docs)."""
    config = config or IngestConfig()
    taxonomy = taxonomy or load_taxonomy()
    root = Path(root).resolve()
    read_rows = adapter(source)
    harmonizer = Harmonizer(taxonomy, source, config.findings)
    batch = _Batch(source, root, config)
    notes: dict[str, Any] = {}
    for item in read_rows(root, config, notes, taxonomy=taxonomy):
        batch.add(item, harmonizer)
        if on_row is not None:
            on_row()
    records = batch.assign_splits()
    table = index_table.to_table(records, taxonomy)
    quarantine = pa.Table.from_pylist(batch.quarantine, schema=index_table.QUARANTINE_SCHEMA)
    report = IngestReport(
        source, Path(out), batch.read, len(records), batch.reasons, harmonizer.defaulted, notes
    )
    index_table.write_source(out, source, table, quarantine, _report_json(report, root, config, taxonomy))
    return report


def _leaves_root(root: Path, image_path: str, resolve: bool) -> str | None:
    """Why ``image_path`` (from a source's metadata: untrusted) would reach outside ``root``, or None."""
    pure = PurePosixPath(str(image_path).replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(str(image_path)).drive:
        return "is absolute"
    if ".." in pure.parts:
        return "climbs out with '..'"
    if resolve:
        target = (root / pure).resolve()
        if not target.is_relative_to(root.resolve()):
            return f"leads outside --root through a link (to {cut(str(target))})"
    return None


class _Batch:
    """Accumulates one source's records and quarantined rows."""

    def __init__(self, source: str, root: Path, config: IngestConfig):
        self.source, self.root, self.config = source, root, config
        self.records: list[dict[str, Any]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.first_seen: dict[str, str] = {}  # sample_key -> where
        self.read = 0

    def add(self, item: SourceRow | Rejected, harmonizer: Harmonizer) -> None:
        self.read += 1
        if isinstance(item, Rejected):
            self.reject(item)
            return
        try:
            self.records.append(self.record(item, harmonizer))
            return
        except RowError as err:
            rejected = Rejected(item.source_id, item.where, err.code, err.message, err.hint, item.fields)
        self.reject(rejected)  # outside the except block: a stop error does not chain the row error

    def record(self, row: SourceRow, harmonizer: Harmonizer) -> dict[str, Any]:
        key = _prefixed(self.source, row.key or row.source_id)
        if key in self.first_seen:
            raise RowError(
                "duplicate_id",
                f"{row.where}: duplicate id {row.source_id!r} (first seen at {self.first_seen[key]})",
                "remove the duplicate row from the source file; the first occurrence is kept",
            )
        escape = _leaves_root(self.root, row.image_path, resolve=self.config.check_images)
        if escape:
            raise RowError(
                "image_outside_root",
                f"{row.where}: image path {shown(row.image_path)} {escape}",
                "image paths in a source's metadata must be relative and stay under --root; fix the row",
            )
        if self.config.check_images and not (self.root / row.image_path).is_file():
            raise RowError(
                "image_missing",
                f"{row.where}: image {row.image_path!r} not found under {self.root}",
                "download the missing image, or check that --root is the release folder",
            )
        record = harmonizer.record(row)
        self.first_seen[key] = row.where  # only once indexed: a quarantined first copy does not shadow
        record.update(
            sample_key=key,
            dataset=self.source,
            source_id=row.source_id,
            patient_key=_prefixed(self.source, row.patient_id),
            study_key=None if row.study_id is None else _prefixed(self.source, row.study_id),
            image_root=str(self.root),
            image_path=row.image_path,
            split=row.split,
            sample_hash=index_table.sample_hash(self.source, row.source_id),
            where=row.where,
        )
        return record

    def reject(self, item: Rejected) -> None:
        if self.config.on_error == "stop" and item.code not in POLICY_CODES:
            raise SynthfairError(
                item.message,
                (item.hint + "; or " if item.hint else "")
                + "ingest with --on-error skip to quarantine such rows",
            )
        self.reasons[item.code] += 1
        self.quarantine.append(
            {
                "source": self.source,
                "source_id": item.source_id,
                "where": item.where,
                "code": item.code,
                "reason": item.message,
                "hint": item.hint,
                "fields": _fields_text(item.fields),
            }
        )

    def assign_splits(self) -> list[dict[str, Any]]:
        """Official splits kept; a row without one joins its patient's official split when there is exactly
        one, else is hashed by patient; patients in several official splits are quarantined."""
        official: dict[str, set[str]] = defaultdict(set)
        for record in self.records:
            if isinstance(record["split"], str):
                official[record["patient_key"]].add(record["split"])
        splits: dict[str, set[str]] = defaultdict(set)
        for record in self.records:
            known = official.get(record["patient_key"], set())
            if not isinstance(record["split"], str) and len(known) == 1:
                record["split"] = next(iter(known))
            record["split"] = _split(record["split"], record["patient_key"], self.config.split_fractions)
            splits[record["patient_key"]].add(record["split"])
        kept = []
        for record in self.records:
            seen = splits[record["patient_key"]]
            if len(seen) == 1:
                kept.append(record)
                continue
            self.reject(
                Rejected(
                    record["source_id"],
                    record["where"],
                    "split_conflict",
                    f"{record['where']}: patient {record['patient_key']!r} is in several official splits "
                    f"{sorted(official[record['patient_key']])}; splits must be patient-disjoint",
                    "check the split file matches the image list (same release version)",
                )
            )
        return kept


def _prefixed(source: str, identifier: str) -> str:
    """``<source>_<id>`` made key-safe; an id that already starts with ``<source>_`` is not prefixed twice."""
    part = key_part(identifier)
    return part if part.startswith(f"{source}_") else f"{source}_{part}"


def _split(official: Any, patient_key: str, fractions: tuple[float, float, float]) -> str:
    if isinstance(official, str):
        return official
    allowed = tuple(official) if official else SPLITS
    weights = [f for s, f in zip(SPLITS, fractions, strict=True) if s in allowed]
    names = [s for s in SPLITS if s in allowed]
    total = sum(weights) or 1.0
    u, acc = index_table.unit_hash(f"split\x00{patient_key}") * total, 0.0
    for name, weight in zip(names, weights, strict=True):
        acc += weight
        if u < acc:
            return name
    return names[-1]


def _fields_text(fields: Any) -> str | None:
    if not fields:
        return None
    return "; ".join(f"{k}={cut(str(v))}" for k, v in fields.items() if v is not None)


def _report_json(report: IngestReport, root: Path, config: IngestConfig, taxonomy: Taxonomy) -> dict:
    return {
        "schema": "synthfair.ingest-report/1",
        "source": report.source,
        "root": str(root),
        "counts": {
            "read": report.read,
            "indexed": report.indexed,
            "quarantined": report.total_quarantined,
            "quarantined_by_reason": dict(sorted(report.quarantined.items())),
        },
        "defaulted_raw_values": dict(report.defaulted.most_common()),
        "notes": report.notes,
        "config": config_to_dict(config),
        "taxonomy_sha256": taxonomy.sha256,
        "synthfair_version": synthfair.__version__,
        "packages": {p: package_version(p) for p in ("pandas", "pyarrow", "pydicom", "pillow")},
        "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
