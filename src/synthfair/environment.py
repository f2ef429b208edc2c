"""What a bug report needs: package versions, threads, accelerators and the taxonomy in use."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import synthfair
from synthfair.errors import SynthfairError

# Distributions whose versions matter for results, in the order `synthfair env` lists them.
PACKAGES = (
    "torch",
    "torchvision",
    "diffusers",
    "accelerate",
    "pydicom",
    "webdataset",
    "numpy",
    "scipy",
    "pyarrow",
    "nibabel",
    "pillow",
)
NOT_INSTALLED = "not installed"


def collect_env() -> dict[str, Any]:
    """The environment as JSON-ready data; importing torch is the slow part (about a second)."""
    return {
        "synthfair": synthfair.__version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "torch": torch_runtime(),
        "taxonomy": taxonomy_info(),
    }


def usable_cpus() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def die_with_parent() -> None:
    """Ask the kernel to kill this (worker) process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so
    the workers of a killed run do not go on for seconds; a no-op elsewhere. A pool ``initializer``."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``"not installed"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def torch_runtime() -> dict[str, Any]:
    """Intra-op threads, CUDA devices (name, memory), MPS availability; ``{"error": ...}`` if torch fails."""
    try:
        import torch
    except ImportError as err:  # a broken or missing install is exactly what this report is for
        return {"error": f"cannot import torch: {err}"}
    info: dict[str, Any] = {
        "intra_op_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device_count": 0,
        "cuda_devices": [],
        "mps_available": torch.backends.mps.is_available(),
    }
    if info["cuda_available"]:
        try:
            info["cuda_device_count"] = torch.cuda.device_count()
            for index in range(info["cuda_device_count"]):
                props = torch.cuda.get_device_properties(index)
                info["cuda_devices"].append(
                    {"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 2)}
                )
        except RuntimeError as err:  # driver present but unusable: report, do not crash the report
            info["cuda_error"] = str(err)
    return info


def taxonomy_info() -> dict[str, Any]:
    """Path and sha256 of the default taxonomy, or the error that stops it from loading."""
    from synthfair.taxonomy import load_taxonomy

    try:
        taxonomy = load_taxonomy()
    except SynthfairError as err:
        return {"error": str(err)}
    return {"path": str(taxonomy.path), "sha256": taxonomy.sha256}
