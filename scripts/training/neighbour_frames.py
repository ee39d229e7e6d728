"""Training samples of the neighbour refinement: the frozen student's frames of whole-cine jobs with their context.

For every series of a split and every factor ``k`` (default 2 and 4), the super-resolution job drops all but every
``k``-th frame of the (periodic) series, keeping frame 0 and with ``phases`` > 1 again keeping other first frames
(evenly spread over ``0 .. k - 1``: the same cine gives other pairs and other dropped frames); each dropped frame is one
sample: the frozen student's synthesis ``S`` from
its acquired pair ``(I_a, I_c)`` at ``t`` (warped as ``interpolate --upsample`` warps the kept frames: the warp
choice of the pair's span), the acquired frames before and after the pair ``(I_p, I_n)`` (wrapping round the cycle),
and the true frame. Series that keep fewer than 4 frames give no sample (their pairs have no context); with
``max_span``, neither do series whose pairs span more than that share of the cycle (the product does not refine them).

The student runs once per series and factor when the dataset is built; with ``cache_dir`` its frames are kept there
(one file per series, factor and phase, tagged with the student's weights and the grid), so a resumed or repeated run reads
them instead of synthesising again.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Randomizable
from tqdm import tqdm

from scripts.datasets.dropped_frames import acquired_pairs, series_cases
from scripts.networks.neighbours import pair_context
from scripts.networks.refine import warm_start
from scripts.utils.atomic import atomic_file
from scripts.utils.errors import InputError

__all__ = ["NeighbourFrames", "neighbour_frames"]

logger = logging.getLogger(__name__)

REVERSED = [0, 4, 3, 2, 1]
"""Channel order of the input with time reversed: (S, I_p, I_a, I_c, I_n) -> (S, I_n, I_c, I_a, I_p), t -> 1 - t."""


def _digest(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


@torch.no_grad()
def series_samples(series: np.ndarray, factor: int, student: torch.nn.Module,
                   warp_choice: Callable[[float], str] | None = None, phase: int = 0) -> dict[str, torch.Tensor]:
    """The samples of one series ``(X, Y, Z, T)`` in [0, 1] at one factor, keeping frames ``phase``,
    ``phase + factor``, ... (the cycle is periodic: the series is rolled so that ``phase`` comes first).

    Returns:
        ``{"image": (M, 5, X, Y, Z) float16 (S, I_p, I_a, I_c, I_n), "target": (M, 1, X, Y, Z) float16,
        "t": (M,) float32, "span": (M,) float32}`` (``span``: the share of the cycle the sample's pair spans, one over
        the number of kept frames); M = 0 where the series keeps fewer than 4 frames.
    """
    volumes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(series, -1, 0), dtype=np.float32))[:, None]
    volumes = volumes.roll(-int(phase), dims=0)
    num_frames = volumes.shape[0]
    kept = list(range(0, num_frames, factor))
    images, targets, times = [], [], []
    if warp_choice is not None:
        student.image_warp = warp_choice(1.0 / len(kept))
    for a, c, dropped in acquired_pairs(num_frames, factor, cyclic=True):
        around = pair_context(a, num_frames, factor, cyclic=True)
        if around is None:
            continue
        ts = torch.tensor([(f - a) / (c - a) for f in dropped], dtype=torch.float32)
        i0, i1 = volumes[a][None], volumes[c % num_frames][None]
        synthesised = student.interpolate_series(i0, i1, ts).float().clamp(0, 1)
        context = [volumes[around[0]], volumes[a], volumes[c % num_frames], volumes[around[1]]]
        for j, frame in enumerate(dropped):
            images.append(torch.cat([synthesised[j], *context]))
            targets.append(volumes[frame])
        times.append(ts)
    if not images:
        shape = volumes.shape[2:]
        return {"image": torch.zeros((0, 5, *shape), dtype=torch.float16),
                "target": torch.zeros((0, 1, *shape), dtype=torch.float16), "t": torch.zeros(0),
                "span": torch.zeros(0)}
    times = torch.cat(times)
    return {"image": torch.stack(images).half(), "target": torch.stack(targets).half(), "t": times,
            "span": torch.full_like(times, 1.0 / len(kept))}


def _spatial_axes(axes: Sequence[int]) -> list[int]:
    """``axes`` as a list of spatial axes (0, 1, 2 = x, y, z). Raises: InputError naming ``flip_axes`` otherwise."""
    if isinstance(axes, (str, bytes)) or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= 2
                                                 for a in axes):
        raise InputError("flip_axes", f"expected spatial axes among 0, 1, 2, got {axes!r}")
    return list(axes)


class NeighbourFrames(Randomizable, torch.utils.data.Dataset):
    """Samples ``{"image": (5, X, Y, Z), "target": (1, X, Y, Z), "t": ()}`` float32 (module docstring).

    Args:
        samples: outputs of :func:`series_samples` (one, or a sequence of them, read in order without being copied
            into one tensor).
        augment: draw, per sample, a reversal of time (the input's order reversed, ``t -> 1 - t``) and a flip of each
            of ``flip_axes``, each with probability 1/2 (and with ``swap``, a swap of the two in-plane axes).
        patch: with ``augment``, an in-plane patch of this size at a random place instead of the whole plane (faster
            steps; the refinement is convolutional); None for the whole plane.
        flip_axes: the spatial axes flipped (0, 1, 2 = x, y, z); the default flips in plane only.
        swap: also swap x and y with probability 1/2 (drawn after the flips, so the default draws are unchanged).
    """

    def __init__(self, samples: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
                 augment: bool = False, patch: int | None = None, flip_axes: Sequence[int] = (0, 1),
                 swap: bool = False):
        self.parts = [samples] if isinstance(samples, Mapping) else [p for p in samples if len(p["t"])]
        self._ends = np.cumsum([len(p["t"]) for p in self.parts]).tolist()
        self.augment = bool(augment)
        self.patch = None if patch is None else int(patch)
        self.flip_axes = [a + 1 for a in _spatial_axes(flip_axes)]  # after the channel axis
        self.swap = bool(swap)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def randomize(self, data=None) -> None:
        self._reverse, self._flips = self.R.rand() < 0.5, self.R.rand(len(self.flip_axes)) < 0.5
        self._swap = self.swap and self.R.rand() < 0.5
        self._corner = self.R.rand(2)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        part = bisect.bisect_right(self._ends, index)
        samples, index = self.parts[part], index - (self._ends[part - 1] if part else 0)
        image = samples["image"][index].float()
        target = samples["target"][index].float()
        t = samples["t"][index].clone()
        if self.augment:
            self.randomize()
            if self._reverse:
                image, t = image[REVERSED], 1 - t
            for axis, flip in zip(self.flip_axes, self._flips):
                if flip:
                    image, target = image.flip(axis), target.flip(axis)
            if self._swap:
                image, target = image.transpose(1, 2), target.transpose(1, 2)
            if self.patch is not None:
                x0, y0 = (int(c * (max(s - self.patch, 0) + 1)) for c, s in zip(self._corner, image.shape[1:3]))
                image = image[:, x0:x0 + self.patch, y0:y0 + self.patch]
                target = target[:, x0:x0 + self.patch, y0:y0 + self.patch]
        return {"image": image.contiguous(), "target": target.contiguous(), "t": t}


def neighbour_frames(
    dataset_dir: str | os.PathLike,
    student: torch.nn.Module,
    student_weights: str | os.PathLike,
    split: str = "train",
    dataset: str = "acdc",
    spatial_size: Sequence[int] = (96, 96, 8),
    factors: Sequence[int] = (2, 4),
    warp_choice: Callable[[float], str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    phases: int = 1,
    max_span: float | None = None,
    augment: bool = False,
    patch: int | None = None,
    flip_axes: Sequence[int] = (0, 1),
    swap: bool = False,
    options: Mapping[str, object] | None = None,
) -> NeighbourFrames:
    """The :class:`NeighbourFrames` of a dataset's split (module docstring).

    Args:
        dataset_dir, dataset, split, options: the series (:func:`~scripts.datasets.dropped_frames.series_cases`;
            ``train_range`` / ``test_range`` hold a validation split out of ACDC's training patients).
        student: the student network; student_weights: its state dict (read with ``weights_only=True``).
        spatial_size: the protocol grid the series are brought to.
        factors: keep every k-th frame, for each k.
        warp_choice: the image warp from the share of the series a pair spans (the inference config's), or None.
        cache_dir: where the student's frames are kept between runs, or None.
        phases: how many first kept frames per factor, evenly spread over ``0 .. k - 1`` (at most ``k``): 1 keeps
            frames 0, k, 2k, ... only (the benchmark's job); 2 also keeps ``k // 2``, ``k // 2 + k``, ...
        max_span: leave out series whose pairs span more than this share of the cycle (one over the number of kept
            frames; the inference config's ``neighbour_refiner#max_span``), or None for every series.
        augment, patch, flip_axes, swap: see :class:`NeighbourFrames`.

    Raises:
        InputError: naming ``factors`` when one is not a whole number >= 2, ``phases`` when not a whole number >= 1,
            ``max_span`` when not in (0, 1], ``flip_axes`` when not spatial axes, or the student's weights when
            missing; before any series is read.
    """
    factors = [factors] if isinstance(factors, int) else list(factors)
    if not factors or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in factors):
        raise InputError("factors", f"expected whole numbers >= 2 (keep every k-th frame), got {factors!r}")
    if isinstance(phases, bool) or not isinstance(phases, int) or phases < 1:
        raise InputError("phases", f"expected a whole number >= 1 (first kept frames per factor), got {phases!r}")
    if max_span is not None and not 0 < float(max_span) <= 1:
        raise InputError("max_span", f"expected a share of the cycle in (0, 1], got {max_span!r}")
    _spatial_axes(flip_axes)
    if not Path(student_weights).is_file():
        raise InputError(student_weights, "the student's weights file was not found")
    cases = series_cases(dataset, dataset_dir, split, spatial_size, **dict(options or {}))
    tag = f"{_digest(student_weights)}_{'x'.join(str(int(s)) for s in spatial_size)}"
    network = None
    parts = []
    for number, (name, load) in enumerate(tqdm(cases, desc=f"student frames ({split})", unit="series",
                                                disable=None), start=1):
        logger.info("student frames of %s (%d of %d)", name, number, len(cases))
        series = None  # read once per series, and only when a factor is not cached
        for factor, phase in ((k, i * k // min(phases, k)) for k in factors for i in range(min(phases, k))):
            stem = f"{name}_x{factor}" + (f"p{phase}" if phase else "")
            path = None if cache_dir is None else Path(cache_dir) / f"{stem}_{tag}.pt"
            part = torch.load(path, weights_only=True) if path is not None and path.is_file() else None
            if part is None or "span" not in part:  # files written before spans were kept are made again
                if network is None:
                    network = warm_start(student, student_weights).eval()
                series = load() if series is None else series
                part = series_samples(series, factor, network, warp_choice, phase)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_file(path, overwrite=True) as tmp:  # a stale file of the cache
                        torch.save(part, tmp)
            if max_span is None or not len(part["span"]) or float(part["span"][0]) <= float(max_span) + 1e-6:
                parts.append(part)
    dataset = NeighbourFrames(parts, augment=augment, patch=patch, flip_axes=flip_axes, swap=swap)
    logger.info("%d samples from %d series (%s, factors %s, %d phases)", len(dataset), len(cases), split, factors,
                phases)
    return dataset
