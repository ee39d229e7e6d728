"""Interpolation metrics as UVI-Net reports them, plus displacement metrics for phantoms.

Image metrics compare a synthesised volume ``pred`` with the true intermediate volume ``gt``, both with intensities
in [0, 1] (data range 1; nothing is clipped here, values outside [0, 1] are measured as they are). Tensors are
(B, 1, X, Y, Z); each function returns one value per batch item, shape (B,). A single (X, Y, Z) array or tensor is
accepted too and treated as B = 1.

Definitions, checked against UVI-Net's ``evaluation.py`` / ``losses.py`` (github.com/jungeun122333/UVI-Net):

- PSNR = 20 log10(1 / sqrt(MSE)), via MONAI ``PSNRMetric(max_val=1)`` (the same formula; inf when MSE = 0).
- NCC = mean over all voxels of the local squared NCC in a 9^3 box window, ``cross^2 / (var_p * var_g + 1e-5)``,
  window sums over the zero-padded volume ("same" size, window mean always divides by 9^3), as VoxelMorph's and
  UVI-Net's ``NCC`` (UVI-Net reports minus its loss). MONAI ``LocalNormalizedCrossCorrelationLoss`` uses the same
  zero-padded box sums but clamps each variance at ``smooth_dr`` (``cross^2 / (max(var_p, eps) * max(var_g, eps))``)
  instead of adding eps to the product, which turns low-contrast windows (near-flat background) into values near 1
  where UVI-Net's form gives ~0; the reported NCC (~0.56 on ACDC in the paper) depends on that, so the box sums come
  from MONAI's ``separable_filtering`` and the ratio is UVI-Net's.
- SSIM = mean over all voxels of the SSIM map with a 3D Gaussian window (11, sigma 1.5), K1 0.01, K2 0.03, data
  range 1, zero padding ("same" size, as UVI-Net's ``SSIM3D``). MONAI ``SSIMMetric`` filters without padding
  ("valid": borders dropped, and it cannot take a volume with fewer than 11 slices); padding both volumes with 5
  zeros and calling MONAI's ``compute_ssim_and_cs`` gives exactly the zero-padded map.
- NMSE = ||pred - gt||^2 / ||gt||^2 x 100 (percent), as UVI-Net prints it.

Displacement fields are (B, 3, X, Y, Z) in voxels, channel k along spatial axis k (MONAI ``Warp`` semantics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, PSNRMetric
from monai.metrics.regression import compute_ssim_and_cs
from monai.networks.layers import separable_filtering
from torch.nn import functional as F

from scripts.utils.errors import InputError
from scripts.utils.tensors import as_volume_batch

IMAGE_METRICS = ("psnr", "ncc", "ssim", "nmse")


NCC_WINDOW = 9


NCC_EPS = 1e-5


SSIM_WINDOW = 11


SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(pred, gt) -> tuple[torch.Tensor, torch.Tensor]:
    pred, gt = as_volume_batch(pred, "pred"), as_volume_batch(gt, "gt")
    if pred.shape != gt.shape:
        raise InputError("pred", f"shape {tuple(pred.shape)} differs from gt {tuple(gt.shape)}")
    return pred, gt


def psnr(pred, gt) -> torch.Tensor:
    """PSNR in dB for data range 1: 20 log10(1 / sqrt(mean((pred - gt)^2))); (B,)."""
    pred, gt = _pair(pred, gt)
    return PSNRMetric(max_val=1.0, reduction="none")(pred.double(), gt.double()).reshape(-1)


def nmse(pred, gt) -> torch.Tensor:
    """Normalised MSE in percent: 100 * sum((pred - gt)^2) / sum(gt^2); (B,)."""
    pred, gt = _pair(pred, gt)
    pred, gt = pred.double().flatten(1), gt.double().flatten(1)
    return 100.0 * ((pred - gt) ** 2).sum(1) / (gt**2).sum(1)


def local_ncc_map(pred, gt, window: int = NCC_WINDOW, eps: float = NCC_EPS) -> torch.Tensor:
    """Local squared NCC per voxel, (B, C, X, Y, Z), in [0, 1): cross^2 / (var_pred * var_gt + eps).

    Sums run over a ``window``^3 box centred on each voxel of the zero-padded volumes (so border windows count the
    padding as zeros), cross = sum((p - mean_p)(g - mean_g)), var = sum((. - mean)^2), means over ``window``^3.
    Computed in float64.
    """
    pred, gt = _pair(pred, gt)
    pred, gt = pred.double(), gt.double()
    box = torch.ones(window, dtype=torch.float64)
    n = float(window**3)
    p_sum, g_sum, pp_sum, gg_sum, pg_sum = (
        separable_filtering(v, [box] * 3) for v in (pred, gt, pred * pred, gt * gt, pred * gt)
    )
    cross = pg_sum - p_sum * g_sum / n
    p_var = pp_sum - p_sum * p_sum / n
    g_var = gg_sum - g_sum * g_sum / n
    return cross * cross / (p_var * g_var + eps)


def ncc(pred, gt) -> torch.Tensor:
    """Mean local squared NCC (window 9^3, eps 1e-5, see ``local_ncc_map``); (B,)."""
    return local_ncc_map(pred, gt).flatten(1).mean(1)


def ssim_map(pred, gt, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """SSIM per voxel, (B, C, X, Y, Z): Gaussian window ``window``^3 (``sigma`` voxels), K1 0.01, K2 0.03, data range 1.

    Local statistics are Gaussian-weighted over the zero-padded volumes (output has the input's size), as UVI-Net's
    ``SSIM3D``; MONAI's ``compute_ssim_and_cs`` is a "valid" filter, so the volumes are padded by window // 2 first.
    Computed in float32 (MONAI casts).
    """
    pred, gt = _pair(pred, gt)
    pad = [window // 2] * 6
    ssim_full, _ = compute_ssim_and_cs(
        F.pad(pred, pad),
        F.pad(gt, pad),
        spatial_dims=3,
        kernel_size=(window,) * 3,
        kernel_sigma=(sigma,) * 3,
        data_range=1.0,
        kernel_type="gaussian",
        k1=SSIM_K1,
        k2=SSIM_K2,
    )
    return ssim_full


def ssim(pred, gt) -> torch.Tensor:
    """Mean SSIM over all voxels (see ``ssim_map``); (B,)."""
    return ssim_map(pred, gt).flatten(1).mean(1)


def image_metrics(pred, gt) -> dict[str, float]:
    """PSNR (dB), NCC, SSIM and NMSE (%) of one synthesised volume against the truth.

    Args:
        pred, gt: (1, 1, X, Y, Z) tensors or (X, Y, Z) arrays, intensities in [0, 1].

    Returns:
        ``{"psnr", "ncc", "ssim", "nmse"}`` as Python floats.
    """
    pred, gt = _pair(pred, gt)
    if pred.shape[:2] != (1, 1):
        raise InputError("pred", f"image_metrics takes one single-channel volume, got shape {tuple(pred.shape)}")
    with torch.no_grad():
        return {name: float(fn(pred, gt)[0]) for name, fn in zip(IMAGE_METRICS, (psnr, ncc, ssim, nmse))}


def _field(ddf, name: str) -> torch.Tensor:
    ddf = torch.as_tensor(ddf)
    if ddf.ndim != 5 or ddf.shape[1] != 3:
        raise InputError(name, f"expected a displacement field (B, 3, X, Y, Z), got {tuple(ddf.shape)}")
    return ddf.double()


def endpoint_error(ddf, ddf_true, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Mean endpoint error between two displacement fields (B, 3, X, Y, Z) in voxels; (B,).

    The error is the Euclidean length of ``ddf - ddf_true`` at each voxel, averaged over voxels: in voxels, or in mm
    when ``spacing`` (3 voxel sizes in mm along X, Y, Z) is given.
    """
    ddf, ddf_true = _field(ddf, "ddf"), _field(ddf_true, "ddf_true")
    if ddf.shape != ddf_true.shape:
        raise InputError("ddf", f"shape {tuple(ddf.shape)} differs from ddf_true {tuple(ddf_true.shape)}")
    diff = ddf - ddf_true
    if spacing is not None:
        if len(spacing) != 3:
            raise InputError("spacing", f"expected 3 voxel sizes (mm), got {spacing}")
        diff = diff * torch.as_tensor(spacing, dtype=diff.dtype).reshape(1, 3, 1, 1, 1)
    return diff.norm(dim=1).flatten(1).mean(1)


def jacobian_determinant(ddf) -> torch.Tensor:
    """det(d(x + u(x))/dx) per voxel, (B, X, Y, Z), for a displacement field u = ``ddf`` (B, 3, X, Y, Z) in voxels.

    Derivatives are finite differences in voxel units (``torch.gradient``): central inside the volume, one-sided
    first order on the first and last voxel of each axis, so every voxel gets a value (each axis needs >= 2 voxels).
    """
    ddf = _field(ddf, "ddf")
    if min(ddf.shape[2:]) < 2:
        raise InputError("ddf", f"every spatial axis needs at least 2 voxels, got {tuple(ddf.shape[2:])}")
    # grads[j][:, i] = d u_i / d x_j
    grads = torch.gradient(ddf, dim=(2, 3, 4))
    jac = torch.stack(grads, dim=-1).movedim(1, -2)  # (B, X, Y, Z, i, j)
    return torch.linalg.det(jac + torch.eye(3, dtype=jac.dtype))


def folding_fraction(ddf) -> torch.Tensor:
    """Fraction of voxels where det(Jacobian of x + u(x)) <= 0 (see ``jacobian_determinant``); (B,)."""
    return (jacobian_determinant(ddf) <= 0).double().flatten(1).mean(1)


def summarise(
    rows: Iterable[Mapping[str, object]], metrics: Sequence[str] = IMAGE_METRICS
) -> dict[str, dict[str, float | int]]:
    """Average metric rows per method, each (subject, frame) weighing the same (UVI-Net's running mean).

    Args:
        rows: one mapping per (method, subject, frame) with keys ``method``, ``subject``, ``frame`` and a value for
            each name in ``metrics`` (numbers or numeric strings, as read back from a CSV).
        metrics: the metric names to summarise, e.g. ``IMAGE_METRICS + ("epe", "folding")`` on phantoms.

    Returns:
        ``{method: {name: mean, name + "_std": population std (as UVI-Net's np.std), ..., "n": rows}}``.

    Raises:
        InputError: a row lacks a key, or a (method, subject, frame) appears twice (it would weigh double).
    """
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    seen: set[tuple[str, str, str]] = set()
    for i, row in enumerate(rows):
        missing = [k for k in ("method", "subject", "frame", *metrics) if k not in row]
        if missing:
            raise InputError(f"metric row {i}", f"missing {', '.join(missing)}")
        key = (str(row["method"]), str(row["subject"]), str(row["frame"]))
        if key in seen:
            raise InputError(f"metric row {i}", f"method {key[0]}, subject {key[1]}, frame {key[2]} appears twice")
        seen.add(key)
        counts[key[0]] += 1
        for name in metrics:
            values[key[0]][name].append(float(row[name]))
    summary: dict[str, dict[str, float | int]] = {}
    for method, n in counts.items():
        out: dict[str, float | int] = {}
        for name in metrics:
            v = np.asarray(values[method][name], dtype=np.float64)
            out[name] = float(v.mean())
            out[f"{name}_std"] = float(v.std())
        out["n"] = n
        summary[method] = out
    return summary


class PaperSSIM(CumulativeIterationMetric):
    """:func:`ssim` as a MONAI cumulative metric, so ``IgniteMetricHandler`` can report it during validation.

    ``aggregate`` returns the mean over every (subject, frame) seen since the last ``reset``.
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return ssim(y_pred.float(), y.float())[:, None]

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        return data.mean()
