"""How many gateway workers the container's CPUs call for.

The CPU limit is read from the container's cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``);
without one, the CPU request the chart passes in ``CHROMACTL_CPU_REQUEST`` (millicores,
from the downward API). Without either: one worker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
REQUEST_ENV = "CHROMACTL_CPU_REQUEST"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_limit(cgroup: Path = CGROUP) -> float | None:
    """CPUs the cgroup may use (quota / period), or None when unlimited."""
    v2 = _read(cgroup / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota_us, period_us = (
        _read(cgroup / "cpu" / "cpu.cfs_quota_us"),
        _read(cgroup / "cpu" / "cpu.cfs_period_us"),
    )
    if quota_us and period_us and int(quota_us) > 0:
        return int(quota_us) / int(period_us)
    return None


def default_workers(cgroup: Path = CGROUP, env: Mapping[str, str] = os.environ) -> int:
    """Workers for the CPU limit, else the CPU request, else 1 (never more than the machine has)."""
    cpus = cpu_limit(cgroup)
    if cpus is None:
        millicores = env.get(REQUEST_ENV, "").strip()
        cpus = int(millicores) / 1000 if millicores.isdigit() else None
    if cpus is None:
        return 1
    return max(1, min(math.ceil(cpus - 0.05), os.cpu_count() or 1))
