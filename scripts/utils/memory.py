"""Estimate the memory a series interpolation needs before running it, and refuse with advice when it will not fit."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)

# Peak bytes per voxel of the padded grid: a fixed part (endpoint features, I/O) and a part per t in the decoder batch.
# Measured at 128x128x32 on CPU (float32, default widths, scripts.evaluation.bench.peak_memory): 1065 B/voxel with one t per
# pass, 2590 with four, i.e. ~557 fixed + ~508 per t; rounded up here.
BYTES_PER_VOXEL_FIXED = 600
BYTES_PER_VOXEL_PER_T = 550


def estimate_bytes(shape: Sequence[int], num_t: int, max_batch: int | None) -> int:
    """Peak memory (bytes) of ``Student.interpolate_series`` on a volume of ``shape`` with ``num_t`` time points,
    ``max_batch`` of them per decoder pass (None: all, the upper bound)."""
    voxels = 1
    for s in shape:
        voxels *= -(-int(s) // 8) * 8
    per_pass = num_t if max_batch is None else min(num_t, max_batch)
    return voxels * (BYTES_PER_VOXEL_FIXED + BYTES_PER_VOXEL_PER_T * per_pass)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA from the driver, CPU from ``/proc/meminfo`` (MemAvailable)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(shape: Sequence[int], num_t: int, max_batch: int | None, device: torch.device) -> int:
    """Raise :class:`InputError` when the estimate exceeds the free memory of ``device``; return the estimate."""
    need = estimate_bytes(shape, num_t, max_batch)
    free = available_bytes(device)
    logger.info("memory estimate %s, %s free on %s", _size(need), _size(free), device)
    if need > free:
        raise InputError(
            f"volume {tuple(shape)}",
            f"needs about {_size(need)} on {device} but {_size(free)} is free: lower the decoder batch "
            "(max_batch 1), use another device, or crop/downsample the series first",
        )
    return need
