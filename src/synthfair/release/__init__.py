"""A release: its files (`layout`), finalizing them (`finalize`, `card`), reading them from any location
(`source`), downloading them (all or a subset's shards, resumable, verified) and serving them."""

from synthfair.release.download import (
    DownloadPlan,
    DownloadResult,
    FailedFile,
    PlannedFile,
    download,
    plan_download,
    read_subset,
)

__all__ = [
    "DownloadPlan",
    "DownloadResult",
    "FailedFile",
    "PlannedFile",
    "ReleaseServer",
    "download",
    "plan_download",
    "read_subset",
    "serve",
]


def __getattr__(name: str):
    # lazy, so that `python -m synthfair.release.httpserver` does not find the module already imported
    if name in ("ReleaseServer", "serve"):
        from synthfair.release import httpserver

        return getattr(httpserver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
