"""4D-Lung respiratory 4D CT (TCIA): folder layout, the UVI-Net protocol, and the (I0, I1, It, t) dataset.

Layout (TCIA's download, or a site's data arranged the same way)::

    dataset_dir/<patient>/<study>/<series per phase>/*.dcm

A case is one 4D CT, i.e. one study folder, read by :func:`~scripts.io.dicom_read.read_dicom_series` (phases
ordered by their phase tag, slices by position, HU from RescaleSlope/Intercept). 4D-Lung holds 20 patients with
several 4D CTs each; UVI-Net (and the paper) count 82 4D CTs and split them in sorted order, the first 68 for
training and the last 14 for testing, so the split is by case index (``num_train``), as UVI-Net's
``patients[:68]`` does (a patient folder of UVI-Net's preprocessed data is one 4D CT).

Protocol (after UVI-Net): the phases 0-5 of each case (only those are read), each resized to
``spatial_size`` (128^3) with MONAI ``Resize`` (trilinear, anisotropic: the whole field of view onto a fixed grid,
like UVI-Net's ``F.interpolate``; ``Spacing`` + ``ResizeWithPadOrCrop`` would keep the aspect ratio but crop or pad
the body differently per scanner), clipped to [-1400, 200] HU, then min-max to [0, 1] (one scale per case by
default, UVI-Net's per-volume scale with ``per_frame=True``; see :mod:`scripts.transforms.intensity`). I0 = phase 0
(end-inhale), I1 = phase 5 (end-exhale), targets phases 1-4 at t = 0.2, 0.4, 0.6, 0.8. Voxel axes stay those of the
files (axis 0 along the image rows, axis 2 from feet to head for an axial stack); UVI-Net's bed removal and rot90 are
not applied.

Memory: the dataset keeps one preprocessed copy of phases 0-5 per case (6 x 128^3 float32 = 48 MiB) through
:class:`~scripts.datasets.triplets.FrameStore`; reading a case needs its six full-resolution phases once
(~1 GB for 512 x 512 x 150 slices).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.transforms import Resize

from scripts.datasets.protocol import dataset_root
from scripts.datasets.triplets import TripletCase, TripletDataset, frames_between
from scripts.io.dicom_read import read_dicom_series
from scripts.transforms.intensity import normalise_frames
from scripts.utils.errors import InputError

__all__ = ["lung4d_case", "lung4d_cases", "lung4d_dataset", "lung4d_protocol_series"]

logger = logging.getLogger(__name__)

LAYOUT = "dataset_dir/<patient>/<study>/<series per phase>/*.dcm (TCIA 4D-Lung layout)"
HU_WINDOW = (-1400.0, 200.0)
START_PHASE, END_PHASE = 0, 5
NUM_TRAIN = 68


def lung4d_cases(dataset_dir: str | os.PathLike, split: str = "all", num_train: int = NUM_TRAIN) -> list[Path]:
    """The case folders (``<patient>/<study>``) of ``dataset_dir`` in one split, in sorted order.

    Args:
        dataset_dir: the folder of patient folders.
        split: ``"train"`` (the first ``num_train`` cases), ``"test"`` (the rest) or ``"all"``.
        num_train: number of training cases (68 of 4D-Lung's 82).

    Raises:
        InputError: naming ``dataset_dir`` when it is not a folder, has no ``<patient>/<study>`` folder, or none in
            ``split``; naming ``split`` when it is not one of the three.
    """
    root = dataset_root(dataset_dir, split, LAYOUT)
    cases = sorted(study for patient in root.iterdir() if patient.is_dir() and not patient.name.startswith(".")
                   for study in patient.iterdir() if study.is_dir() and not study.name.startswith("."))
    if not cases:
        raise InputError(root, f"holds no <patient>/<study> folder; expected {LAYOUT}")
    chosen = {"all": cases, "train": cases[:num_train], "test": cases[num_train:]}[split]
    if not chosen:
        raise InputError(root, f"holds {len(cases)} cases, none in the {split} split (the first {num_train} train)")
    return chosen


def lung4d_protocol_series(
    folder: str | os.PathLike, spatial_size: Sequence[int] = (128, 128, 128), per_frame: bool = False
) -> np.ndarray:
    """Read phases 0-5 of one 4D CT and apply the protocol (module docstring).

    A module-level function, so ``functools.partial`` of it is a picklable case loader.

    Returns:
        ``(X', Y', Z', 6)`` float32 in [0, 1] on the ``spatial_size`` grid.

    Raises:
        InputError: naming the folder or file when the DICOM cannot be read (see ``read_dicom_series``), has fewer
            than 6 phases, or is constant after clipping.
    """
    series = read_dicom_series(folder, frames=range(END_PHASE + 1))
    resized = Resize(tuple(spatial_size), mode="trilinear")(np.moveaxis(series.array, -1, 0)).numpy()
    clipped = np.clip(np.moveaxis(resized, 0, -1), *HU_WINDOW)
    normalised, _ = normalise_frames(clipped, folder, per_frame=per_frame)
    return np.ascontiguousarray(normalised, dtype=np.float32)


def lung4d_case(
    folder: str | os.PathLike, spatial_size: Sequence[int] = (128, 128, 128), per_frame: bool = False
) -> TripletCase:
    """Describe one 4D CT as a :class:`~scripts.datasets.triplets.TripletCase` (nothing is read yet).

    The case id is ``<patient>_<study>``; I0 = phase 0, I1 = phase 5, targets phases 1-4 at t = 0.2 .. 0.8.
    """
    folder = Path(folder)
    return TripletCase(
        case_id=f"{folder.parent.name}_{folder.name}",
        start=START_PHASE,
        end=END_PHASE,
        targets=frames_between(START_PHASE, END_PHASE, END_PHASE + 1),
        load=functools.partial(lung4d_protocol_series, folder, tuple(spatial_size), per_frame),
    )


def lung4d_dataset(dataset_dir: str | os.PathLike, split: str = "train", spatial_size: Sequence[int] = (128, 128, 128),
                   cache: bool = True, augment: bool = False, per_frame: bool = False,
                   num_train: int = NUM_TRAIN) -> TripletDataset:
    """The 4D-Lung (I0 = phase 0, I1 = phase 5, It, t) dataset of one split, for bundle configs (``_target_``).

    Args:
        dataset_dir: the folder of patient folders.
        split: ``"train"``, ``"test"`` or ``"all"``.
        spatial_size: the protocol grid.
        cache: hold each case's phases 0-5 in memory (see :class:`~scripts.datasets.triplets.FrameStore`).
        augment: random flips and endpoint swaps (training only).
        per_frame: UVI-Net's per-volume min-max instead of one scale per case.
        num_train: the first ``num_train`` cases are the training split.

    Returns:
        a :class:`~scripts.datasets.triplets.TripletDataset` yielding ``{"image": (2, X, Y, Z), "target": (1, X, Y, Z),
        "t": (), "case": str, "frame": int}``, four items per case.
    """
    cases = [lung4d_case(folder, spatial_size, per_frame) for folder in lung4d_cases(dataset_dir, split, num_train)]
    logger.info("4D-Lung %s split: %d cases, %d target frames", split, len(cases), 4 * len(cases))
    return TripletDataset(cases, cache=cache, augment=augment)
