"""Fingerprint of the machine and build a benchmark ran on, and the real CPU limit.

The usable core count is the smaller of the scheduler affinity mask and the cgroup CPU
quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in v1): in
a container ``os.cpu_count()`` reports the host's cores, not what the process may use.
"""

from __future__ import annotations

import math
import os
import platform
from importlib import metadata
from pathlib import Path

from runtime.cpu import cpu_model_and_flags

_TRACKED_PACKAGES = (
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "ai-edge-litert",
)
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit(v2: Path = _CGROUP_V2, v1_quota: Path = _CGROUP_V1_QUOTA, v1_period: Path = _CGROUP_V1_PERIOD):
    """CPUs allowed by the cgroup quota (rounded up), or None when there is no quota."""
    try:
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota != "max" and period:
                return max(1, math.ceil(int(quota) / int(period)))
            return None
        if v1_quota.is_file() and v1_period.is_file():
            quota_value, period_value = int(v1_quota.read_text()), int(v1_period.read_text())
            if quota_value > 0 and period_value > 0:
                return max(1, math.ceil(quota_value / period_value))
    except (OSError, ValueError):
        return None
    return None


def usable_cores() -> int:
    """Cores this process may really use: affinity mask, capped by the cgroup quota."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(affinity, limit) if limit else affinity


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_fingerprint() -> dict:
    """CPU model, ISA flags, core counts, OS, package versions and ONNX Runtime providers."""
    import onnxruntime

    model, flags = cpu_model_and_flags()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": model,
        "architecture": platform.machine(),
        "isa_flags": flags,
        "logical_cpus_host": os.cpu_count(),
        "affinity_cpus": affinity,
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "usable_cores": usable_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "packages": _package_versions(),
        "onnxruntime": {
            "version": onnxruntime.__version__,
            "device": onnxruntime.get_device(),
            "available_providers": list(onnxruntime.get_available_providers()),
        },
    }


def training_machine() -> dict:
    """Where a model was trained: training is repeatable on one machine, not across CPUs (floating-point kernels
    differ), so a bundle's clinical figures belong to the model that machine trained."""
    import tensorflow

    model, flags = cpu_model_and_flags()
    return {"cpu_model": model, "architecture": platform.machine(), "isa_flags": flags,
            "usable_cores": usable_cores(), "tensorflow": tensorflow.__version__}
