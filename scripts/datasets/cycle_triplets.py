"""Whole-cycle training triplets: any acquired frames a < b < c of a series, not only those between two endpoints.

The paper's protocol trains on one pair per case (ACDC: ED -> ES, i.e. systole only, large gaps). What users bring
is different: a whole cine made finer (gaps of 2 or 4 frames), diastole, either direction. This sampler draws, per
case, triplets ``(start, frame, end)`` from the whole series:

- gaps ``g = (end - start) mod T`` (cyclic) from ``min_gap`` (default 2, one frame between) to ``max_gap``
  (default ``T // 2``, half a cycle);
- the cycle wraps around for a periodic series (``cyclic=True``, e.g. a cardiac cine): ``start = T - 2``,
  ``end = 1`` is a triplet with targets ``T - 1`` and ``0``; a series with a beginning and an end does not wrap;
- both directions: ``(I0, I1) = (frame a, frame c)`` at ``t = (b - a) / (c - a)`` and ``(frame c, frame a)`` at
  ``1 - t``;
- the case's own protocol triplets (ACDC: ED -> ES with every frame between, exactly today's items) are always
  a separate pool, mixed in with the share ``anchor_fraction``.

:class:`CycleSpec` holds these settings (a config passes it as a mapping). The dataset
(:class:`CycleTripletDataset`) draws ``per_case`` triplets per case once, from a seeded generator, so a run and its
resumption see the same list; the random flips and endpoint swaps of training (``augment``) come on top.
``CycleSpec(anchor_fraction=1.0)`` with ``per_case=None`` gives exactly the protocol items of
:class:`~scripts.datasets.triplets.TripletDataset`, in the same order.

Items are those of :class:`~scripts.datasets.triplets.TripletDataset` (``image`` (2, X, Y, Z), ``target``
(1, X, Y, Z), ``t``, ``case``, ``frame``) plus ``start`` and ``end``, the frame indices of I0 and I1.
Memory: every frame of every case is held once (:class:`~scripts.datasets.triplets.FrameStore` with
``all_frames=True``): ``T x X x Y x Z x 4`` bytes per case (30 frames of 96 x 96 x 8: 8.8 MiB).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from monai.data import Dataset
from monai.transforms import Compose

from scripts.datasets.triplets import (
    CASE,
    END,
    FRAME,
    START,
    TIME,
    FrameStore,
    LoadTripletd,
    TripletCase,
    augmentation,
)
from scripts.utils.errors import InputError

__all__ = [
    "CycleSpec", "CycleTripletDataset", "Triplet", "anchor_triplets", "cycle_triplets", "draw_triplets", "triplet_gap",
]

logger = logging.getLogger(__name__)

class Triplet(NamedTuple):
    """One sample: I0 = frame ``start``, I1 = frame ``end``, the target ``frame`` at time ``t`` in (0, 1)."""

    start: int
    end: int
    frame: int
    t: float


@dataclasses.dataclass(frozen=True)
class CycleSpec:
    """How to draw whole-cycle triplets (module docstring).

    Attributes:
        per_case: triplets drawn per case; None takes every triplet of both pools (anchor first, in order).
        anchor_fraction: share of the drawn triplets taken from the case's protocol triplets (ACDC: ED -> ES);
            1.0 is the paper's protocol, 0.0 the whole cycle only.
        min_gap: smallest gap ``c - a`` in frames (2: one frame between).
        max_gap: largest gap; None is half the series, ``T // 2``.
        both_directions: also draw each triplet with I0 and I1 exchanged (``t -> 1 - t``).
        gap_power: how the whole-cycle pool is drawn: each triplet of gap ``g`` with weight ``(g - 1) ** -gap_power``.
            0 draws every triplet alike, so large gaps dominate (a gap ``g`` has ``g - 1`` targets per start: in a
            30-frame cine, gap 2 is 1 % of the pool); 1 draws every gap alike; 2 favours small gaps (30 frames: gap 2
            31 %, gaps 2-4 56 %), the gaps of a cine made 2 or 4 times finer.
        seed: seed of the draw.
    """

    per_case: int | None = 64
    anchor_fraction: float = 0.25
    min_gap: int = 2
    max_gap: int | None = None
    both_directions: bool = True
    gap_power: float = 0.0
    seed: int = 0

    def __post_init__(self):
        def integer(value) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        if self.per_case is not None and (not integer(self.per_case) or self.per_case < 1):
            raise InputError("cycle options", f"per_case must be a positive integer or null, got {self.per_case!r}")
        if not isinstance(self.anchor_fraction, (int, float)) or not 0.0 <= self.anchor_fraction <= 1.0:
            raise InputError("cycle options", f"anchor_fraction must be in [0, 1], got {self.anchor_fraction!r}")
        if not integer(self.min_gap) or self.min_gap < 2:
            raise InputError("cycle options", f"min_gap must be an integer >= 2 (one frame between), got "
                                              f"{self.min_gap!r}")
        if self.max_gap is not None and (not integer(self.max_gap) or self.max_gap < self.min_gap):
            raise InputError("cycle options", f"max_gap must be an integer >= min_gap {self.min_gap} or null, got "
                                              f"{self.max_gap!r}")
        if isinstance(self.gap_power, bool) or not isinstance(self.gap_power, (int, float)) \
                or not 0.0 <= self.gap_power <= 8.0:
            raise InputError("cycle options", f"gap_power must be a number in [0, 8], got {self.gap_power!r}")
        if not isinstance(self.both_directions, bool) or not integer(self.seed):
            raise InputError("cycle options", f"both_directions must be true or false and seed an integer, got "
                                              f"{self.both_directions!r} and {self.seed!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, object] | CycleSpec) -> CycleSpec:
        """A spec from a config mapping; unknown keys are an :class:`InputError` naming them."""
        if isinstance(options, CycleSpec):
            return options
        if not isinstance(options, Mapping):
            raise InputError("cycle options", f"expected a mapping such as {{'per_case': 64}}, got {options!r}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError("cycle options", f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


def cycle_triplets(
    num_frames: int, cyclic: bool = True, min_gap: int = 2, max_gap: int | None = None, both_directions: bool = True
) -> list[Triplet]:
    """Every triplet of a series of ``num_frames`` frames with a gap in ``[min_gap, max_gap]`` (module docstring).

    Ordered by start frame, then gap, then target frame; each backward triplet follows its forward one.

    Returns:
        ``[Triplet(start, end, frame, t), ...]``; empty when the series is too short for ``min_gap``.
    """
    max_gap = num_frames // 2 if max_gap is None else max_gap
    max_gap = min(max_gap, num_frames - 1)
    triplets = []
    starts = range(num_frames) if cyclic else range(num_frames - min_gap)
    for a in starts:
        for gap in range(min_gap, max_gap + 1):
            c = a + gap
            if not cyclic and c >= num_frames:
                break
            for k in range(1, gap):
                b = (a + k) % num_frames
                triplets.append(Triplet(a, c % num_frames, b, k / gap))
                if both_directions:
                    triplets.append(Triplet(c % num_frames, a, b, (gap - k) / gap))
    return triplets


def triplet_gap(triplet: Triplet, num_frames: int, cyclic: bool = True) -> int:
    """The gap in frames between a triplet's endpoints, along the direction that passes its target frame."""
    if not cyclic:
        return abs(triplet.end - triplet.start)
    forward = (triplet.end - triplet.start) % num_frames
    return forward if (triplet.frame - triplet.start) % num_frames < forward else num_frames - forward


