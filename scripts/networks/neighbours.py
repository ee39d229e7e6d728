"""Neighbour refinement: correct the student's frame with the acquired frames on either side of its pair.

The student synthesises a frame from its two acquired neighbours ``I_a``, ``I_c`` and ``t`` alone. In a whole-cine
job (``interpolate --upsample K``, the super-resolution benchmark) every pair also has an acquired frame before it,
``I_p``, and after it, ``I_n``: where the motion bends (the turn at end systole, diastasis) or the series changes by
more than a deformation, they tell what the pair cannot. This module reads the student's output ``S`` with the four
acquired frames and returns ``S + r``; its last convolution starts at zero, so untrained it returns ``S`` exactly.

Network: a small U-Net over ``concat(S, I_p, I_a, I_c, I_n, B, S - B, t)`` (8 channels; ``B = (1 - t) I_a + t I_c``
the blend): two 3^3 convolutions with LeakyReLU(0.2) per level, three levels pooled 2 x 2 in plane only (cine and 4D CT
stacks are thin: 8-12 slices), no normalisation (a motion region's statistics differ from a heart crop's), a 3^3
output convolution. In-plane sizes are padded (replicate) to a multiple of 4 and cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NeighbourRefinement"]

INPUTS = ("student", "previous", "start", "end", "following")
"""The order of the five volumes in the input's channel axis."""


def _level(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv3d(out_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2),
    )


class NeighbourRefinement(nn.Module):
    """``(N, 5, X, Y, Z)`` volumes (:data:`INPUTS`: S, I_p, I_a, I_c, I_n in [0, 1]) and ``(N,)`` times in [0, 1]
    -> ``(N, 1, X, Y, Z)`` the refined frame ``S + r`` (module docstring).

    Args:
        width: channels of the full-resolution level (2x and 4x at the coarser two).
    """

    __constants__ = ("num_inputs",)

    def __init__(self, width: int = 16):
        super().__init__()
        w = int(width)
        self.num_inputs = len(INPUTS)
        self.down0, self.down1, self.down2 = _level(8, w), _level(w, 2 * w), _level(2 * w, 4 * w)
        self.up1, self.up0 = _level(6 * w, 2 * w), _level(3 * w, w)
        self.out = nn.Conv3d(w, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, volumes: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if volumes.dim() != 5 or volumes.shape[1] != self.num_inputs:
            raise ValueError("expected (N, 5, X, Y, Z) volumes (S, I_p, I_a, I_c, I_n), got " + str(volumes.shape))
        size = volumes.shape[2:4]
        pad = [0, 0, 0, -size[1] % 4, 0, -size[0] % 4]  # Z, Y, X (last axis first), after only
        x = F.pad(volumes, pad, mode="replicate") if pad[3] != 0 or pad[5] != 0 else volumes
        student, start, end = x[:, :1], x[:, 2:3], x[:, 3:4]
        times = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1, 1).expand_as(student)
        blend = (1 - times) * start + times * end
        d0 = self.down0(torch.cat([x, blend, student - blend, times], dim=1))
        d1 = self.down1(F.max_pool3d(d0, (2, 2, 1)))
        d2 = self.down2(F.max_pool3d(d1, (2, 2, 1)))
        u1 = self.up1(torch.cat([F.interpolate(d2, scale_factor=[2.0, 2.0, 1.0]), d1], dim=1))
        u0 = self.up0(torch.cat([F.interpolate(u1, scale_factor=[2.0, 2.0, 1.0]), d0], dim=1))
        refined = student + self.out(u0)
        return refined[:, :, : size[0], : size[1]]


def neighbour_indices(previous: int, following: int, num_frames: int, cyclic: bool) -> tuple[int, int] | None:
    """The acquired frames around the pair ``(previous, following)`` of a series of ``num_frames``: ``(p, n)`` with
    ``p`` the frame before ``previous`` and ``n`` the one after ``following``, wrapping round a ``cyclic`` series;
    None where one of them does not exist (an end pair of an open series, or fewer than 4 frames)."""
    if num_frames < 4:
        return None
    p, n = previous - 1, following + 1
    if cyclic:
        return p % num_frames, n % num_frames
    return (p, n) if p >= 0 and n < num_frames and following > previous else None


def pair_context(start: int, num_frames: int, factor: int, cyclic: bool = True) -> tuple[int, int] | None:
    """The acquired frames before and after the pair that starts at frame ``start`` of a series of ``num_frames``
    of which every ``factor``-th frame is kept (the pairs of :func:`scripts.datasets.dropped_frames.acquired_pairs`),
    as frames of the series; None where the pair has none on one side (:func:`neighbour_indices` over the kept
    frames)."""
    kept = list(range(0, num_frames, factor))
    index = start // factor
    around = neighbour_indices(index, (index + 1) % len(kept) if cyclic else index + 1, len(kept), cyclic)
    return None if around is None else (kept[around[0]], kept[around[1]])


def stack_inputs(student: torch.Tensor, frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(N, 1, X, Y, Z)`` student frames of one pair and its four acquired frames ``(I_p, I_a, I_c, I_n)``, each
    ``(1, 1, X, Y, Z)`` -> the ``(N, 5, X, Y, Z)`` input of :class:`NeighbourRefinement`."""
    n = student.shape[0]
    return torch.cat([student, *(f.expand(n, -1, -1, -1, -1) for f in frames)], dim=1)
