"""Full field of view: interpolate where the motion is, keep the blend of the static surroundings.

A full field-of-view cine (256 x 256 in plane, 10-28 slices) is mostly static body around a moving heart. There the
blend of the endpoints is exact, and a network trained on heart-cropped volumes gains nothing (instance-norm
statistics dominated by background, other in-plane spacing). The functions here:

1. :func:`motion_map` / :func:`endpoint_motion`: where the series moves, from the acquired frames (temporal standard
   deviation) or from the endpoints alone (absolute difference), ``(X, Y, Z)``;
2. :func:`find_roi`: the in-plane box around the moving region (threshold relative to the map's high percentile,
   smoothed first so single noisy voxels do not count), a margin around it, at least ``min_size`` voxels and a
   multiple of ``multiple`` voxels in plane, clipped to the image; every slice kept (motion through the stack is
   the network's business); plus the in-plane zoom to a training spacing when the series' spacing differs from it by
   more than ``tolerance`` (a factor); with ``component_share``, only the connected pieces of the moving region that
   hold a good share of the motion count (the heart's, not the scattered flicker of flow and banding artefacts
   across a real cine's field of view);
3. :func:`crop` the endpoints (or any volume) to the box and resample them in plane by the zoom, for the network;
4. :func:`paste` the network's result back: resampled to the box's size and blended into the full-size blend of the
   endpoints with a weight that is 1 inside, falls smoothly (cosine) to 0 over ``feather`` voxels at the box's inner
   edges, and is 0 outside, so the output equals the blend everywhere outside the box and has no seam;
5. :func:`still_weight`: inside the box, voxel by voxel, how much of the network's change to the blend to keep:
   where the two acquired frames around a synthesised one hardly differ, the blend is (nearly) exact and the
   network's change is mostly error.

Volumes are ``(X, Y, Z)`` arrays (numpy or torch, float), axes 0 and 1 in plane; spacing in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from scripts.utils.errors import InputError

__all__ = ["MotionROI", "connected_components", "crop", "endpoint_motion", "find_roi", "main_motion", "motion_map",
           "paste", "seam_weight", "still_weight"]


@dataclass(frozen=True)
class MotionROI:
    """The moving region of a series.

    Attributes:
        box: ``(x0, x1, y0, y1)`` in-plane voxel bounds, half open; every slice is kept.
        zoom: in-plane factors ``(zx, zy)``: the cropped volume is resampled to ``round(size * zoom)`` voxels
            (``(1.0, 1.0)``: no resampling).
        shape: the full volume's ``(X, Y, Z)``.
    """

    box: tuple[int, int, int, int]
    zoom: tuple[float, float]
    shape: tuple[int, int, int]

    @property
    def size(self) -> tuple[int, int]:
        """In-plane size of the box in the series' voxels."""
        return self.box[1] - self.box[0], self.box[3] - self.box[2]

    @property
    def network_size(self) -> tuple[int, int, int]:
        """``(X', Y', Z)`` of the cropped, resampled volume the network sees."""
        return (max(1, round(self.size[0] * self.zoom[0])), max(1, round(self.size[1] * self.zoom[1])),
                self.shape[2])


def _as_numpy(volume) -> np.ndarray:
    return volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)


def motion_map(frames: Sequence | np.ndarray) -> np.ndarray:
    """Temporal standard deviation of the acquired frames, ``(X, Y, Z)``; ``frames`` ``(T, X, Y, Z)``, ``T >= 2``."""
    stack = np.stack([_as_numpy(f) for f in frames]).astype(np.float32)
    if stack.ndim != 4 or stack.shape[0] < 2:
        raise InputError("frames", f"expected at least 2 volumes (X, Y, Z), got shape {stack.shape}")
    return stack.std(axis=0)


def endpoint_motion(i0, i1) -> np.ndarray:
    """``|I1 - I0|``, ``(X, Y, Z)``: where the series moves when only the endpoints are known."""
    return np.abs(_as_numpy(i1).astype(np.float32) - _as_numpy(i0).astype(np.float32))