def anchor_triplets(case: TripletCase) -> list[Triplet]:
    """The case's protocol triplets: ``(case.start, case.end, frame, t)`` for each of its targets, in order."""
    return [Triplet(case.start, case.end, int(frame), float(t)) for frame, t in case.targets]


def draw_triplets(anchor: Sequence[Triplet], cycle: Sequence[Triplet], spec: CycleSpec,
                  rng: np.random.Generator, cycle_gaps: Sequence[int] | None = None) -> list[Triplet]:
    """Mix the two pools as ``spec`` says: ``round(anchor_fraction * per_case)`` from ``anchor``, the rest from
    ``cycle``, each drawn without replacement while the pool lasts (then again from a fresh permutation). With
    ``spec.gap_power`` > 0 the ``cycle`` pool is drawn with weights ``(gap - 1) ** -gap_power``, ``cycle_gaps`` giving
    each triplet's gap (:func:`triplet_gap`).

    With ``per_case`` None: all of ``anchor`` (if ``anchor_fraction > 0``) then all of ``cycle`` (if
    ``anchor_fraction < 1``), in order.
    """
    if spec.per_case is None:
        return [*(anchor if spec.anchor_fraction > 0 else []), *(cycle if spec.anchor_fraction < 1 else [])]
    num_anchor = round(spec.anchor_fraction * spec.per_case) if cycle else spec.per_case
    num_anchor = num_anchor if anchor else 0
    weights = None
    if spec.gap_power and cycle:
        if cycle_gaps is None or len(cycle_gaps) != len(cycle):
            raise ValueError("gap_power needs the gap of every whole-cycle triplet (cycle_gaps)")
        weights = (np.asarray(cycle_gaps, dtype=np.float64) - 1.0) ** -float(spec.gap_power)
        weights /= weights.sum()
    drawn = []
    for pool, count, p in ((anchor, num_anchor, None), (cycle, spec.per_case - num_anchor, weights)):
        while count > 0 and pool:
            if p is None:
                order = rng.permutation(len(pool))[:count]
            else:
                order = rng.choice(len(pool), size=min(count, len(pool)), replace=False, p=p)
            drawn += [pool[i] for i in order]
            count -= len(order)
    return drawn


