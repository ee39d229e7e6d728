"""Linear baselines for 4D interpolation: linear image blend and linear scaling of a registration's fields (the elastix and VoxelMorph baselines scale theirs here).

Every function takes the endpoint volumes ``i0`` (t = 0) and ``i1`` (t = 1) as (B, 1, X, Y, Z) tensors with
intensities in [0, 1] and ``t`` as a float or a (B,) tensor in [0, 1], and returns I_t as (B, 1, X, Y, Z).

Field convention (MONAI ``Warp``: warped(x) = moving(x + ddf(x)), ddf (B, 3, X, Y, Z) in voxels, channel k along
spatial axis k):

- ``ddf_01`` carries I0 onto I1: ``Warp()(i0, ddf_01) ~ i1``, i.e. I1(x) ~ I0(x + ddf_01(x)); it lives on I1's
  grid. This is what a registration with fixed = I1, moving = I0 returns (VoxelMorph's ``flow_0_1``, elastix with
  fixed I1), and what MONAI ``VoxelMorph(...)(moving=i0, fixed=i1)`` returns as its second output.
- ``ddf_10`` carries I1 onto I0: ``Warp()(i1, ddf_10) ~ i0``.

Linear scaling (the VM / elastix rows of the paper, as UVI-Net's evaluation does it):
``I_t = (1 - t) Warp(I0, t ddf_01) + t Warp(I1, (1 - t) ddf_10)``. For a pure translation I1(x) = I0(x + s) this is
exact: both terms equal I0(x + t s). In the velocity variant the fields are stationary velocities v (ddf = exp(v),
MONAI ``DVF2DDF`` scaling and squaring), and the scaled displacement is exp(t v) instead of t exp(v).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import DVF2DDF, Warp

from scripts.utils.errors import InputError
from scripts.utils.tensors import as_volume_batch, lerp


def _time_weight(t: float | Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a (B, 1, 1, 1, 1) tensor of ``like``'s dtype and device (a scalar is broadcast to every item)."""
    tt = torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1)
    if tt.numel() not in (1, like.shape[0]):
        raise InputError("t", f"expected a scalar or {like.shape[0]} values (one per batch item), got {tt.numel()}")
    if not bool(((tt >= 0) & (tt <= 1)).all()):
        raise InputError("t", f"values must lie in [0, 1], got {tt.tolist()}")
    return tt.expand(like.shape[0]).reshape(-1, 1, 1, 1, 1)


def endpoint_batch(i0, i1) -> tuple[torch.Tensor, torch.Tensor]:
    i0, i1 = as_volume_batch(i0, "i0"), as_volume_batch(i1, "i1")
    if i0.shape != i1.shape:
        raise InputError("i1", f"shape {tuple(i1.shape)} differs from i0 {tuple(i0.shape)}")
    return i0, i1


def blend(i0, i1, t) -> torch.Tensor:
    """Linear image blend (1 - t) I0 + t I1; (B, 1, X, Y, Z)."""
    i0, i1 = endpoint_batch(i0, i1)
    return lerp(i0, i1, _time_weight(t, i0))


def linear_scaling(
    i0, i1, field_01: torch.Tensor, field_10: torch.Tensor, t, velocity: bool = False, num_steps: int = 7
) -> torch.Tensor:
    """Synthesise I_t by scaling the endpoint registration linearly in t (see the module docstring).

    Args:
        i0, i1: endpoint volumes (B, 1, X, Y, Z) in [0, 1].
        field_01, field_10: (B, 3, X, Y, Z) in voxels; displacements ``ddf_01`` / ``ddf_10`` (I0 onto I1 / I1 onto
            I0), or, with ``velocity=True``, the stationary velocity fields whose exponentials they are.
        t: float or (B,) in [0, 1].
        velocity: integrate t * v and (1 - t) * v with scaling and squaring (MONAI ``DVF2DDF``, ``num_steps``
            steps, bilinear, zero padding as in MONAI ``VoxelMorph``) instead of scaling the displacement.

    Returns:
        (1 - t) Warp(I0, phi_0t) + t Warp(I1, phi_1t), (B, 1, X, Y, Z); ``Warp`` is bilinear with border padding.
    """
    i0, i1 = endpoint_batch(i0, i1)
    expected = (i0.shape[0], 3, *i0.shape[2:])
    for name, field in (("field_01", field_01), ("field_10", field_10)):
        if tuple(field.shape) != expected:
            raise InputError(name, f"expected shape {expected}, got {tuple(field.shape)}")
    w = _time_weight(t, i0)
    phi_0t, phi_1t = w * field_01.to(i0), (1 - w) * field_10.to(i0)
    if velocity:
        integrate = DVF2DDF(num_steps=num_steps, mode="bilinear", padding_mode="zeros")
        phi_0t, phi_1t = integrate(phi_0t), integrate(phi_1t)
    warp = Warp(mode="bilinear", padding_mode="border")
    return (1 - w) * warp(i0, phi_0t) + w * warp(i1, phi_1t)
