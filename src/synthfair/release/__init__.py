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
from synthfair.release.httpserver import ReleaseServer, serve

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