def _plane_mean(volume: torch.Tensor, width: int) -> torch.Tensor:
    """``(X, Y, Z)`` -> the same shape: each voxel's mean over a ``width`` x ``width`` in-plane window (the window
    shrinks at the image's edges)."""
    planes = volume.permute(2, 0, 1)[:, None]  # (Z, 1, X, Y)
    mean = F.avg_pool2d(planes, width, stride=1, padding=width // 2, count_include_pad=False)
    return mean[:, 0, : volume.shape[0], : volume.shape[1]].permute(1, 2, 0)


def _span(low: int, high: int, size: int, limit: int, multiple: int) -> tuple[int, int]:
    """Grow ``[low, high)`` symmetrically to at least ``size`` and a multiple of ``multiple``, inside ``[0, limit)``."""
    want = min(limit, max(high - low, size))
    want = min(limit, -(-want // multiple) * multiple) if want < limit else limit
    centre = (low + high) / 2
    start = round(centre - want / 2)
    start = min(max(start, 0), limit - want)
    return int(start), int(start + want)


def find_roi(
    motion: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    training_spacing: Sequence[float] | None = None,
    threshold: float = 0.2,
    percentile: float = 99.5,
    margin_mm: float = 15.0,
    min_size: int = 32,
    multiple: int = 8,
    smooth: int = 5,
    tolerance: float = 1.25,
    coverage: float = 1.0,
    component_share: float = 0.0,
    component_min_box: int = 0,
) -> MotionROI:
    """The in-plane box around the moving region of ``motion`` (module docstring).

    Args:
        motion: ``(X, Y, Z)`` motion map (:func:`motion_map`, :func:`endpoint_motion`).
        spacing: the series' voxel size in mm.
        training_spacing: the in-plane voxel size (mm) the network was trained at; None never resamples.
        threshold: a voxel moves when its smoothed motion exceeds this fraction of the map's ``percentile``.
        margin_mm: added around the moving voxels on each side.
        min_size: smallest box side in voxels of the network's grid (after the zoom).
        multiple: box sides in the network's grid are rounded up to a multiple of this (the network pads to 8).
        smooth: in-plane box-filter width (voxels) applied to the slice-maximum of the map first.
        tolerance: resample only when the spacing differs from ``training_spacing`` by more than this factor.
        coverage: the box (before the margin) holds this share of the moving voxels' motion along each in-plane axis,
            cutting equal shares off both ends; 1 holds every moving voxel. Below 1, faint motion far from the
            heart (flow and banding artefacts of real cines, whose temporal variance reaches across the field of
            view) no longer stretches the box to the whole plane.
        component_share: only the 8-connected pieces of the moving region (in plane, after smoothing) whose summed
            motion is at least this share of the largest piece's count (:func:`main_motion`); 0 keeps every moving
            voxel. The heart is one connected piece; the flicker of real cines' artefacts is many small ones.
        component_min_box: ``component_share`` applies only where the box drawn without it (every moving voxel at
            ``coverage`` 1; margin included, voxels of the network's grid) is larger than this on some side. A box
            that small is cheap, and on a heart-cropped series its small pieces are the heart's own motion at the
            crop's edge.

    Returns:
        a :class:`MotionROI`; the whole plane when nothing moves above the threshold (the box cannot be placed).

    Raises:
        InputError: naming ``motion`` when it is not a finite ``(X, Y, Z)`` map, ``coverage`` when not in (0, 1],
            ``component_share`` when not in [0, 1], ``component_min_box`` when negative.
    """
    if not 0.0 < float(coverage) <= 1.0:
        raise InputError("coverage", f"expected a share of the motion in (0, 1], got {coverage!r}")
    if not 0.0 <= float(component_share) <= 1.0:
        raise InputError("component_share", f"expected a share of the largest piece's motion in [0, 1], got "
                         f"{component_share!r}")
    if int(component_min_box) < 0:
        raise InputError("component_min_box", f"expected a box side in voxels >= 0, got {component_min_box!r}")
    motion = _as_numpy(motion)
    if motion.ndim != 3:
        raise InputError("motion", f"expected an (X, Y, Z) map, got shape {motion.shape}")
    if not np.isfinite(motion).all():
        raise InputError("motion", "holds NaN or infinite values")
    shape = tuple(int(s) for s in motion.shape)
    zoom = (1.0, 1.0)
    if training_spacing is not None:
        ratios = [float(spacing[k]) / float(training_spacing[k]) for k in range(2)]
        if any(max(r, 1 / r) > tolerance for r in ratios):
            zoom = (ratios[0], ratios[1])
    slice_max = torch.from_numpy(np.ascontiguousarray(motion.max(axis=2)[..., None], dtype=np.float32))
    plane = _plane_mean(slice_max, max(1, smooth))[..., 0].numpy()
    level = np.percentile(plane, percentile)
    moving = plane > threshold * level if level > 0 else np.zeros_like(plane, dtype=bool)
    if not moving.any():
        return MotionROI((0, shape[0], 0, shape[1]), zoom, shape)

    def box(region: np.ndarray) -> MotionROI:
        bounds = []
        for axis, (low, high) in enumerate(_extent(np.where(region, plane, 0.0), coverage)):
            margin = int(np.ceil(margin_mm / float(spacing[axis])))
            # sizes in the network's grid -> in the series' voxels
            size = int(np.ceil(min_size / zoom[axis]))
            step = max(1, round(multiple / zoom[axis]))
            bounds.append(_span(max(0, low - margin), min(shape[axis], high + margin), size, shape[axis], step))
        return MotionROI((*bounds[0], *bounds[1]), zoom, shape)

    roi = box(moving)
    if component_share > 0 and max(roi.network_size[:2]) > component_min_box:
        roi = box(main_motion(moving, plane, component_share))
    return roi


def connected_components(mask: np.ndarray) -> np.ndarray:
    """8-connected pieces of a boolean ``(X, Y)`` mask: ``(X, Y)`` int64 labels, 0 outside the mask, each piece
    labelled by one of its own voxels' flat index + 1.

    Every voxel starts with its own label; each round it takes the largest label among its neighbours and then the
    label its label points to (a voxel of the same piece holding at least as large a label), so chains shorten
    exponentially rather than one voxel per round.
    """
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    flat_index = torch.arange(1, mask_t.numel() + 1, dtype=torch.float64).view(mask_t.shape)
    labels = torch.where(mask_t, flat_index, torch.zeros((), dtype=torch.float64))
    while True:
        grown = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * mask_t
        pointed = grown.flatten()[(grown.flatten() - 1).clamp(min=0).long()].view(grown.shape)
        grown = torch.where(mask_t, torch.maximum(grown, pointed), grown)
        if torch.equal(grown, labels):
            return labels.long().numpy()
        labels = grown


def main_motion(moving: np.ndarray, weights: np.ndarray, share: float) -> np.ndarray:
    """The pieces of ``moving`` (boolean ``(X, Y)``, some True) that hold at least ``share`` of the motion of the
    largest piece (the sum of ``weights`` ``(X, Y)`` over each of its :func:`connected_components`), as a boolean
    ``(X, Y)``; the largest piece is always kept."""
    labels = connected_components(moving)
    ids, inverse = np.unique(labels, return_inverse=True)
    mass = np.bincount(inverse.ravel(), weights=np.where(moving, weights, 0.0).ravel())  # the background's is 0
    keep = mass >= share * mass.max()
    keep[ids == 0] = False
    return keep[inverse].reshape(moving.shape)


def _extent(weights: np.ndarray, coverage: float) -> list[tuple[int, int]]:
    """Per in-plane axis, the half-open index range holding ``coverage`` of ``weights`` ``(X, Y)`` (>= 0, some > 0):
    every nonzero index at 1, else the central share (equal tails cut off both ends)."""
    out = []
    for axis in (0, 1):
        profile = weights.sum(axis=1 - axis)
        nonzero = np.flatnonzero(profile)
        if coverage >= 1.0:
            out.append((int(nonzero[0]), int(nonzero[-1]) + 1))
            continue
        cdf = np.cumsum(profile) / profile.sum()
        tail = (1.0 - coverage) / 2
        low = int(np.searchsorted(cdf, tail, side="right"))
        high = int(np.searchsorted(cdf, 1.0 - tail, side="left")) + 1
        out.append((low, min(max(high, low + 1), len(profile))))
    return out


def _resize(volume: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(X, Y, Z)`` -> ``(size[0], size[1], Z)``, bicubic in plane (identity when the size is unchanged; may overshoot
    at edges by a few percent of the step, the output is clipped to [0, 1] after the paste)."""
    if tuple(volume.shape[:2]) == tuple(size):
        return volume
    planes = volume.permute(2, 0, 1)[:, None]  # (Z, 1, X, Y)
    return F.interpolate(planes, size=tuple(size), mode="bicubic", align_corners=False)[:, 0].permute(1, 2, 0)


def crop(volume, roi: MotionROI) -> torch.Tensor:
    """The box of ``volume`` ``(X, Y, Z)`` resampled by the zoom: ``roi.network_size``, float32 tensor."""
    volume = torch.as_tensor(_as_numpy(volume), dtype=torch.float32)
    if tuple(volume.shape) != roi.shape:
        raise InputError("volume", f"shape {tuple(volume.shape)} differs from the series' {roi.shape}")
    x0, x1, y0, y1 = roi.box
    return _resize(volume[x0:x1, y0:y1].contiguous(), roi.network_size[:2])


def seam_weight(roi: MotionROI, feather: int = 8) -> torch.Tensor:
    """``(X, Y, 1)`` weight of the network's result: 1 inside the box, a cosine ramp from 1 to 0 over ``feather``
    voxels towards each inner edge of the box (edges on the image border need no ramp), 0 outside."""
    weight = torch.zeros(roi.shape[0], roi.shape[1], 1)
    x0, x1, y0, y1 = roi.box
    profiles = []
    for low, high, limit in ((x0, x1, roi.shape[0]), (y0, y1, roi.shape[1])):
        n = high - low
        position = torch.arange(n, dtype=torch.float32)
        ramp = torch.ones(n)
        if feather > 0:
            width = min(feather, n // 2)
            if width > 0:
                rise = 0.5 - 0.5 * torch.cos(torch.pi * (position + 0.5) / width)
                if low > 0:
                    ramp = torch.minimum(ramp, torch.where(position < width, rise, torch.ones(n)))
                if high < limit:
                    fall = rise.flip(0)
                    ramp = torch.minimum(ramp, torch.where(position >= n - width, fall, torch.ones(n)))
        profiles.append(ramp)
    weight[x0:x1, y0:y1, 0] = profiles[0][:, None] * profiles[1][None, :]
    return weight


def paste(result, blend, roi: MotionROI, feather: int = 8) -> torch.Tensor:
    """The full-size volume: ``result`` (the network's output on :func:`crop`'s grid) put back into the box and
    blended into ``blend`` (the endpoints' blend at full size) with :func:`seam_weight`.

    What is resampled back is the network's *change* to the blend, ``result - crop(blend)``, added to the full-size
    blend: where the network returns the blend the output is the blend at full resolution, detail included. Resampling
    the output itself down to the training spacing and up again blurred every fine edge in the box (on phantoms with
    0.8 mm pixels the moving region fell 1.4-1.7 dB below the blend; with the change resampled, bicubically, it is
    0.6 dB above).
    Without a zoom the two are the same (``crop`` is then a plain crop).

    Returns:
        ``(X, Y, Z)`` float32 tensor, equal to ``blend`` outside the box.

    Raises:
        InputError: a shape that does not fit ``roi``, or a non-finite ``result``.
    """
    result = torch.as_tensor(_as_numpy(result), dtype=torch.float32)
    blend = torch.as_tensor(_as_numpy(blend), dtype=torch.float32)
    if tuple(result.shape) != roi.network_size:
        raise InputError("result", f"shape {tuple(result.shape)} differs from the cropped grid {roi.network_size}")
    if tuple(blend.shape) != roi.shape:
        raise InputError("blend", f"shape {tuple(blend.shape)} differs from the series' {roi.shape}")
    if not torch.isfinite(result).all():
        raise InputError("result", "holds NaN or infinite values")
    x0, x1, y0, y1 = roi.box
    inside = blend.clone()
    inside[x0:x1, y0:y1] += _resize(result - crop(blend, roi), roi.size)
    weight = seam_weight(roi, feather)
    return torch.where(weight > 0, weight * inside + (1 - weight) * blend, blend)


def still_weight(i0, i1, level: float, width: int = 7) -> torch.Tensor:
    """How much of the network's change to the blend of ``i0`` and ``i1`` to keep, voxel by voxel.

    The in-plane mean of ``|i1 - i0|`` over a ``width`` x ``width`` window (intensities in [0, 1]; the window shrinks
    at the image's edges), divided by ``level`` and capped at 1: 1 wherever the two acquired frames differ by
    ``level`` or more, falling linearly to 0 where they are equal. A synthesised frame ``S`` between them becomes
    ``B + w (S - B)`` with ``B`` their blend, so where nothing moves between the two frames the output is the blend,
    which is exact there, and the network's change (warping a still image resamples it) counts only where they
    differ. Measured on whole cines made twice and four times as fine (research log, "Leaning to the blend where the
    pair is still").

    Args:
        i0, i1: ``(X, Y, Z)`` the two acquired frames, in [0, 1].
        level: the difference (in [0, 1] intensities) from which the network's change is kept whole; 0 keeps it
            everywhere.
        width: the in-plane window, voxels (odd).

    Returns:
        ``(X, Y, Z)`` float32 tensor in [0, 1].
    """
    i0 = torch.as_tensor(_as_numpy(i0), dtype=torch.float32)
    i1 = torch.as_tensor(_as_numpy(i1), dtype=torch.float32)
    if level <= 0:
        return torch.ones_like(i0)
    return (_plane_mean((i1 - i0).abs(), width) / level).clamp(0, 1)
