"""A PNG montage of the synthesised frames between their endpoints (and the truth, where known)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scripts.io.time_labels import check_frames, t_label
from scripts.utils.atomic import atomic_file

TITLE_BAND_PX = 20  # height of the title strip above each montage row, in pixels


_MIN_PANEL_PX = 160  # the automatic zoom makes a panel's longer side at least this many pixels


_DPI = 100


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
    check_frames(frames, ts)
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
