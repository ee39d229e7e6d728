"""Training and evaluation samples (I0, I1, It, t) from 4D series: the machinery every dataset kind shares.

A dataset kind (ACDC, a folder of 4D NIfTI, 4D-Lung) only describes its cases, each as a :class:`TripletCase`:

    TripletCase(case_id, start, end, targets, load)

- ``case_id``: a name for logs and metrics (``"patient001"``);
- ``start`` / ``end``: the frame indices of I0 (t = 0) and I1 (t = 1);
- ``targets``: ``(frame, t)`` pairs, the frames to synthesise and their time (:func:`frames_between` computes them);
- ``load``: a picklable callable (a module-level function or ``functools.partial`` of one, so DataLoader workers can
  use it) returning the case's preprocessed series, ``(X, Y, Z, T)`` float32 in [0, 1], every case of a dataset on
  the same ``(X, Y, Z)`` grid.

:class:`TripletDataset` turns a list of them into a MONAI ``Dataset`` whose items are

    {"image": (2, X, Y, Z) float32 = (I0, I1), "target": (1, X, Y, Z) float32 = It,
     "t": () float32, "case": str, "frame": int}

so the default collate gives ``image`` (B, 2, X, Y, Z), ``target`` (B, 1, X, Y, Z), ``t`` (B,), ``case`` a list of
B names and ``frame`` (B,). One item per target frame.

Memory: the items themselves are small index dicts ``{"case", "frame", "t"}``; a transform resolves them against a
:class:`FrameStore` that holds, per case, one copy of only the frames the samples use (I0, I1 and the targets), as
torch tensors (shared, not copied, by forked DataLoader workers). With ``cache=False`` nothing is kept and every item
loads its case again (slow, for series too large to hold).

Optional training augmentation (``augment=True``, off by default): each of the three spatial axes flipped with
probability 1/2, the same flips for I0, I1 and It; and the endpoints swapped with probability 1/2, which maps t to
1 - t (It lies at 1 - t from the old I1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import (
    Compose,
    RandFlipd,
    RandomizableTransform,
    ToTensord,
    Transform,
)

__all__ = [
    "FrameStore",
    "LoadTripletd",
    "RandSwapEndpointsd",
    "TripletCase",
    "TripletDataset",
    "augmentation",
    "frames_between"
]

logger = logging.getLogger(__name__)

IMAGE, TARGET, TIME, CASE, FRAME = "image", "target", "t", "case", "frame"
START, END = "start", "end"


class TripletCase(NamedTuple):
    """One 4D case: which frames are I0, I1 and the targets, and how to load its preprocessed series.

    Attributes:
        case_id: unique name of the case.
        start: frame index of I0 (t = 0), 0-based.
        end: frame index of I1 (t = 1), 0-based, ``!= start``.
        targets: ``(frame, t)`` for every frame to synthesise, ``0 < t < 1``.
        load: ``load() -> (X, Y, Z, T)`` float32 array in [0, 1]; picklable.
    """

    case_id: str
    start: int
    end: int
    targets: Sequence[tuple[int, float]]
    load: Callable[[], np.ndarray]


def frames_between(start: int, end: int, num_frames: int, cyclic: bool = False) -> list[tuple[int, float]]:
    """The frames strictly between ``start`` and ``end`` with their time ``t`` in (0, 1).

    With ``start < end`` both modes give frames ``start+1 .. end-1`` and ``t = (f - start) / (end - start)``.
    When ``end < start``:

    - ``cyclic=False`` (a series with a beginning and an end): the frames between them, from ``start`` down to
      ``end``, with the same formula (numerator and denominator both negative), i.e. I0 -> I1 runs backwards in time;
    - ``cyclic=True`` (a periodic series such as a cardiac cine): forward from ``start`` through the last frame and
      around to ``end``, ``t = ((f - start) mod T) / ((end - start) mod T)``.

    Returns:
        ``[(frame, t), ...]`` ordered from I0 towards I1; empty when the endpoints are neighbours.
    """
    if not (0 <= start < num_frames and 0 <= end < num_frames) or start == end:
        raise ValueError(f"endpoints must be two different frames in 0..{num_frames - 1}, got {start} and {end}")
    if cyclic:
        steps = (end - start) % num_frames
        return [((start + k) % num_frames, k / steps) for k in range(1, steps)]
    step = 1 if end > start else -1
    return [(f, (f - start) / (end - start)) for f in range(start + step, end, step)]


class FrameStore:
    """Per case, the preprocessed frames its samples use: I0, I1 and the targets (one copy each).

    Args:
        cases: the cases; ``case_id`` must be unique.
        cache: load every case now and keep its frames (default); ``False`` loads a case each time it is asked for.
        all_frames: keep every frame of each series, not only I0, I1 and the targets (for samplers that draw their
            endpoints from the whole series, :mod:`scripts.datasets.cycle_triplets`).
    """

    def __init__(self, cases: Sequence[TripletCase], cache: bool = True, all_frames: bool = False):
        self.all_frames = all_frames
        self.cases = {case.case_id: case for case in cases}
        if len(self.cases) != len(cases):
            raise ValueError("case_id values must be unique")
        self.cache: dict[str, tuple[torch.Tensor, dict[int, int]]] | None = None
        if cache:
            began = time.perf_counter()
            self.cache = {case_id: self._load(case) for case_id, case in self.cases.items()}
            shapes = {frames.shape[1:] for frames, _ in self.cache.values()}
            if len(shapes) > 1:
                raise ValueError(f"cases are on different grids {sorted(shapes)}; a dataset needs one shape to batch")
            megabytes = sum(frames.nbytes for frames, _ in self.cache.values()) / 2**20
            seconds = time.perf_counter() - began
            logger.info("cached %d cases (%.0f MiB of frames) in %.1f s", len(self.cache), megabytes, seconds)

    def _load(self, case: TripletCase) -> tuple[torch.Tensor, dict[int, int]]:
        """Load ``case`` and keep its used frames as a ``(K, X, Y, Z)`` tensor with a frame -> row map."""
        series = case.load()
        used = sorted({case.start, case.end, *(frame for frame, _ in case.targets)})
        if self.all_frames and series.ndim == 4:
            used = sorted({*used, *range(series.shape[3])})
        if series.ndim != 4 or used[-1] >= series.shape[3]:
            raise ValueError(f"{case.case_id}: load() gave shape {series.shape}; frames {used} must exist")
        frames = torch.from_numpy(np.ascontiguousarray(np.moveaxis(series[..., used], -1, 0), dtype=np.float32))
        return frames, {frame: row for row, frame in enumerate(used)}

    def triplet(
        self, case_id: str, frame: int, start: int | None = None, end: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` (2, X, Y, Z) = (I0, I1) and ``target`` (1, X, Y, Z) = the frame ``frame`` of case ``case_id``.

        I0 and I1 are the case's ``start`` and ``end`` frames unless ``start`` / ``end`` name other stored frames.
        """
        case = self.cases[case_id]
        frames, rows = self.cache[case_id] if self.cache is not None else self._load(case)
        start = case.start if start is None else start
        end = case.end if end is None else end
        image = torch.stack([frames[rows[start]], frames[rows[end]]])
        return image, frames[rows[frame]][None].clone()


