"""Classical registration baseline: an elastix B-spline registration (optional extra ``itk-elastix``), scaled linearly."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import numpy as np
import torch

from scripts.baselines.linear import endpoint_batch, linear_scaling
from scripts.utils.errors import InputError

ELASTIX_PIN = "itk-elastix==0.25.4"


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
    i0, i1 = endpoint_batch(i0, i1)
    a0, a1 = i0[:, 0].detach().cpu().numpy(), i1[:, 0].detach().cpu().numpy()
    ddf_01 = [elastix_ddf(fixed=f, moving=m, spacing=spacing, **elastix_args) for f, m in zip(a1, a0)]
    ddf_10 = [elastix_ddf(fixed=f, moving=m, spacing=spacing, **elastix_args) for f, m in zip(a0, a1)]
    return tuple(torch.as_tensor(np.stack(d)).to(i0) for d in (ddf_01, ddf_10))


def elastix_linear(i0, i1, t, spacing: Sequence[float] = (1.0, 1.0, 1.0), **elastix_args) -> torch.Tensor:
    """Linear scaling of an elastix B-spline registration (optional extra ``itk-elastix``); (B, 1, X, Y, Z)."""
    return linear_scaling(i0, i1, *elastix_fields(i0, i1, spacing=spacing, **elastix_args), t)
