"""A site's own 4D series: a folder of 4D NIfTI files, each one case (dataset kind ``nifti4d``).

Layout::

    dataset_dir/<name>.nii.gz      (X, Y, Z, T), or <name>.nii
    dataset_dir/<name>.json        optional: {"start_frame": 0, "end_frame": 11, "cyclic": false}

Endpoints: I0 = ``start_frame``, I1 = ``end_frame`` (0-based; negative counts from the end as in Python); without a
sidecar (or a key) the first and the last frame. The targets are the frames strictly between,
``t = (f - start) / (end - start)``; with ``end < start`` they run backwards in time, unless ``"cyclic": true``
(a periodic series such as a cardiac cine), where they run forward through the end of the series and around
(:func:`~scripts.datasets.triplets.frames_between`).

Preprocessing: the ACDC protocol (:func:`~scripts.datasets.protocol.protocol_frames`) with ``spatial_size`` an argument;
``motion_crop`` centres it on the box where the series moves (full field-of-view cines), resampled in plane to
``training_spacing`` when the series' pixels are much finer or coarser, as inference's motion region does.

Split: deterministic, by name. Cases sorted by file name; the last ``ceil(test_fraction * n)`` are ``"test"``, the
others ``"train"``; ``"all"`` (the default: fine-tuning on everything a site has) takes every case. Adding files
can move a case between splits; name files so that new cases sort last if that matters.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.datasets.cycle_triplets import CycleTripletDataset
from scripts.datasets.protocol import SPLITS, load_protocol_series
from scripts.datasets.triplets import TripletCase, TripletDataset, frames_between
from scripts.io.nifti_read import frame_endpoints, nifti_4d_shape, nifti_stem
from scripts.utils.args import parse_bool
from scripts.utils.errors import InputError

__all__ = ["nifti4d_case", "nifti4d_cases", "nifti4d_dataset", "nifti4d_series"]

logger = logging.getLogger(__name__)

def nifti4d_cases(dataset_dir: str | os.PathLike, split: str = "all", test_fraction: float = 0.1) -> list[Path]:
    """The 4D NIfTI files of ``dataset_dir`` in one split, sorted by name (module docstring).

    Raises:
        InputError: naming the folder when it is missing, holds no NIfTI file, holds two files for one case name,
            or the split is empty; naming ``split`` / ``test_fraction`` when invalid.
    """
    if split not in SPLITS:
        raise InputError("split", f"must be one of {SPLITS}, got {split!r}")
    if not 0 <= test_fraction < 1:
        raise InputError("test_fraction", f"must be in [0, 1), got {test_fraction}")
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(root, "is not a folder; expected a folder of 4D NIfTI files (<name>.nii.gz, <name>.nii)")
    by_name: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        name = nifti_stem(path)
        if name is None or not path.is_file():
            continue
        if name in by_name:
            raise InputError(root, f"{by_name[name].name} and {path.name} are both case {name!r}; keep one")
        by_name[name] = path
    if not by_name:
        raise InputError(root, "holds no .nii.gz or .nii file; expected one 4D NIfTI per case")
    paths = [by_name[name] for name in sorted(by_name)]
    if split == "all":
        return paths
    num_test = math.ceil(test_fraction * len(paths))
    chosen = paths[len(paths) - num_test :] if split == "test" else paths[: len(paths) - num_test]
    if not chosen:
        raise InputError(
            root,
            f"its {len(paths)} case(s) leave the {split} split empty at test_fraction {test_fraction}; "
            "use split='all' or add cases",
        )
    return chosen


def _sidecar(path: Path) -> tuple[Path, dict]:
    """The endpoint sidecar ``<name>.json`` next to ``path`` and its content (``{}`` when there is no sidecar)."""
    sidecar = path.with_name(f"{nifti_stem(path)}.json")
    if not sidecar.is_file():
        return sidecar, {}
    try:
        content = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(sidecar, f"cannot read it as JSON: {err}") from err
    if not isinstance(content, dict):
        raise InputError(sidecar, 'expected an object like {"start_frame": 0, "end_frame": 11}')
    if not isinstance(content.get("cyclic", False), bool):
        raise InputError(sidecar, f"cyclic must be true or false, got {content['cyclic']!r}")
    return sidecar, content


def nifti4d_case(
    path: str | os.PathLike, spatial_size: Sequence[int] = (128, 128, 32), per_frame: bool = False,
    motion_crop: bool = False,
    training_spacing: Sequence[float] | None = None,
    zoom_tolerance: float = 2.0,
) -> TripletCase:
    """Describe one 4D NIfTI (and its optional sidecar) as a :class:`~scripts.datasets.triplets.TripletCase`.

    Reads the header and the sidecar only; the voxels are read when the dataset loads the case (the crop centred on
    the box where the series moves with ``motion_crop``, resampled in plane to ``training_spacing`` where the series'
    spacing differs from it by more than ``zoom_tolerance``: :func:`~scripts.datasets.protocol.load_protocol_series`).

    Raises:
        InputError: naming the file for an unusable NIfTI, or the sidecar for bad JSON or endpoints.
    """
    path = Path(path)
    num_frames = nifti_4d_shape(path)[3]
    sidecar, endpoints = _sidecar(path)
    names = (f"{sidecar}: start_frame", f"{sidecar}: end_frame")
    start, end = frame_endpoints(num_frames, endpoints.get("start_frame", 0), endpoints.get("end_frame", -1), names)
    return TripletCase(
        case_id=nifti_stem(path),
        start=start,
        end=end,
        targets=frames_between(start, end, num_frames, cyclic=endpoints.get("cyclic", False)),
        load=functools.partial(load_protocol_series, path, tuple(spatial_size), per_frame, motion_crop,
                               None if training_spacing is None else tuple(float(v) for v in training_spacing),
                               float(zoom_tolerance)),
    )


def nifti4d_series(
    dataset_dir: str | os.PathLike,
    split: str = "all",
    spatial_size: Sequence[int] = (128, 128, 32),
    test_fraction: float = 0.1,
    motion_crop: bool = False,
    training_spacing: Sequence[float] | None = None,
    zoom_tolerance: float = 2.0,
) -> list[TripletCase]:
    """The cases of a split as whole series (the super-resolution jobs and their training samples); arguments as
    :func:`nifti4d_dataset`."""
    paths = nifti4d_cases(dataset_dir, split, test_fraction)
    crop = parse_bool(motion_crop, "motion_crop")
    return [nifti4d_case(path, spatial_size, False, crop, training_spacing, zoom_tolerance) for path in paths]


def nifti4d_dataset(
    dataset_dir: str | os.PathLike,
    split: str = "all",
    spatial_size: Sequence[int] = (128, 128, 32),
    cache: bool = True,
    augment: bool = False,
    per_frame: bool = False,
    test_fraction: float = 0.1,
    cycle: Mapping[str, object] | None = None,
    motion_crop: bool = False,
    training_spacing: Sequence[float] | None = None,
    zoom_tolerance: float = 2.0,
) -> TripletDataset | CycleTripletDataset:
    """The (I0, I1, It, t) dataset of a folder of 4D NIfTI files, for bundle configs (``_target_``).

    Args:
        dataset_dir: the folder (module docstring).
        split: ``"all"`` (default), ``"train"`` or ``"test"``.
        spatial_size: the protocol grid.
        cache: hold each case's used frames in memory (see :class:`~scripts.datasets.triplets.FrameStore`).
        augment: random flips and endpoint swaps (training only).
        per_frame: per-volume min-max instead of one scale per series.
        test_fraction: the share of cases (rounded up) in the test split.
        cycle: None for the endpoints' triplets only; a mapping of
            :class:`~scripts.datasets.cycle_triplets.CycleSpec` options draws triplets from the whole series too
            (wrapping around where the sidecar says ``"cyclic": true``).
        motion_crop: centre the protocol's crop on the in-plane box where each series moves (full
            field-of-view cines: the network then trains on what the product's motion region gives it).
        training_spacing: with ``motion_crop``, the in-plane voxel size (mm) the network runs at: a series whose
            spacing differs from it by more than a factor ``zoom_tolerance`` is resampled in plane to it, as the
            product's motion region resamples its box (``configs/inference.json``'s ``region``); None never resamples.
        zoom_tolerance: see ``training_spacing``.

    Returns:
        a :class:`~scripts.datasets.triplets.TripletDataset`, one item per frame strictly between the endpoints; with
        ``cycle``, a :class:`~scripts.datasets.cycle_triplets.CycleTripletDataset`.
    """
    paths = nifti4d_cases(dataset_dir, split, test_fraction)
    crop = parse_bool(motion_crop, "motion_crop")
    cases = [nifti4d_case(path, spatial_size, per_frame, crop, training_spacing, zoom_tolerance) for path in paths]
    logger.info("nifti4d %s split: %d cases, %d target frames", split, len(cases), sum(len(c.targets) for c in cases))
    if cycle is not None:
        num_frames = [nifti_4d_shape(path)[3] for path in paths]
        cyclic = [_sidecar(path)[1].get("cyclic", False) for path in paths]
        return CycleTripletDataset(cases, num_frames, cycle, cyclic=cyclic, cache=cache, augment=augment)
    return TripletDataset(cases, cache=cache, augment=augment)
