"""Write synthesised frames as NIfTI: one 4D series and one 3D volume per t.

Every file goes through :func:`scripts.utils.atomic.atomic_file`: it appears whole or not at all, and an existing file is
never replaced unless ``overwrite`` is asked for. A call's set of files is written to temporary names first and only
renamed into place once all of them are written, so an error leaves none of them behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np

from scripts.io.time_labels import check_frames, t_label
from scripts.utils.atomic import atomic_file


class NiftiOutputs(NamedTuple):
    """Paths written by :func:`write_nifti_frames`: the 4D series and the 3D volumes in the order of ``ts``."""

    series: Path
    volumes: list[Path]


def _nifti(array: np.ndarray, affine: np.ndarray, dtype: np.dtype, time_step_ms: float | None = None,
           xform_code: int = 1) -> nib.Nifti1Image:
    """A NIfTI image with ``affine`` as both qform and sform with ``xform_code`` (1: scanner; the input's code, so an
    output claims the space its input claimed), mm units, and for a 4D array with a known ``time_step_ms`` that step
    as pixdim[4] in ms."""
    image = nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine)
    image.set_qform(affine, code=int(xform_code))
    image.set_sform(affine, code=int(xform_code))
    if time_step_ms is not None and image.ndim == 4:
        image.header.set_zooms((*image.header.get_zooms()[:3], float(time_step_ms)))
        image.header.set_xyzt_units(xyz="mm", t="msec")
    else:
        image.header.set_xyzt_units(xyz="mm")
    image.set_data_dtype(dtype)
    return image


def write_nifti_frames(
    frames: np.ndarray,
    affine: np.ndarray,
    out_dir: str | os.PathLike,
    ts: Sequence[float],
    prefix: str = "interp",
    overwrite: bool = False,
    dtype: str | np.dtype = "float32",
    xform_code: int = 1,
) -> NiftiOutputs:
    """Write N synthesised frames as ``<prefix>_4d.nii.gz`` and ``<prefix>_t<t>.nii.gz`` per t (e.g. ``interp_t0.250``).

    Args:
        frames: ``(X, Y, Z, N)`` in the input's intensity units (map network output back with
            :meth:`~scripts.transforms.intensity.IntensityScale.from_unit` first).
        affine: ``(4, 4)`` voxel -> RAS mm map of the input; written as qform and sform.
        out_dir: folder for the files (created if needed).
        ts: the N time points, in the order of the frames' last axis.
        prefix: file name prefix.
        overwrite: replace existing files of the same names; otherwise an existing one is an error before anything
            is written.
        dtype: stored data type. ``float32`` (default) keeps the values as they are. An integer type (such as the
            input's ``int16``) is stored with NIfTI ``scl_slope``/``scl_inter``, which nibabel chooses to span the
            frames' range; readers apply them, so values come back within one quantisation step
            (range / 65535 for int16).
        xform_code: the qform / sform code (1: scanner; pass the input's ``Series4D.xform_code``).

    Returns:
        :class:`NiftiOutputs` with the paths.

    Raises:
        OutputExistsError: when a target exists and ``overwrite`` is false (nothing is written).
    """
    check_frames(frames, ts)
    out_dir = Path(out_dir)
    series_path = out_dir / f"{prefix}_4d.nii.gz"
    volume_paths = [out_dir / f"{prefix}_t{t_label(t)}.nii.gz" for t in ts]
    affine = np.asarray(affine, dtype=np.float64)
    with contextlib.ExitStack() as stack:
        series_tmp = stack.enter_context(atomic_file(series_path, overwrite=overwrite))
        volume_tmps = [stack.enter_context(atomic_file(path, overwrite=overwrite)) for path in volume_paths]
        nib.save(_nifti(frames, affine, dtype, xform_code=xform_code), series_tmp)
        for k, tmp in enumerate(volume_tmps):
            nib.save(_nifti(frames[..., k], affine, dtype, xform_code=xform_code), tmp)
    return NiftiOutputs(series_path, volume_paths)


def write_nifti_series(
    series: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    time_step_ms: float | None = None,
    overwrite: bool = False,
    xform_code: int = 1,
) -> Path:
    """Write one 4D series ``(X, Y, Z, T)`` as float32 NIfTI with ``affine`` (qform and sform, ``xform_code``) and,
    when known, its time step (ms).

    Raises:
        OutputExistsError: when ``path`` exists and ``overwrite`` is false.
    """
    if series.ndim != 4:
        raise ValueError(f"series must be (X, Y, Z, T), got shape {series.shape}")
    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        nib.save(_nifti(series, np.asarray(affine, dtype=np.float64), np.float32, time_step_ms, xform_code), tmp)
    return path
