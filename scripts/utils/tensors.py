"""Tensor helpers shared across layers: volume batches and the linear blend."""

from __future__ import annotations

import numpy as np
import torch

from scripts.utils.errors import InputError


def as_volume_batch(x: torch.Tensor | np.ndarray, name: str = "volume") -> torch.Tensor:
    """Return ``x`` as a float tensor (B, C, X, Y, Z); an (X, Y, Z) array or tensor becomes (1, 1, X, Y, Z)."""
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x[None, None]
    if x.ndim != 5:
        raise InputError(name, f"expected shape (B, C, X, Y, Z) or (X, Y, Z), got {tuple(x.shape)}")
    return x if x.is_floating_point() else x.float()


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The linear blend ``(1 - t) * a + t * b`` of two ``(B, C, X, Y, Z)`` tensors, ``t`` of ``(B,)`` (or one value
    for every item) broadcast over the rest; every blend of two volumes in the bundle is this one."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1, 1, 1, 1, 1)
    return (1 - t) * a + t * b
