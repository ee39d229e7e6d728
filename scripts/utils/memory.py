"""Estimate the memory a step needs before running it, and refuse with advice when it will not fit.

What is free for this process is the tightest of: the machine's available memory (``MemAvailable``), the headroom
under the process's address-space and data limits (``RLIMIT_AS`` / ``RLIMIT_DATA``, e.g. ``ulimit -v``), and the
headroom of its cgroup (``memory.max`` - ``memory.current``, as in a container or a batch job). A check is made before
the allocation it guards, from sizes known up front (an image header, the grid and the number of time points).
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Sequence
from pathlib import Path

from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["available_bytes", "check_allocation", "check_memory", "estimate_bytes", "limit_headroom"]

# Peak bytes per voxel of the padded grid: a fixed part (endpoint features, I/O) and a part per t in the decoder batch.
# Measured at 128x128x32 on CPU (float32, default widths, scripts.evaluation.bench.peak_memory): 1065 B/voxel with one t per
# pass, 2590 with four, i.e. ~557 fixed + ~508 per t; rounded up here.
BYTES_PER_VOXEL_FIXED = 600
BYTES_PER_VOXEL_PER_T = 550

_UNKNOWN = 1 << 62  # no limit known: do not refuse
CGROUP_ROOT = Path("/sys/fs/cgroup")


def estimate_bytes(shape: Sequence[int], num_t: int, max_batch: int | None) -> int:
    """Peak memory (bytes) of ``Student.interpolate_series`` on a volume of ``shape`` with ``num_t`` time points,
    ``max_batch`` of them per decoder pass (None: all, the upper bound)."""
    voxels = 1
    for s in shape:
        voxels *= -(-int(s) // 8) * 8
    per_pass = num_t if max_batch is None else min(num_t, max_batch)
    return voxels * (BYTES_PER_VOXEL_FIXED + BYTES_PER_VOXEL_PER_T * per_pass)


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmSize``, ``VmData``) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _UNKNOWN


def limit_headroom() -> int:
    """Bytes this process may still map under its soft ``RLIMIT_AS`` and ``RLIMIT_DATA`` (the smaller)."""
    headroom = _UNKNOWN
    for limit, field in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            used = _status_kib(field) or 0
            headroom = min(headroom, max(soft - used, 0))
    return headroom


def _read_number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def cgroup_headroom(root: Path | None = None) -> int:
    """Bytes left under the memory limit of this process's cgroup (v2 ``memory.max``, or v1
    ``memory.limit_in_bytes``), the tightest along its path; unknown or unlimited -> a huge number."""
    root = CGROUP_ROOT if root is None else root
    folders = [root]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                relative = line[3:].strip().lstrip("/")
                if relative:
                    folders.append(root / relative)
    except OSError:
        pass
    headroom = _UNKNOWN
    for folder in folders:
        for limit_name, usage_name in (("memory.max", "memory.current"),
                                       ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
            limit = _read_number(folder / limit_name)
            if limit is not None:
                headroom = min(headroom, max(limit - (_read_number(folder / usage_name) or 0), 0))
    return headroom


def available_bytes(device) -> int:
    """Memory this process can still use on ``device`` (a ``torch.device`` or its name): CUDA from the driver; CPU
    the tightest of the machine's available memory, the process's rlimits and its cgroup (module docstring)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    return min(_meminfo_available(), limit_headroom(), cgroup_headroom())


def size_text(n: int) -> str:
    """``n`` bytes as ``"1.5 GiB"`` / ``"300 MiB"``."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_allocation(need: int, source: str | os.PathLike, what: str, device="cpu") -> int:
    """Raise :class:`InputError` naming ``source`` when ``need`` bytes (for ``what``) exceed what is free on ``device``;
    return ``need``."""
    free = available_bytes(device)
    if need > free:
        raise InputError(source, f"{what} needs about {size_text(need)} but {size_text(free)} is free for this "
                                 "process (memory, ulimit and cgroup limits); crop or downsample the series first")
    return need


def check_memory(shape: Sequence[int], num_t: int, max_batch: int | None, device) -> int:
    """Raise :class:`InputError` when the estimate exceeds the free memory of ``device``; return the estimate."""
    need = estimate_bytes(shape, num_t, max_batch)
    free = available_bytes(device)
    logger.info("memory estimate %s, %s free on %s", size_text(need), size_text(free), device)
    if need > free:
        raise InputError(
            f"volume {tuple(shape)}",
            f"needs about {size_text(need)} on {device} but {size_text(free)} is free: lower the decoder batch "
            "(max_batch 1), use another device, or crop/downsample the series first",
        )
    return need
