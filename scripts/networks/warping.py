"""Dense displacement fields: warping, scaling and squaring, resampling to another grid.

Conventions (shared by every network and loss of the bundle):

- a field is a tensor ``(B, 3, X, Y, Z)`` in **voxel units of its own grid**; channel ``k`` is the
  displacement (or velocity) along spatial axis ``k``;
- warping has MONAI ``Warp`` semantics: ``warped(x) = moving(x + ddf(x))``, bilinear interpolation,
  border padding (:func:`warp`); :func:`warp_cubic` samples images with cubic convolution in plane instead;
- a stationary velocity field ``v`` is integrated to a displacement ``phi = exp(v)`` by scaling and
  squaring with MONAI ``DVF2DDF`` semantics (``phi = v / 2**n``, then ``n`` times
  ``phi = phi + phi(x + phi)``, bilinear, zero padding).

The functions reproduce MONAI ``Warp`` / ``DVF2DDF`` (to float rounding, checked by the tests) but keep
the field in ``grid_sample``'s normalised coordinates while integrating: MONAI rebuilds, permutes and
renormalises the sampling grid in every step, which on CPU costs more than the sampling itself.
All functions compute in at least float32 (half and bfloat16 inputs are promoted, so they are safe
under ``torch.autocast``; float64 stays float64) and return that dtype.
"""

import torch
from torch.nn import functional as F

__all__ = ["warp", "warp_cubic", "integrate_velocity", "resize_field", "at_least_float32", "NUM_STEPS"]

NUM_STEPS = 7
"""Scaling-and-squaring steps (VoxelMorph, Dalca et al. 2019)."""


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 if it is half, bfloat16 or float32; float64 unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _identity_grid(like: torch.Tensor) -> torch.Tensor:
    """``(1, X, Y, Z, 3)`` identity of ``like``'s grid in ``grid_sample`` units (align_corners=True, axes z, y, x)."""
    axes = [torch.linspace(-1.0, 1.0, int(s), dtype=like.dtype, device=like.device) for s in like.shape[2:]]
    return torch.stack(torch.meshgrid(axes, indexing="ij")[::-1], dim=-1)[None]


def _voxels_to_grid_units(like: torch.Tensor) -> torch.Tensor:
    """``(1, 3, 1, 1, 1)`` factors from voxels along axis k to normalised units (a lone voxel maps to -1)."""
    factors = [2.0 / max(int(s) - 1, 1) for s in like.shape[2:]]
    return torch.tensor(factors, dtype=like.dtype, device=like.device).view(1, 3, 1, 1, 1)


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
        ``(B, C, X, Y, Z)`` in at least float32.
    """
    ddf = at_least_float32(ddf)
    field = (ddf * _voxels_to_grid_units(ddf)).flip(1)
    return _sample(image.to(ddf.dtype), _identity_grid(ddf), field, "border")


CUBIC_A = -0.5
"""Keys' cubic convolution parameter: -0.5 interpolates quadratics exactly (Keys 1981, IEEE TASSP 29(6))."""


def _cubic_weights(u: torch.Tensor, a: float = CUBIC_A) -> list[torch.Tensor]:
    """Keys' cubic convolution weights of the 4 samples at offsets -1, 0, 1, 2 from ``floor(x)``, ``u = x - floor(x)``."""
    weights: list[torch.Tensor] = []
    for offset in (-1.0, 0.0, 1.0, 2.0):
        d = (u - offset).abs()
        near = ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2
        weights.append(torch.where(d <= 1, near, far))
    return weights


