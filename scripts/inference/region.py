"""The motion-region step of ``configs/inference.json``: run the network where the series moves, keep the blend of
the static surroundings.

A full field-of-view cine is mostly static body around a moving heart; there the blend of the acquired frames is
exact, and a network trained on heart-cropped volumes at another in-plane spacing only adds error (its instance
norms see mostly background). :class:`MotionRegion` finds the moving box from the acquired frames' temporal standard
deviation (:mod:`scripts.transforms.motion_roi`), crops every acquired frame to it (resampled in plane to the training
spacing when the series' differs by more than a factor), lets the inferer synthesise on that grid, and pastes each
synthesised frame back into the blend of its two acquired neighbours with a smooth seam. Outside the box the output
*is* the blend. Where the box would be the whole plane at the training spacing, nothing changes (the network runs on
the whole volume, as without the step). Then, voxel by voxel, every synthesised frame leans to the blend where its
two acquired frames hardly differ (:func:`~scripts.transforms.motion_roi.still_weight`, ``still_level``): a still
voxel's blend is exact, and warping it only resamples it. ``enabled: false`` turns the step off (the network's frames
as they are, on the whole volume).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from scripts.transforms.motion_roi import MotionROI, crop, find_roi, motion_map, paste, still_weight
from scripts.utils.args import parse_bool
from scripts.utils.tensors import lerp

__all__ = ["MotionRegion"]

logger = logging.getLogger(__name__)


class MotionRegion:
    """Where the network runs (module docstring).

    Args:
        enabled: False runs the network on the whole volume.
        training_spacing: in-plane voxel size (mm) the network was trained at; None never resamples.
        margin_mm: added around the moving voxels on each side.
        feather: width (voxels of the series) of the cosine seam inside the box's edges.
        tolerance: resample only when the series' spacing differs from ``training_spacing`` by more than this factor.
        still_level: a synthesised frame keeps the network's change to the blend of its two acquired frames whole
            where they differ by this much or more (mean over ``still_width`` x ``still_width`` voxels in plane,
            intensities in [0, 1]), less where they differ less, none where they are equal; 0 keeps it everywhere.
        still_width: the in-plane window of ``still_level``, voxels.
        coverage: the share of the motion the box holds before its margin
            (:func:`~scripts.transforms.motion_roi.find_roi`); 1 holds every moving voxel.
        component_share: the box holds the connected pieces of the moving region with at least this share of the
            largest piece's motion (:func:`~scripts.transforms.motion_roi.main_motion`: the heart, not the scattered
            flicker of a real cine's flow and banding artefacts); 0 holds every moving voxel.
        component_min_box: ``component_share`` applies only where the box of every moving voxel is larger than this
            (voxels of the network's grid) on some side; smaller boxes (heart-cropped series) keep every piece.
    """

    def __init__(self, enabled: bool = True, training_spacing: Sequence[float] | None = None, margin_mm: float = 15.0,
                 feather: int = 8, tolerance: float = 1.25, still_level: float = 0.0, still_width: int = 7,
                 coverage: float = 1.0, component_share: float = 0.0, component_min_box: int = 0):
        self.enabled = parse_bool(enabled, "motion_region")  # "false" from a command line is False
        self.training_spacing = None if training_spacing is None else tuple(float(v) for v in training_spacing)
        self.margin_mm, self.feather, self.tolerance = float(margin_mm), int(feather), float(tolerance)
        self.still_level, self.still_width = float(still_level), int(still_width)
        self.coverage, self.component_share = float(coverage), float(component_share)
        self.component_min_box = int(component_min_box)

    def find(self, frames: np.ndarray, spacing: Sequence[float]) -> MotionROI | None:
        """The box of ``frames`` ``(X, Y, Z, T)`` (acquired frames, any units; spacing in mm), or None where the
        network should run on the whole volume (step off, or a box that is the whole plane with no resampling)."""
        if not self.enabled:
            return None
        roi = find_roi(motion_map(np.moveaxis(frames, -1, 0)), spacing, self.training_spacing,
                       margin_mm=self.margin_mm, tolerance=self.tolerance, coverage=self.coverage,
                       component_share=self.component_share, component_min_box=self.component_min_box)
        whole = roi.box == (0, roi.shape[0], 0, roi.shape[1]) and roi.zoom == (1.0, 1.0)
        logger.info("motion region: %s", "the whole plane" if whole else
                    f"box x {roi.box[0]}:{roi.box[1]}, y {roi.box[2]}:{roi.box[3]} of {roi.shape[:2]}, "
                    f"in-plane zoom {tuple(round(z, 3) for z in roi.zoom)}")
        return None if whole else roi

    def run(self, synthesise: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, spacing: Sequence[float],
            neighbours: Sequence[tuple[int, int, float]], motion: np.ndarray | None = None) -> np.ndarray:
        """Synthesise through the region.

        Args:
            synthesise: ``frames (X', Y', Z, T) -> (X', Y', Z, N)``, the inferer on the frames it is given.
            frames: ``(X, Y, Z, T)`` the acquired frames the inferer needs, in [0, 1].
            spacing: the series' voxel size in mm.
            neighbours: for each of the N synthesised frames, ``(a, b, t)``: its acquired neighbours and its time
                between them (its blend is ``(1 - t) frames[a] + t frames[b]``).
            motion: ``(X, Y, Z, T')`` acquired frames that locate the motion (default ``frames``): every frame of the
                series where more than the endpoints are known.

        Returns:
            ``(X, Y, Z, N)`` in [0, 1].
        """
        if not self.enabled:
            return synthesise(frames)
        roi = self.find(frames if motion is None else motion, spacing)
        inside = synthesise(frames if roi is None else
                            np.stack([crop(frames[..., k], roi).numpy() for k in range(frames.shape[-1])], axis=-1))
        if roi is None and self.still_level <= 0:
            return inside
        out = np.empty((*frames.shape[:3], len(neighbours)), dtype=np.float32)
        still: dict[tuple[int, int], torch.Tensor] = {}  # one weight per acquired pair, whatever its number of frames
        for n, (a, b, t) in enumerate(neighbours):
            i0, i1 = torch.as_tensor(frames[..., a]), torch.as_tensor(frames[..., b])
            blend = lerp(i0[None, None], i1[None, None], t)[0, 0]
            frame = (torch.as_tensor(inside[..., n]) if roi is None else
                     paste(inside[..., n], blend, roi, self.feather).clamp(0, 1))
            if self.still_level > 0:
                if (a, b) not in still:
                    still[a, b] = still_weight(i0, i1, self.still_level, self.still_width)
                frame = blend + still[a, b] * (frame - blend)
            out[..., n] = frame.numpy()
        return out
