"""The evaluation cases: one per subject, its preprocessed series, endpoints, targets and (on phantoms) true motion."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.transforms import ResizeWithPadOrCrop

from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)


# --- samples ----------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One test series: its endpoints, every target frame, and (phantoms) the true displacements.

    Attributes:
        case: the case name (``patient091``).
        i0, i1: (1, 1, X, Y, Z) endpoints in [0, 1].
        targets: (N, 1, X, Y, Z) true volumes at ``ts``.
        ts: (N,) times in (0, 1).
        frames: the N frame indices of the targets in the series.
        truth: (N, 3, X, Y, Z) true displacements I0 -> target in voxels (``Warp`` semantics), or None.
        span: the share of the series between I0 and I1 (:func:`~scripts.inference.warp_choice.span_fraction`), or
            None where the subject does not know its series.
        context: (2, 1, X, Y, Z) the acquired frames before I0 and after I1 (a whole-cine job), or None.
        phases: where I0 and I1 lie in their cycle, shares of the series before them (frames ``a``, ``c`` of ``T``:
            ``(a / T, c / T)``; ``c = T`` for a pair that wraps around to frame 0), or None where the subject does not
            know its series.
    """

    case: str
    i0: torch.Tensor
    i1: torch.Tensor
    targets: torch.Tensor
    ts: torch.Tensor
    frames: list[int]
    truth: torch.Tensor | None = None
    span: float | None = None
    context: torch.Tensor | None = None
    phases: tuple[float, float] | None = None

    def chunks(self, max_batch: int | None) -> list[slice]:
        """The targets in slices of at most ``max_batch`` (all at once when None)."""
        n = len(self.frames)
        step = max_batch or n
        return [slice(k, min(k + step, n)) for k in range(0, n, step)]

    def endpoints(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """I0 and I1 broadcast to ``n`` items, (n, 1, X, Y, Z) each (views, no copies)."""
        return self.i0.expand(n, -1, -1, -1, -1), self.i1.expand(n, -1, -1, -1, -1)


def phantom_truth(case_dir: Path, frames: Sequence[int], size: Sequence[int]) -> torch.Tensor | None:
    """The true displacements ED -> ``frames`` of a phantom case, on the protocol grid; None without ``truth/``.

    The phantom's truth lives on the written grid; the ACDC protocol only centre-crops and zero-pads (never resamples),
    so the same ``ResizeWithPadOrCrop`` moves the field onto the protocol grid with its vectors unchanged, and padding
    gets displacement 0. Returns (N, 3, X, Y, Z) float32 in voxels.
    """
    if not (case_dir / "truth").is_dir():
        return None
    from scripts.phantoms.base import load_truth  # only phantoms carry a truth

    truth = load_truth(case_dir)[list(frames)]  # (N, 3, X', Y', Z')
    n = truth.shape[0]
    fitted = ResizeWithPadOrCrop(spatial_size=tuple(size))(truth.reshape(n * 3, *truth.shape[2:]))
    return torch.as_tensor(np.asarray(fitted), dtype=torch.float32).reshape(n, 3, *size)


def eval_cases(dataset, truth_dir: str | os.PathLike | None = None) -> Iterator[Case]:
    """Group an (I0, I1, It, t) dataset's items (one per target frame, a case's items consecutive) into subjects.

    With ``truth_dir`` (an ACDC-layout folder), a case folder holding ``truth/`` adds its true displacements.

    Raises:
        InputError: a case's items are not consecutive (its frames would be scored as two subjects).
    """
    done: set[str] = set()
    items: list[dict] = []

    def emit() -> Case:
        case = items[0]["case"]
        if case in done:
            raise InputError("dataset", f"the items of case {case} are not consecutive")
        done.add(case)
        image = items[0]["image"][None]
        frames = [int(item["frame"]) for item in items]
        size = tuple(image.shape[2:])
        truth = None if truth_dir is None else phantom_truth(Path(truth_dir) / case, frames, size)
        return Case(
            case=case,
            i0=image[:, :1],
            i1=image[:, 1:2],
            targets=torch.stack([torch.as_tensor(item["target"]) for item in items]),
            ts=torch.tensor([float(item["t"]) for item in items], dtype=torch.float32),
            frames=frames,
            truth=truth,
        )

    for index in range(len(dataset)):
        item = dataset[index]
        if items and item["case"] != items[0]["case"]:
            yield emit()
            items = []
        items.append(item)
    if items:
        yield emit()


def case_to(subject: Case, device: torch.device) -> Case:
    move = lambda x: None if x is None else x.to(device)
    return Case(subject.case, move(subject.i0), move(subject.i1), move(subject.targets), move(subject.ts),
                   subject.frames, move(subject.truth), subject.span, move(subject.context))
