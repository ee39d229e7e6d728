"""The network step of the inference: the student, its weights and device, turning endpoints into frames.

:class:`SeriesInterpolator` is ``configs/inference.json``'s ``inferer``: I0 and I1 (in [0, 1]) in, the student run on the
whole volume at its native grid (I0 and I1 encoded once, every t batched: ``Student.interpolate_series``), the
synthesised frames in [0, 1] out. The rest of the program (loading, intensity scaling, writers) is
:mod:`scripts.inference.workflow`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from scripts.utils.args import parse_device
from scripts.utils.checkpoint import load_weights
from scripts.utils.memory import check_memory

logger = logging.getLogger(__name__)



class SeriesInterpolator:
    """The student, its weights and device, ready to interpolate series.

    Args:
        network: a :class:`scripts.networks.Student` (any ablation), moved to ``device`` here.
        checkpoint: its weights (a state dict, read with ``weights_only=True``).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or ``"auto"`` (CUDA when available).
        amp: autocast (float16) on CUDA.
        max_batch: how many t values go through the decoder at once (memory vs speed); None lets the network choose
            (one at a time on CPU, where that is fastest; all at once on a GPU).
    """

    def __init__(self, network: torch.nn.Module, checkpoint: str | os.PathLike, device="auto", amp: bool = False,
                 max_batch: int | None = None):
        if not isinstance(device, torch.device):
            device = parse_device(device, "--device")  # gpu0, or cuda without a GPU: one line, not a traceback
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.network = load_weights(network, checkpoint).to(self.device).eval()
        self.checkpoint = str(checkpoint)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.max_batch = max_batch

    @torch.no_grad()
    def synthesise(self, i0: np.ndarray, i1: np.ndarray, ts: Sequence[float]) -> np.ndarray:
        """(X, Y, Z) endpoints in [0, 1] and N time points -> (X, Y, Z, N) synthesised volumes in [0, 1]."""
        check_memory(i0.shape, len(ts), self.max_batch, self.device)
        i0_t, i1_t = (torch.as_tensor(v, dtype=torch.float32, device=self.device)[None, None] for v in (i0, i1))
        times = torch.as_tensor(ts, dtype=torch.float32, device=self.device)
        with torch.autocast(self.device.type, enabled=self.amp):
            frames = self.network.interpolate_series(i0_t, i1_t, times, max_batch=self.max_batch)
        return frames[:, 0].float().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()
