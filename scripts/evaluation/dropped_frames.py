"""Which frames a temporal super-resolution benchmark drops, and the acquired neighbours each is synthesised from."""

from __future__ import annotations

__all__ = ["acquired_pairs"]


def acquired_pairs(num_frames: int, factor: int, cyclic: bool = True) -> list[tuple[int, int, list[int]]]:
    """The acquired neighbours of every dropped frame when every ``factor``-th frame is kept.

    Returns:
        ``[(a, c, [dropped frames between a and c]), ...]`` in order; with ``cyclic`` the last pair runs from the last
        acquired frame to frame 0 (``c`` is given as ``T``, one cycle on), otherwise its frames are left out.
    """
    kept = list(range(0, num_frames, factor))
    ends = [*kept[1:], num_frames] if cyclic else kept[1:]
    return [(a, c, list(range(a + 1, c))) for a, c in zip(kept, ends) if c - a > 1]
