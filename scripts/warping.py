"""Dense displacement fields: warping, scaling and squaring, resampling to another grid.

Conventions (shared by every network and loss of the bundle):

- a field is a tensor ``(B, 3, X, Y, Z)`` in **voxel units of its own grid**; channel ``k`` is the
  displacement (or velocity) along spatial axis ``k``;
- warping has MONAI ``Warp`` semantics: ``warped(x) = moving(x + ddf(x))``, bilinear interpolation,
  border padding;
- a stationary velocity field ``v`` is integrated to a displacement ``phi = exp(v)`` by scaling and
  squaring with MONAI ``DVF2DDF`` semantics (``phi = v / 2**n``, then ``n`` times
  ``phi = phi + phi(x + phi)``, bilinear, zero padding).

The functions reproduce MONAI ``Warp`` / ``DVF2DDF`` (to float rounding, checked by the tests) but keep
the field in ``grid_sample``'s normalised coordinates while integrating: MONAI rebuilds, permutes and
renormalises the sampling grid in every step, which on CPU costs more than the sampling itself.
All functions compute in float32 (safe under ``torch.autocast``) and return float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["warp", "integrate_velocity", "resize_field", "NUM_STEPS"]

NUM_STEPS = 7
"""Scaling-and-squaring steps (VoxelMorph, Dalca et al. 2019)."""


def _identity_grid(size: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(1, X, Y, Z, 3)`` identity in ``grid_sample`` coordinates (align_corners=True, last axis z, y, x)."""
    axes = [torch.linspace(-1.0, 1.0, int(s), device=device) for s in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)[None]


def _voxels_to_grid_units(size: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(1, 3, 1, 1, 1)`` factors from voxels along axis k to normalised units (a lone voxel maps to -1)."""
    factors = [2.0 / max(int(s) - 1, 1) for s in size]
    return torch.tensor(factors, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)


def _sample(moving: torch.Tensor, identity: torch.Tensor, field: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """``moving(x + field(x))`` with ``field`` ``(B, 3, ...)`` already in normalised units, axis order z, y, x."""
    grid = identity + field.permute(0, 2, 3, 4, 1)
    return F.grid_sample(moving, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def warp(image: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
    """Warp ``image`` by ``ddf``: ``out(x) = image(x + ddf(x))``, bilinear, border padding (MONAI ``Warp``).

    Args:
        image: ``(B, C, X, Y, Z)``, any intensity range.
        ddf: ``(B, 3, X, Y, Z)`` displacement in voxels (same spatial size as ``image``).

    Returns:
        ``(B, C, X, Y, Z)`` float32.
    """
    size = ddf.shape[2:]
    field = (ddf.float() * _voxels_to_grid_units(size, ddf.device)).flip(1)
    return _sample(image.float(), _identity_grid(size, ddf.device), field, "border")


def integrate_velocity(velocity: torch.Tensor, num_steps: int = NUM_STEPS) -> torch.Tensor:
    """Displacement ``exp(velocity)`` of a stationary velocity field by scaling and squaring.

    Same result as MONAI ``DVF2DDF(num_steps)`` (bilinear; zero displacement is sampled outside the
    grid). The inverse transform is approximately ``integrate_velocity(-velocity)``.

    Args:
        velocity: ``(B, 3, X, Y, Z)`` in voxels of its grid.
        num_steps: number of squaring steps.

    Returns:
        ``(B, 3, X, Y, Z)`` float32 displacement in voxels.
    """
    size = velocity.shape[2:]
    units = _voxels_to_grid_units(size, velocity.device)
    identity = _identity_grid(size, velocity.device)
    field = (velocity.float() * (units / 2**num_steps)).flip(1)  # normalised units, channels z, y, x
    for _ in range(num_steps):
        field = field + _sample(field, identity, field, "zeros")
    return field.flip(1) / units


def resize_field(field: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a displacement or velocity field to another grid of the same extent.

    Values are interpolated trilinearly with ``align_corners=False`` (voxel centres; a 2x down-sampled
    grid's voxel covers 2 voxels of the fine grid) and vector component ``k`` is multiplied by
    ``size[k] / X_k`` so the field stays in voxel units of the new grid.

    Args:
        field: ``(B, 3, X, Y, Z)`` in voxels of its grid.
        size: target spatial size ``(X', Y', Z')``.

    Returns:
        ``(B, 3, X', Y', Z')`` float32 in voxels of the new grid (the input itself when sizes match).
    """
    size = tuple(int(s) for s in size)
    if tuple(field.shape[2:]) == size:
        return field.float()
    ratio = [new / old for new, old in zip(size, field.shape[2:])]
    scale = torch.tensor(ratio, dtype=torch.float32, device=field.device).view(1, -1, 1, 1, 1)
    resized = F.interpolate(field.float(), size=size, mode="trilinear", align_corners=False)
    return resized * scale