class CycleTripletDataset(Dataset):
    """A MONAI ``Dataset`` of whole-cycle (I0, I1, It, t) samples (module docstring).

    Args:
        cases: the cases; ``start``/``end``/``targets`` are the protocol (anchor) triplets.
        num_frames: per case, its number of frames ``T`` (from the header, before any voxel is read).
        spec: a :class:`CycleSpec` or its mapping.
        cyclic: whether the series are periodic (the cycle wraps around); one value, or one per case.
        cache: keep every frame of every case in memory.
        augment: random flips and endpoint swaps, for training only.

    Attributes:
        triplets: per case id, the drawn :class:`Triplet` list.
    """

    def __init__(self, cases: Sequence[TripletCase], num_frames: Sequence[int], spec: Mapping | CycleSpec,
                 cyclic: bool | Sequence[bool] = True, cache: bool = True, augment: bool = False):
        spec = CycleSpec.from_options(spec)
        cyclic = [cyclic] * len(cases) if isinstance(cyclic, bool) else list(cyclic)
        if not len(num_frames) == len(cyclic) == len(cases):
            raise ValueError(f"num_frames, cyclic: one value per case, got {len(num_frames)} and {len(cyclic)} for "
                             f"{len(cases)} cases")
        rng = np.random.default_rng(spec.seed)
        self.triplets = {}
        for case, frames, periodic in zip(cases, num_frames, cyclic):
            cycle = cycle_triplets(frames, periodic, spec.min_gap, spec.max_gap, spec.both_directions)
            gaps = [triplet_gap(tr, frames, periodic) for tr in cycle]
            self.triplets[case.case_id] = draw_triplets(anchor_triplets(case), cycle, spec, rng, gaps)
        index = [{CASE: case_id, START: tr.start, END: tr.end, FRAME: tr.frame, TIME: tr.t}
                 for case_id, triplets in self.triplets.items() for tr in triplets]
        logger.info("whole-cycle triplets: %d cases, %d samples (%s)", len(cases), len(index), spec)
        self.store = FrameStore(cases, cache=cache, all_frames=True)
        transforms = [LoadTripletd(self.store), *(augmentation() if augment else [])]
        super().__init__(data=index, transform=Compose(transforms))