def warp_cubic(image: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
    """Warp ``image`` by ``ddf`` like :func:`warp`, sampling with cubic convolution in plane (axes 0 and 1, 4 x 4
    samples, Keys a = -0.5) and linearly through plane (axis 2), border padding.

    A bilinear warp by a sub-voxel displacement averages neighbours: a half-voxel shift is a [1/2, 1/2] filter, which
    blurs a sharp image as much as a Gaussian of sigma 0.5 voxel. Cubic convolution keeps the detail (it interpolates
    quadratics exactly) and may overshoot at edges by a few percent of the step. Slices of cine MRI and 4D CT are
    thick and often not contiguous, so through plane a linear blend of the two nearest slices is kept.

    Args:
        image: ``(B, C, X, Y, Z)``, any intensity range.
        ddf: ``(B, 3, X, Y, Z)`` displacement in voxels (same spatial size as ``image``).

    Returns:
        ``(B, C, X, Y, Z)`` in at least float32; exactly ``image`` where ``ddf`` is a whole number of voxels that stays
        inside the grid.
    """
    ddf = at_least_float32(ddf)
    batch, channels = image.shape[0], image.shape[1]
    size = [int(s) for s in image.shape[2:]]
    axes = [torch.arange(s, dtype=ddf.dtype, device=ddf.device) for s in size]
    grid = torch.meshgrid(axes, indexing="ij")
    position = [grid[k][None] + ddf[:, k] for k in range(3)]  # (B, X, Y, Z) in voxels
    floor = [p.floor() for p in position]
    fraction = [p - f for p, f in zip(position, floor)]
    wx, wy = _cubic_weights(fraction[0]), _cubic_weights(fraction[1])
    wz = [1 - fraction[2], fraction[2]]
    ix = [(floor[0] + o).clamp(0, size[0] - 1).long() for o in (-1, 0, 1, 2)]
    iy = [(floor[1] + o).clamp(0, size[1] - 1).long() for o in (-1, 0, 1, 2)]
    iz = [(floor[2] + o).clamp(0, size[2] - 1).long() for o in (0, 1)]
    flat = image.to(ddf.dtype).reshape(batch, channels, -1)
    out = torch.zeros_like(flat)
    for a in range(4):
        for b in range(4):
            row = (ix[a] * size[1] + iy[b]) * size[2]
            wab = wx[a] * wy[b]
            for c in range(2):
                index = (row + iz[c]).reshape(batch, 1, -1).expand(batch, channels, -1)
                out = out + (wab * wz[c]).reshape(batch, 1, -1) * flat.gather(2, index)
    return out.reshape(batch, channels, size[0], size[1], size[2])


def integrate_velocity(velocity: torch.Tensor, num_steps: int = NUM_STEPS) -> torch.Tensor:
    """Displacement ``exp(velocity)`` of a stationary velocity field by scaling and squaring.

    Same result as MONAI ``DVF2DDF(num_steps)`` (bilinear; zero displacement is sampled outside the
    grid). The inverse transform is approximately ``integrate_velocity(-velocity)``.

    Args:
        velocity: ``(B, 3, X, Y, Z)`` in voxels of its grid.
        num_steps: number of squaring steps.

    Returns:
        ``(B, 3, X, Y, Z)`` displacement in voxels, at least float32.
    """
    velocity = at_least_float32(velocity)
    units = _voxels_to_grid_units(velocity)
    identity = _identity_grid(velocity)
    field = (velocity * (units / 2**num_steps)).flip(1)  # normalised units, channels z, y, x
    for _ in range(num_steps):
        field = field + _sample(field, identity, field, "zeros")
    return field.flip(1) / units


def resize_field(field: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Resample a displacement or velocity field to another grid of the same extent.

    Values are interpolated trilinearly with ``align_corners=False`` (voxel centres; a 2x down-sampled
    grid's voxel covers 2 voxels of the fine grid) and vector component ``k`` is multiplied by
    ``size[k] / X_k`` so the field stays in voxel units of the new grid.

    Args:
        field: ``(B, 3, X, Y, Z)`` in voxels of its grid.
        size: target spatial size ``(X', Y', Z')`` (any sequence of ints in Python; a list when scripted).

    Returns:
        ``(B, 3, X', Y', Z')`` in voxels of the new grid, at least float32 (the input itself when sizes
        match).
    """
    field = at_least_float32(field)
    size = [int(s) for s in size]
    if list(field.shape[2:]) == size:
        return field
    ratio = [float(new) / float(old) for new, old in zip(size, field.shape[2:])]
    scale = torch.tensor(ratio, dtype=field.dtype, device=field.device).view(1, -1, 1, 1, 1)
    return F.interpolate(field, size=size, mode="trilinear", align_corners=False) * scale
