"""The student and its neighbour refinement as one network, for training them together on the whole-cine job.

In ``interpolate --upsample K`` the student synthesises each pair's frames from ``I_a``, ``I_c`` and ``t``, and the
neighbour refinement (:mod:`scripts.networks.neighbours`) corrects them with the acquired frames before and after the
pair. Trained apart, the refinement learns to correct a frozen student; trained together, the student also learns
what to leave to the refinement (research log, "The student and its refinement trained together"). The product runs
the two parts as it always does (:class:`~scripts.inference.interpolator.SeriesInterpolator`): this module is a
training network whose parts are saved as the two weights files.
"""

from __future__ import annotations

import torch
from torch import nn

from scripts.networks.neighbours import NeighbourRefinement
from scripts.networks.tmsdf import Student

__all__ = ["StudentWithNeighbours"]


class StudentWithNeighbours(nn.Module):
    """``(N, 5, X, Y, Z)`` volumes in the neighbour refinement's layout (``INPUTS``: its channel 0, the frozen student's
    frame of the refinement's samples, is not read) and ``(N,)`` times in [0, 1] -> the refined frame ``(N, 1, X, Y,
    Z)``; in training mode ``(N, 2, X, Y, Z)``: the refined frame and this student's frame, for a loss on both.

    Args:
        student: the student (``(N, 2, X, Y, Z)`` = (I_a, I_c), ``t`` -> ``(N, 1, X, Y, Z)``).
        refinement: its neighbour refinement.
    """

    def __init__(self, student: Student, refinement: NeighbourRefinement):
        super().__init__()
        self.student, self.refinement = student, refinement

    def forward(self, volumes: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if volumes.dim() != 5 or volumes.shape[1] != self.refinement.num_inputs:
            raise ValueError(f"expected (N, 5, X, Y, Z) volumes (S, I_p, I_a, I_c, I_n), got {tuple(volumes.shape)}")
        frame = self.student(volumes[:, 2:4], t)
        refined = self.refinement(torch.cat([frame, volumes[:, 1:]], dim=1), t)
        return torch.cat([refined, frame], dim=1) if self.training else refined
