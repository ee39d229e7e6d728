"""Baselines for 4D interpolation (DESIGN section 7): linear image blend and linear scaling of a registration.

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

import tempfile
from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.blocks import DVF2DDF, Warp

from scripts.errors import InputError
from scripts.metrics import as_volume_batch

ELASTIX_PIN = "itk-elastix==0.25.4"


def _time_weight(t: float | Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a (B, 1, 1, 1, 1) tensor of ``like``'s dtype and device (a scalar is broadcast to every item)."""
    tt = torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1)
    if tt.numel() not in (1, like.shape[0]):
        raise InputError("t", f"expected a scalar or {like.shape[0]} values (one per batch item), got {tt.numel()}")
    if not bool(((tt >= 0) & (tt <= 1)).all()):
        raise InputError("t", f"values must lie in [0, 1], got {tt.tolist()}")
    return tt.expand(like.shape[0]).reshape(-1, 1, 1, 1, 1)


def _endpoints(i0, i1) -> tuple[torch.Tensor, torch.Tensor]:
    i0, i1 = as_volume_batch(i0, "i0"), as_volume_batch(i1, "i1")
    if i0.shape != i1.shape:
        raise InputError("i1", f"shape {tuple(i1.shape)} differs from i0 {tuple(i0.shape)}")
    return i0, i1


def blend(i0, i1, t) -> torch.Tensor:
    """Linear image blend (1 - t) I0 + t I1; (B, 1, X, Y, Z)."""
    i0, i1 = _endpoints(i0, i1)
    w = _time_weight(t, i0)
    return (1 - w) * i0 + w * i1


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
    i0, i1 = _endpoints(i0, i1)
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


def _itk_elastix():
    """Import ``itk`` with the elastix module, or explain how to install it."""
    try:
        import itk

        itk.ElastixRegistrationMethod  # noqa: B018 (the lazy attribute loads the module or fails)
    except (ImportError, AttributeError) as err:
        raise ImportError(
            f"the elastix baseline needs itk-elastix, an optional extra: pip install {ELASTIX_PIN}"
        ) from err
    return itk


def elastix_ddf(
    fixed: np.ndarray,
    moving: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    grid_spacing_mm: float = 10.0,
    num_resolutions: int = 3,
    iterations: int = 250,
    metric: str = "AdvancedMattesMutualInformation",
    seed: int = 0,
) -> np.ndarray:
    """B-spline registration of ``moving`` onto ``fixed`` with elastix; returns ddf (3, X, Y, Z) in voxels.

    The result follows ``Warp`` semantics: moving(x + ddf(x)) ~ fixed(x), on fixed's grid.

    Elastix runs on the voxel grid with origin 0, identity direction and ``spacing`` (mm along X, Y, Z), so a
    point's physical coordinate is index * spacing and no patient orientation (LPS/RAS) enters. ITK reads numpy
    arrays in reversed axis order, so the (X, Y, Z) arrays go in transposed to (Z, Y, X) and ITK's index (i, j, k) is
    our (x, y, z). Transformix returns T(p) - p in mm, components in ITK axis order (= our axes), as a (Z, Y, X, 3)
    array: it is transposed to (3, X, Y, Z) and each component divided by its ``spacing``.

    Args:
        fixed, moving: (X, Y, Z) arrays, intensities in [0, 1].
        spacing: voxel size in mm along X, Y, Z (sets the B-spline grid in mm and the mm -> voxel conversion).
        grid_spacing_mm: final B-spline control-point spacing in mm.
        num_resolutions: smoothing pyramid levels (grid spacing schedule is elastix's default for that count).
        iterations: adaptive stochastic gradient descent iterations per level.
        metric: elastix similarity metric (no bending-energy penalty is added). Mattes mutual information aligned
            real ACDC frames better than ``AdvancedMeanSquares`` or ``AdvancedNormalizedCorrelation`` here, but can
            misalign volumes without texture.
        seed: elastix ``RandomSeed`` of its random coordinate sampler.
    """
    itk = _itk_elastix()
    fixed, moving = np.asarray(fixed, dtype=np.float32), np.asarray(moving, dtype=np.float32)
    if fixed.ndim != 3 or fixed.shape != moving.shape:
        raise InputError("moving", f"expected two (X, Y, Z) volumes of one shape, got {fixed.shape}, {moving.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError("spacing", f"expected 3 positive voxel sizes (mm), got {spacing}")

    def to_itk(a: np.ndarray):
        image = itk.image_from_array(np.ascontiguousarray(a.transpose(2, 1, 0)))  # copies; ITK index = (x, y, z)
        image.SetSpacing(spacing)
        return image

    fixed_image, moving_image = to_itk(fixed), to_itk(moving)
    parameters = itk.ParameterObject.New()
    parameter_map = parameters.GetDefaultParameterMap("bspline", num_resolutions, grid_spacing_mm)
    parameter_map["Metric"] = [metric]
    parameter_map["MaximumNumberOfIterations"] = [str(iterations)]
    parameter_map["RandomSeed"] = [str(seed)]
    parameter_map["WriteResultImage"] = ["false"]
    parameters.AddParameterMap(parameter_map)
    # number_of_threads= crashed (segfault) in itk-elastix 0.25.4 here; elastix uses every core by default.
    _, transform = itk.elastix_registration_method(
        fixed_image, moving_image, parameter_object=parameters, log_to_console=False
    )
    with tempfile.TemporaryDirectory() as scratch:  # transformix also writes deformationField.nii to its folder
        field = itk.transformix_deformation_field(moving_image, transform, output_directory=scratch)
        field = itk.array_from_image(field)  # (Z, Y, X, 3) mm
    return field.transpose(3, 2, 1, 0).astype(np.float32) / np.asarray(spacing, np.float32).reshape(3, 1, 1, 1)


def elastix_fields(i0, i1, spacing: Sequence[float] = (1.0, 1.0, 1.0), **elastix_args) -> tuple[torch.Tensor, ...]:
    """``(ddf_01, ddf_10)``, each (B, 3, X, Y, Z) in voxels, by two elastix registrations per batch item.

    Register once per pair and reuse the fields for every t with ``linear_scaling``. ``elastix_args`` go to
    ``elastix_ddf``.
    """
    i0, i1 = _endpoints(i0, i1)
    a0, a1 = i0[:, 0].detach().cpu().numpy(), i1[:, 0].detach().cpu().numpy()
    ddf_01 = [elastix_ddf(fixed=f, moving=m, spacing=spacing, **elastix_args) for f, m in zip(a1, a0)]
    ddf_10 = [elastix_ddf(fixed=f, moving=m, spacing=spacing, **elastix_args) for f, m in zip(a0, a1)]
    return tuple(torch.as_tensor(np.stack(d)).to(i0) for d in (ddf_01, ddf_10))


def elastix_linear(i0, i1, t, spacing: Sequence[float] = (1.0, 1.0, 1.0), **elastix_args) -> torch.Tensor:
    """Linear scaling of an elastix B-spline registration (optional extra ``itk-elastix``); (B, 1, X, Y, Z)."""
    return linear_scaling(i0, i1, *elastix_fields(i0, i1, spacing=spacing, **elastix_args), t)


__all__ = ["blend", "elastix_ddf", "elastix_fields", "elastix_linear", "linear_scaling"]