class LoadTripletd(Transform):
    """Resolve an index item ``{"case", "frame", "t"}`` to a sample (module docstring) from a :class:`FrameStore`.

    An item that also names its endpoints (``"start"``, ``"end"``: frames the store holds) uses them instead of the
    case's, and keeps them in the sample.
    """

    def __init__(self, store: FrameStore):
        self.store = store

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        ends = {key: data[key] for key in (START, END) if key in data}
        image, target = self.store.triplet(data[CASE], data[FRAME], ends.get(START), ends.get(END))
        return {
            IMAGE: image,
            TARGET: target,
            TIME: torch.tensor(data[TIME], dtype=torch.float32),
            CASE: data[CASE],
            FRAME: data[FRAME],
            **ends,
        }


class RandSwapEndpointsd(RandomizableTransform):
    """With probability ``prob`` swap I0 and I1 (the two channels of ``image``) and replace ``t`` by ``1 - t``."""

    def __init__(self, prob: float = 0.5):
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        self.randomize(None)
        d = dict(data)
        if self._do_transform:
            d[IMAGE] = d[IMAGE].flip(0)
            d[TIME] = 1 - d[TIME]
        return d


def augmentation() -> list[Transform]:
    """Random flips of every spatial axis (shared by image and target) and endpoint swaps; plain tensors out."""
    flips = [RandFlipd(keys=(IMAGE, TARGET), prob=0.5, spatial_axis=axis) for axis in range(3)]
    return [*flips, RandSwapEndpointsd(prob=0.5), ToTensord(keys=(IMAGE, TARGET), track_meta=False)]


class TripletDataset(Dataset):
    """A MONAI ``Dataset`` of (I0, I1, It, t) samples, one per target frame of each case (module docstring).

    Args:
        cases: the cases (:class:`TripletCase`).
        cache: keep one copy of each case's used frames in memory (see :class:`FrameStore`).
        augment: random flips and endpoint swaps, for training only.

    Attributes:
        store: the :class:`FrameStore`.
    """

    def __init__(self, cases: Sequence[TripletCase], cache: bool = True, augment: bool = False):
        index = [
            {CASE: case.case_id, FRAME: int(frame), TIME: float(t)} for case in cases for frame, t in case.targets
        ]
        self.store = FrameStore(cases, cache=cache)
        transforms = [LoadTripletd(self.store), *(augmentation() if augment else [])]
        super().__init__(data=index, transform=Compose(transforms))
