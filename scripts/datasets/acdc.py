"""ACDC cardiac cine MRI: folder layout, Info.cfg, the UVI-Net protocol, and the (I0, I1, It, t) dataset.

Layout (the ACDC challenge's ``training`` folder, or a site's data arranged the same way)::

    dataset_dir/patientNNN/patientNNN_4d.nii.gz   (X, Y, Z, T) cine, any NIfTI the reader accepts (.nii too)
    dataset_dir/patientNNN/Info.cfg               "ED: 1", "ES: 12", "NbFrame: 30", ... (frames 1-based)

Only folders named ``patient`` + digits count; others (``patient015_test``, notes, caches) are ignored.

Protocol (UVI-Net): per case, centre crop to ``spatial_size`` (128 x 128 x 32) where the volume is
larger; min-max to [0, 1] (one scale per series by default, see :mod:`scripts.transforms.intensity`); zero padding, centred,
where it is smaller, so padding is exactly 0 and nothing is ever resampled. The geometry is MONAI's
``ResizeWithPadOrCrop`` (on each axis only one of crop and pad happens, so crop-then-pad equals its pad-then-crop);
the crop comes first so the min-max sees what the network sees, and the padding last so it stays 0. I0 = ED,
I1 = ES, the targets every frame strictly between, ``t = (f - ED) / (ES - ED)``. In every real ACDC case ED < ES;
a cine is periodic, so if ES < ED the targets run forward from ED, around the end of the cine, to ES
(:func:`~scripts.datasets.triplets.frames_between` with ``cyclic=True``).

Split by patient number (UVI-Net's 90/10): 001-090 train, 091-100 test; ranges are arguments. ``split="all"`` takes
every patient folder, including numbers outside both ranges.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.datasets.cycle_triplets import CycleTripletDataset
from scripts.datasets.protocol import dataset_root, load_protocol_series
from scripts.datasets.triplets import TripletCase, TripletDataset, frames_between
from scripts.io.nifti_read import nifti_4d_shape
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)


PATIENT = re.compile(r"patient(\d{3,})")


LAYOUT = "dataset_dir/patientNNN/patientNNN_4d.nii.gz with dataset_dir/patientNNN/Info.cfg (ACDC training layout)"




def parse_info_cfg(path: str | os.PathLike) -> dict:
    """Read an ACDC ``Info.cfg``.

    Args:
        path: the file, lines ``Key: value``.

    Returns:
        ``{"ED": int, "ES": int, "NbFrame": int | None, "Group": str | None, "Height": float | None,
        "Weight": float | None}``, ED and ES **0-based** (the file's 1-based values minus 1); a missing or unreadable
        Group/Height/Weight (unused metadata) is ``None``.

    Raises:
        InputError: naming the file when it is missing, a line is not ``Key: value``, ED or ES is missing or not an
            integer, ED equals ES, or ED/ES lies outside 1..NbFrame.
    """
    if not os.path.isfile(path):
        raise InputError(path, "file not found; every ACDC patient folder needs an Info.cfg giving ED and ES")
    fields = {}
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(path, f"line {number} {line!r} is not 'Key: value'")
        fields[key.strip()] = value.strip()

    def integer(key: str, required: bool) -> int | None:
        if key not in fields:
            if required:
                raise InputError(path, f"has no '{key}:' line; ED and ES (1-based frame numbers) are required")
            return None
        try:
            return int(fields[key])
        except ValueError:
            raise InputError(path, f"{key} must be an integer, got {fields[key]!r}") from None

    def number_or_none(key: str) -> float | None:
        try:
            return float(fields[key])
        except (KeyError, ValueError):
            return None

    ed, es, num_frames = integer("ED", True), integer("ES", True), integer("NbFrame", False)
    if ed == es:
        raise InputError(path, f"ED and ES are both frame {ed}; they must differ")
    for key, value in (("ED", ed), ("ES", es)):
        if value < 1 or (num_frames is not None and value > num_frames):
            raise InputError(path, f"{key} {value} is outside 1..{num_frames or 'NbFrame'} (frames are 1-based)")
    return {
        "ED": ed - 1,
        "ES": es - 1,
        "NbFrame": num_frames,
        "Group": fields.get("Group"),
        "Height": number_or_none("Height"),
        "Weight": number_or_none("Weight"),
    }


def acdc_cases(
    dataset_dir: str | os.PathLike,
    split: str = "all",
    train_range: Sequence[int] = (1, 90),
    test_range: Sequence[int] = (91, 100),
) -> list[Path]:
    """The patient folders of ``dataset_dir`` in one split, sorted by patient number.

    Args:
        dataset_dir: the folder holding ``patientNNN`` folders.
        split: ``"train"``, ``"test"`` or ``"all"``.
        train_range: first and last patient number (inclusive) of the training split.
        test_range: the same for the test split.

    Raises:
        InputError: naming ``dataset_dir`` when it is not a folder, holds no ``patientNNN`` folder, or none in
            ``split``; naming ``split`` when it is not one of the three.
    """
    root = dataset_root(dataset_dir, split, LAYOUT)
    numbered = sorted(
        (int(match.group(1)), entry)
        for entry in root.iterdir()
        if entry.is_dir() and (match := PATIENT.fullmatch(entry.name))
    )
    if not numbered:
        raise InputError(root, f"holds no patientNNN folder; expected {LAYOUT}")
    if split == "all":
        return [entry for _, entry in numbered]
    low, high = train_range if split == "train" else test_range
    chosen = [entry for number, entry in numbered if low <= number <= high]
    if not chosen:
        raise InputError(root, f"holds no patient numbered {low}..{high} (the {split} split)")
    return chosen


def series_file(folder: str | os.PathLike) -> Path:
    """The 4D NIfTI of an ACDC patient folder, ``patientNNN_4d.nii.gz`` (or ``.nii``).

    Raises:
        InputError: naming the folder when it holds neither.
    """
    folder = Path(folder)
    candidates = [folder / f"{folder.name}_4d.nii.gz", folder / f"{folder.name}_4d.nii"]
    image_path = next((path for path in candidates if path.is_file()), None)
    if image_path is None:
        raise InputError(folder, f"has no {candidates[0].name} (or .nii); expected {LAYOUT}")
    return image_path


def acdc_case(
    folder: str | os.PathLike, spatial_size: Sequence[int] = (128, 128, 32), per_frame: bool = False
) -> TripletCase:
    """Describe one ACDC patient folder as a :class:`~scripts.datasets.triplets.TripletCase` (reads headers only).

    Raises:
        InputError: naming the file when the 4D NIfTI or Info.cfg is missing or unusable, or ED/ES do not fit the
            4D file's frame count.
    """
    folder = Path(folder)
    info_path = folder / "Info.cfg"
    image_path = series_file(folder)
    info = parse_info_cfg(info_path)
    num_frames = nifti_4d_shape(image_path)[3]
    if info["NbFrame"] is not None and info["NbFrame"] != num_frames:
        raise InputError(info_path, f"NbFrame {info['NbFrame']} but {image_path.name} has {num_frames} frames")
    for key in ("ED", "ES"):
        if info[key] >= num_frames:
            raise InputError(
                info_path, f"{key} {info[key] + 1} is beyond the {num_frames} frames of {image_path.name} (1-based)"
            )
    return TripletCase(
        case_id=folder.name,
        start=info["ED"],
        end=info["ES"],
        targets=frames_between(info["ED"], info["ES"], num_frames, cyclic=True),
        load=functools.partial(load_protocol_series, image_path, tuple(spatial_size), per_frame),
    )


def acdc_dataset(dataset_dir: str | os.PathLike, split: str = "train", spatial_size: Sequence[int] = (128, 128, 32),
                 cache: bool = True, augment: bool = False, per_frame: bool = False,
                 train_range: Sequence[int] = (1, 90), test_range: Sequence[int] = (91, 100),
                 cycle: Mapping[str, object] | None = None) -> TripletDataset | CycleTripletDataset:
    """The ACDC (I0 = ED, I1 = ES, It, t) dataset of one split, for bundle configs (``_target_``).

    Args:
        dataset_dir: the folder of ``patientNNN`` folders.
        split: ``"train"``, ``"test"`` or ``"all"``.
        spatial_size: the protocol grid.
        cache: hold each case's ED..ES frames in memory (see :class:`~scripts.datasets.triplets.FrameStore`).
        augment: random flips and endpoint swaps (training only).
        per_frame: UVI-Net's per-volume min-max instead of one scale per series.
        train_range, test_range: inclusive patient-number ranges of the splits.
        cycle: None for the paper's protocol (ED -> ES); a mapping of
            :class:`~scripts.datasets.cycle_triplets.CycleSpec` options (``{}`` for the defaults) draws triplets from
            the whole cardiac cycle, ED -> ES mixed in.

    Returns:
        a :class:`~scripts.datasets.triplets.TripletDataset`, one item per frame strictly between ED and ES; with
        ``cycle``, a :class:`~scripts.datasets.cycle_triplets.CycleTripletDataset`.
    """
    folders = acdc_cases(dataset_dir, split, train_range, test_range)
    cases = [acdc_case(folder, spatial_size, per_frame) for folder in folders]
    logger.info("ACDC %s split: %d patients, %d target frames", split, len(cases), sum(len(c.targets) for c in cases))
    if cycle is not None:
        num_frames = [nifti_4d_shape(series_file(folder))[3] for folder in folders]
        return CycleTripletDataset(cases, num_frames, cycle, cyclic=True, cache=cache, augment=augment)
    return TripletDataset(cases, cache=cache, augment=augment)
