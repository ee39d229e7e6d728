"""The UVI-Net preprocessing protocol shared by the 4D NIfTI datasets: centre crop, min-max, zero pad."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.transforms import CenterSpatialCrop, SpatialPad

from scripts.io.nifti_read import read_nifti_4d
from scripts.transforms.intensity import normalise_frames
from scripts.transforms.motion_roi import crop, find_roi, motion_map
from scripts.utils.errors import InputError


def protocol_frames(
    series: np.ndarray, spatial_size: Sequence[int], source: str | os.PathLike, per_frame: bool = False
) -> np.ndarray:
    """Crop, min-max and zero-pad a series to the protocol grid (module docstring).

    Args:
        series: ``(X, Y, Z, T)`` float array in the input's units.
        spatial_size: the protocol grid ``(X', Y', Z')``.
        source: the file, named in errors.
        per_frame: one min-max scale per frame instead of one for the series.

    Returns:
        ``(X', Y', Z', T)`` float32 in [0, 1]; voxels added by padding are exactly 0.

    Raises:
        InputError: naming ``source`` when the cropped series (or a frame, with ``per_frame``) is constant.
    """
    channels_first = np.moveaxis(np.asarray(series, dtype=np.float32), -1, 0)
    cropped = CenterSpatialCrop(roi_size=tuple(spatial_size))(channels_first).numpy()
    normalised, _ = normalise_frames(np.moveaxis(cropped, 0, -1), source, per_frame=per_frame)
    padded = SpatialPad(spatial_size=tuple(spatial_size), mode="constant")(np.moveaxis(normalised, -1, 0)).numpy()
    return np.ascontiguousarray(np.moveaxis(padded, 0, -1), dtype=np.float32)


def load_protocol_series(path: str | os.PathLike, spatial_size: Sequence[int], per_frame: bool = False,
                         motion_crop: bool = False, training_spacing: Sequence[float] | None = None,
                         zoom_tolerance: float = 2.0) -> np.ndarray:
    """Read a 4D NIfTI (:func:`~scripts.io.nifti_read.read_nifti_4d`) and apply :func:`protocol_frames` to it.

    With ``motion_crop`` the protocol's crop is centred on the in-plane box where the series moves, as the product's
    motion region finds it (:func:`~scripts.transforms.motion_roi.find_roi` on the temporal standard deviation of all
    its frames, 15 mm margin, every slice), rather than on the middle of the image: a full field of view's heart is
    rarely in the middle, and a network trained on the crop then sees what inference gives it. Along each in-plane
    axis the series is cut to the box, or, where the box is narrower than ``spatial_size`` (in the network's voxels),
    to a window of that size around the box's centre (inside the image), so no padding is added that the image could
    fill. Where the series' in-plane spacing differs from ``training_spacing`` (mm) by more than a factor
    ``zoom_tolerance``, the cut is resampled in plane to ``training_spacing`` (bicubic, as inference's motion region
    resamples its box: :func:`~scripts.transforms.motion_roi.crop`); None never resamples.

    A module-level function, so ``functools.partial`` of it is a picklable case loader.
    """
    series = read_nifti_4d(path)
    array = series.array
    if motion_crop:
        roi = find_roi(motion_map(np.moveaxis(array, -1, 0)), series.spacing, training_spacing,
                       tolerance=zoom_tolerance)
        x0, x1, y0, y1 = roi.box
        box = (*_window(x0, x1, array.shape[0], math.ceil(spatial_size[0] / roi.zoom[0])),
               *_window(y0, y1, array.shape[1], math.ceil(spatial_size[1] / roi.zoom[1])))
        window = dataclasses.replace(roi, box=box)  # the box, widened to the crop where it is narrower
        array = np.stack([crop(array[..., k], window).numpy() for k in range(array.shape[-1])], axis=-1)
    return protocol_frames(array, spatial_size, path, per_frame=per_frame)


def _window(low: int, high: int, size: int, want: int) -> tuple[int, int]:
    """``(low, high)`` of an axis of ``size`` voxels, widened to ``want`` voxels around its centre (kept inside the
    axis) where it is narrower."""
    if high - low >= want:
        return low, high
    start = min(max((low + high) // 2 - want // 2, 0), max(size - want, 0))
    return start, min(size, start + want)


SPLITS = ("train", "test", "all")


def dataset_root(dataset_dir: str | os.PathLike, split: str, layout: str) -> Path:
    """``dataset_dir`` as a folder, after checking ``split`` is one of :data:`SPLITS`.

    Raises:
        InputError: naming ``split`` when it is not a split, or the folder (with the expected ``layout``) when it is
            not a folder.
    """
    if split not in SPLITS:
        raise InputError("split", f"must be one of {SPLITS}, got {split!r}")
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(root, f"is not a folder; expected {layout}")
    return root
