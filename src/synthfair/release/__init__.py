"""Using a finished release: download it (all or a subset's shards, resumable, verified) and serve it."""

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
