"""How time points name files and label figures, shared by the writers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def t_label(t: float) -> str:
    """How a time point appears in file names and titles: three decimals (``0.25`` -> ``"0.250"``)."""
    return f"{t:.3f}"


def check_frames(frames: np.ndarray, ts: Sequence[float]) -> None:
    if frames.ndim != 4 or frames.shape[3] != len(ts):
        raise ValueError(f"frames must be (X, Y, Z, N) with N = len(ts) = {len(ts)}, got shape {frames.shape}")
    labels = [t_label(t) for t in ts]
    if len(set(labels)) != len(labels):
        raise ValueError(f"time points {list(ts)} share a file name at three decimals ({labels})")
