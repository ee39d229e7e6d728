"""Write synthesised frames: NIfTI (one 4D series and one 3D volume per t) and a PNG montage.

Every file goes through :func:`scripts.atomic.atomic_file`: it appears whole or not at all, and an existing file is
never replaced unless ``overwrite`` is asked for. A call's set of files is written to temporary names first and only
renamed into place once all of them are written, so an error leaves none of them behind.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scripts.atomic import atomic_file

__all__ = ["NiftiOutputs", "t_label", "write_nifti_frames", "write_montage", "TITLE_BAND_PX"]

TITLE_BAND_PX = 20  # height of the title strip above each montage row, in pixels
_MIN_PANEL_PX = 160  # the automatic zoom makes a panel's longer side at least this many pixels
_DPI = 100


class NiftiOutputs(NamedTuple):
    """Paths written by :func:`write_nifti_frames`: the 4D series and the 3D volumes in the order of ``ts``."""

    series: Path
    volumes: list[Path]


def t_label(t: float) -> str:
    """How a time point appears in file names and titles: three decimals (``0.25`` -> ``"0.250"``)."""
    return f"{t:.3f}"


def _check_frames(frames: np.ndarray, ts: Sequence[float]) -> None:
    if frames.ndim != 4 or frames.shape[3] != len(ts):
        raise ValueError(f"frames must be (X, Y, Z, N) with N = len(ts) = {len(ts)}, got shape {frames.shape}")
    labels = [t_label(t) for t in ts]
    if len(set(labels)) != len(labels):
        raise ValueError(f"time points {list(ts)} share a file name at three decimals ({labels})")


def _nifti(array: np.ndarray, affine: np.ndarray, dtype: np.dtype) -> nib.Nifti1Image:
    """A NIfTI image with ``affine`` as both qform and sform (code 1, scanner) and mm units."""
    image = nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
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
) -> NiftiOutputs:
    """Write N synthesised frames as ``<prefix>_4d.nii.gz`` and ``<prefix>_t<t>.nii.gz`` per t (e.g. ``interp_t0.250``).

    Args:
        frames: ``(X, Y, Z, N)`` in the input's intensity units (map network output back with
            :meth:`~scripts.data.intensity.IntensityScale.from_unit` first).
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

    Returns:
        :class:`NiftiOutputs` with the paths.

    Raises:
        OutputExistsError: when a target exists and ``overwrite`` is false (nothing is written).
    """
    _check_frames(frames, ts)
    out_dir = Path(out_dir)
    series_path = out_dir / f"{prefix}_4d.nii.gz"
    volume_paths = [out_dir / f"{prefix}_t{t_label(t)}.nii.gz" for t in ts]
    affine = np.asarray(affine, dtype=np.float64)
    with contextlib.ExitStack() as stack:
        series_tmp = stack.enter_context(atomic_file(series_path, overwrite=overwrite))
        volume_tmps = [stack.enter_context(atomic_file(path, overwrite=overwrite)) for path in volume_paths]
        nib.save(_nifti(frames, affine, dtype), series_tmp)
        for k, tmp in enumerate(volume_tmps):
            nib.save(_nifti(frames[..., k], affine, dtype), tmp)
    return NiftiOutputs(series_path, volume_paths)


def write_montage(
    i0: np.ndarray,
    frames: np.ndarray,
    i1: np.ndarray,
    ts: Sequence[float],
    path: str | os.PathLike,
    truth: np.ndarray | None = None,
    overwrite: bool = False,
    zoom: int | None = None,
) -> Path:
    """A PNG of the middle slice (axis 2) of I0, each synthesised frame and I1, each titled with its t.

    With ``truth`` two more rows follow under the synthesised frames: the true frames and the absolute error.
    Axis 0 of a slice runs left to right and axis 1 top to bottom (DICOM display order of rows and columns); one
    voxel is ``zoom`` x ``zoom`` pixels, so the image is ``(N + 2) * X * zoom`` pixels wide and
    ``rows * (Y * zoom + TITLE_BAND_PX)`` high. Grey levels share one window (the extremes of every image shown);
    the error row has its own, from 0 to the largest error.

    Args:
        i0, i1: ``(X, Y, Z)`` endpoints.
        frames: ``(X, Y, Z, N)`` synthesised frames, same units as the endpoints.
        ts: the N time points.
        path: the PNG file to write.
        truth: ``(X, Y, Z, N)`` true frames at ``ts``, or None.
        overwrite: replace an existing file.
        zoom: pixels per voxel; by default the smallest making a panel's longer side >= 160 pixels.

    Returns:
        ``path``.
    """
    _check_frames(frames, ts)
    if i0.shape != frames.shape[:3] or i1.shape != frames.shape[:3]:
        raise ValueError(f"I0 {i0.shape}, I1 {i1.shape} and the frames {frames.shape} must share (X, Y, Z)")
    if truth is not None and truth.shape != frames.shape:
        raise ValueError(f"truth {truth.shape} must have the frames' shape {frames.shape}")
    size_x, size_y, size_z = frames.shape[:3]
    zoom = zoom or max(1, math.ceil(_MIN_PANEL_PX / max(size_x, size_y)))
    mid = size_z // 2
    slices = {"frames": frames[:, :, mid], "i0": i0[:, :, mid], "i1": i1[:, :, mid]}
    if truth is not None:
        slices["truth"] = truth[:, :, mid]
    grey = {
        "cmap": "gray",
        "vmin": min(float(s.min()) for s in slices.values()),
        "vmax": max(float(s.max()) for s in slices.values()),
    }

    num_cols, num_rows = len(ts) + 2, 1 if truth is None else 3
    panel_w, panel_h = size_x * zoom, size_y * zoom + TITLE_BAND_PX
    width, height = num_cols * panel_w, num_rows * panel_h
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)

    def panel(row: int, col: int, image: np.ndarray, title: str, style: dict) -> None:
        left, bottom = col * panel_w / width, 1 - (row + 1) * panel_h / height
        axes = figure.add_axes((left, bottom, size_x * zoom / width, size_y * zoom / height))
        axes.imshow(image.T, interpolation="nearest", aspect="auto", **style)
        axes.set_axis_off()
        axes.set_title(title, fontsize=8, pad=2)

    panel(0, 0, slices["i0"], "I0 (t=0)", grey)
    panel(0, num_cols - 1, slices["i1"], "I1 (t=1)", grey)
    for k, t in enumerate(ts):
        panel(0, k + 1, slices["frames"][..., k], f"t={t_label(t)}", grey)
    if truth is not None:
        error = np.abs(slices["frames"] - slices["truth"])
        error_style = {"cmap": "magma", "vmin": 0.0, "vmax": max(float(error.max()), np.finfo(np.float32).tiny)}
        for k, t in enumerate(ts):
            panel(1, k + 1, slices["truth"][..., k], f"truth t={t_label(t)}", grey)
            panel(2, k + 1, error[..., k], f"|error| max {float(error[..., k].max()):.3g}", error_style)

    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return path
