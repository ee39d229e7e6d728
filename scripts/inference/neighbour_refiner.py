"""The neighbour refinement as the product applies it: which pairs it refines, and refining their frames.

One object carries the loaded :class:`~scripts.networks.neighbours.NeighbourRefinement`, its weights file and the
widest span it refines, so that ``interpolate --upsample`` (:class:`~scripts.inference.interpolator.SeriesInterpolator`)
and the super-resolution benchmark (:class:`~scripts.evaluation.methods.StudentMethod`) apply the same rule to the
same inputs: a pair is refined when it has an acquired frame before and after it and spans at most ``max_span`` of its
series.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from scripts.networks.neighbours import stack_inputs
from scripts.utils.checkpoint import load_weights
from scripts.utils.errors import InputError

__all__ = ["NeighbourRefiner"]


class NeighbourRefiner:
    """A neighbour refinement network with its weights and the widest pair it refines.

    Args:
        network: a :class:`~scripts.networks.neighbours.NeighbourRefinement` (its weights are read by :meth:`load`).
        checkpoint: its weights file (read with ``weights_only=True``).
        max_span: refine only pairs spanning at most this share of their series (``1 / T`` for consecutive frames of
            a T-frame series; the inference config ties it to the warp choice's ``wide_above``); None refines every
            pair that has context.

    Raises:
        InputError: naming ``neighbour_checkpoint`` when no weights file is given, ``max_span`` when not in (0, 1].
    """

    def __init__(self, network: torch.nn.Module, checkpoint: str | os.PathLike | None, max_span: float | None = None):
        if checkpoint is None:
            raise InputError("neighbour_checkpoint", "the neighbour refinement needs its weights file")
        if max_span is not None and not 0 < float(max_span) <= 1:
            raise InputError("max_span", f"expected a share of the series in (0, 1], got {max_span!r}")
        self.network, self.checkpoint = network, Path(checkpoint)
        self.max_span = None if max_span is None else float(max_span)
        self._loaded_on: torch.device | None = None

    def __repr__(self) -> str:
        return f"NeighbourRefiner({self.checkpoint.name}, max_span={self.max_span})"

    def load(self, device: str | torch.device = "cpu") -> NeighbourRefiner:
        """Read the weights (once) and move the network to ``device``; returns self.

        Raises:
            InputError: naming the weights file when it is missing or holds another architecture.
        """
        device = torch.device(device)
        if self._loaded_on is None:
            if not self.checkpoint.is_file():
                raise InputError(self.checkpoint, "the neighbour refinement's weights file was not found")
            self.network = load_weights(self.network, self.checkpoint).eval()
        if self._loaded_on != device:
            self.network = self.network.to(device)
            self._loaded_on = device
        return self

    def applies(self, span: float | None) -> bool:
        """Whether a pair spanning ``span`` of its series is refined, given that it has context: always without
        ``max_span``; with it, only a known span (not None) of at most ``max_span``."""
        return self.max_span is None or (span is not None and span <= self.max_span)

    @torch.no_grad()
    def __call__(self, student: torch.Tensor, frames: Sequence[torch.Tensor], ts: torch.Tensor) -> torch.Tensor:
        """Refine one pair's frames.

        Args:
            student: ``(N, 1, X, Y, Z)`` the student's frames of the pair in [0, 1] (clamped here).
            frames: the acquired ``(I_p, I_a, I_c, I_n)``, each ``(1, 1, X, Y, Z)`` in [0, 1].
            ts: ``(N,)`` the frames' times in [0, 1] between ``I_a`` and ``I_c``.

        Returns:
            ``(N, 1, X, Y, Z)`` float32 in [0, 1].
        """
        if self._loaded_on is None:
            raise RuntimeError("NeighbourRefiner.load() must run before it refines")
        return self.network(stack_inputs(student.float().clamp(0, 1), frames), ts).float().clamp(0, 1)
