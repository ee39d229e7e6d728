"""Tensor shape helpers shared across layers."""

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
