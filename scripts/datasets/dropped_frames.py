"""Whole series of a dataset, which frames a temporal super-resolution job drops from them, and the acquired
neighbours each dropped frame is synthesised from (the super-resolution benchmark and the neighbour refinement's
training samples)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from scripts.datasets.acdc import acdc_case, acdc_cases
from scripts.datasets.nifti4d import nifti4d_series
from scripts.datasets.registry import check_options
from scripts.utils.errors import InputError

__all__ = ["acquired_pairs", "series_cases"]


def acquired_pairs(num_frames: int, factor: int, cyclic: bool = True) -> list[tuple[int, int, list[int]]]:
    """The acquired neighbours of every dropped frame when every ``factor``-th frame is kept.

    Returns:
        ``[(a, c, [dropped frames between a and c]), ...]`` in order; with ``cyclic`` the last pair runs from the last
        acquired frame to frame 0 (``c`` is given as ``T``, one cycle on), otherwise its frames are left out.
    """
    kept = list(range(0, num_frames, factor))
    ends = [*kept[1:], num_frames] if cyclic else kept[1:]
    return [(a, c, list(range(a + 1, c))) for a, c in zip(kept, ends) if c - a > 1]


def series_cases(dataset: str, dataset_dir: str | os.PathLike, split: str,
                 spatial_size: Sequence[int], **options) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """``[(case name, load)]`` of a dataset's split; ``load()`` gives the protocol series ``(X, Y, Z, T)`` in [0, 1].

    ``options`` go to the kind's folder lister (``train_range`` / ``test_range`` for acdc, ``test_fraction`` and
    ``motion_crop`` for nifti4d: :func:`~scripts.datasets.nifti4d.nifti4d_series`).

    Raises:
        InputError: naming the kind when it is not ``acdc`` or ``nifti4d`` (whole cycles), ``dataset options`` for an
            option its lister does not take (before any file is read), or as the dataset does.
    """
    if dataset == "acdc":
        check_options(dataset, acdc_cases, options)
        cases = [acdc_case(folder, spatial_size) for folder in acdc_cases(dataset_dir, split, **options)]
    elif dataset == "nifti4d":
        check_options(dataset, nifti4d_series, options)
        cases = nifti4d_series(dataset_dir, split, spatial_size, **options)
    else:
        raise InputError("dataset", f"must be one of acdc, nifti4d (whole series); got {dataset!r}")
    return [(case.case_id, case.load) for case in cases]
