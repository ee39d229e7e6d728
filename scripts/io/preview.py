"""An animated GIF of a cine's middle slice: the acquired frames beside the output frames, looping, so a person sees
the result move."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scripts.utils.atomic import atomic_file

_MIN_PANEL_PX = 160  # a panel's longer side is zoomed to at least this many pixels
_LABEL_BAND_PX = 14  # height of the label strip above the panels
_GAP_PX = 4  # between the two panels


def _grey(image: np.ndarray, lo: float, hi: float, zoom: int) -> np.ndarray:
    """``(X, Y)`` slice -> ``(Y * zoom, X * zoom)`` uint8 (axis 0 left to right, axis 1 top to bottom)."""
    scaled = np.clip((image.T - lo) / (hi - lo) if hi > lo else np.zeros_like(image.T), 0, 1)
    return np.kron(np.round(scaled * 255).astype(np.uint8), np.ones((zoom, zoom), np.uint8))


def write_cine_preview(
    acquired: np.ndarray,
    cine: np.ndarray,
    acquired_index: Sequence[int],
    path: str | os.PathLike,
    frame_ms: int = 80,
    labels: tuple[str, str] = ("acquired", "interpolated"),
    overwrite: bool = False,
) -> Path:
    """Write a looping GIF of the middle slice (axis 2): the acquired frame on the left, the output frame on the right.

    One GIF frame per output frame; the left panel shows the acquired frame at or before it (``acquired_index``), so
    both panels run at the same pace through the same time. Both share one grey window (the extremes of both).
    Identical consecutive GIF frames are merged by Pillow into one shown for their summed time.

    Args:
        acquired: ``(X, Y, Z, T)`` acquired frames.
        cine: ``(X, Y, Z, M)`` output frames, same units and grid.
        acquired_index: ``(M,)`` the acquired frame shown beside each output frame.
        path: the ``.gif`` file to write.
        frame_ms: display time of one GIF frame, ms.
        labels: the two panels' captions.
        overwrite: replace an existing file.

    Returns:
        ``path``.
    """
    if acquired.ndim != 4 or cine.ndim != 4 or acquired.shape[:3] != cine.shape[:3]:
        raise ValueError(f"acquired {acquired.shape} and cine {cine.shape} must be (X, Y, Z, T) on one grid")
    if len(acquired_index) != cine.shape[3]:
        raise ValueError(f"acquired_index needs one entry per output frame ({cine.shape[3]})")
    mid = cine.shape[2] // 2
    left, right = acquired[:, :, mid], cine[:, :, mid]
    lo, hi = float(min(left.min(), right.min())), float(max(left.max(), right.max()))
    size_x, size_y = cine.shape[:2]
    zoom = max(1, math.ceil(_MIN_PANEL_PX / max(size_x, size_y)))
    width, height = 2 * size_x * zoom + _GAP_PX, size_y * zoom + _LABEL_BAND_PX
    frames = []
    for m, t in enumerate(acquired_index):
        canvas = np.zeros((height, width), np.uint8)
        canvas[_LABEL_BAND_PX:, : size_x * zoom] = _grey(left[..., t], lo, hi, zoom)
        canvas[_LABEL_BAND_PX:, size_x * zoom + _GAP_PX:] = _grey(right[..., m], lo, hi, zoom)
        image = Image.fromarray(canvas, mode="L")
        draw = ImageDraw.Draw(image)
        draw.text((2, 1), labels[0], fill=255)
        draw.text((size_x * zoom + _GAP_PX + 2, 1), labels[1], fill=255)
        frames.append(image)
    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=int(frame_ms), loop=0)
    return path
