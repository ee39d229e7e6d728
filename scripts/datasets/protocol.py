"""The UVI-Net preprocessing protocol shared by the 4D NIfTI datasets: centre crop, min-max, zero pad."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.transforms import CenterSpatialCrop, SpatialPad

from scripts.io.nifti_read import read_nifti_4d
from scripts.transforms.intensity import normalise_frames
from scripts.transforms.motion_roi import find_roi, motion_map
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
                         motion_crop: bool = False) -> np.ndarray:
    """Read a 4D NIfTI (:func:`~scripts.io.nifti_read.read_nifti_4d`) and apply :func:`protocol_frames` to it.

    With ``motion_crop`` the series is first cut to the in-plane box where it moves, as the product's motion region
    finds it (:func:`~scripts.transforms.motion_roi.find_roi` on the temporal standard deviation of all its frames,
    15 mm margin, every slice), so the protocol's centre crop is centred on the moving heart of a full field of view
    rather than on the middle of the image, and a network trained on it sees what inference gives it.

    A module-level function, so ``functools.partial`` of it is a picklable case loader.
    """
    series = read_nifti_4d(path)
    array = series.array
    if motion_crop:
        x0, x1, y0, y1 = find_roi(motion_map(np.moveaxis(array, -1, 0)), series.spacing).box
        array = array[x0:x1, y0:y1]
    return protocol_frames(array, spatial_size, path, per_frame=per_frame)


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
