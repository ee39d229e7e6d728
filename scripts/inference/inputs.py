"""What the user points the inference at, read into one :class:`Series4D` with its chosen endpoint frames.

    None                       the embedded demo: a deterministic cardiac phantom (ED -> ES, with its true frames)
    "series.nii.gz"            a 4D NIfTI
    "dicom_folder/"            a DICOM folder of one 4D acquisition (any layout scanners export)
    ["a.nii.gz", "b.nii.gz"]   two 3D volumes on the same grid
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scripts.io.nifti_read import read_nifti_4d, read_two_volumes, select_endpoints
from scripts.io.series import Series4D
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)

DEMO_SEED = 20251
# a short-axis stack like the cropped cines the shipped cardiac model was trained on (96 x 96 x 8, 2 mm, 10 mm slices)
DEMO_SHAPE = (96, 96, 8)
DEMO_SPACING = (2.0, 2.0, 10.0)
DEMO_FRAMES = 20


class LoadedInput(NamedTuple):
    """The series, its endpoint frames (0-based), and for the demo the true in-between frames and their times."""

    series: Series4D
    start: int
    end: int
    truth: np.ndarray | None = None  # (X, Y, Z, K) in the series' units
    truth_times: list[float] | None = None  # (K,)


def demo_input() -> LoadedInput:
    """The embedded default case: a cardiac phantom from ED to ES, with the frames in between as ground truth."""
    from scripts.phantoms.cardiac import cardiac_phantom

    case = cardiac_phantom(DEMO_SEED, shape=DEMO_SHAPE, frames=DEMO_FRAMES, spacing=DEMO_SPACING)
    series = Series4D(case.array, case.affine, source=f"demo cardiac phantom (seed {DEMO_SEED})")
    between = list(range(case.ed + 1, case.es))
    times = [(f - case.ed) / (case.es - case.ed) for f in between]
    return LoadedInput(series, case.ed, case.es, case.array[..., between], times)


def read_series(input: str | os.PathLike | Sequence[str], series: Sequence[str] | None = None) -> Series4D:
    """Read a 4D NIfTI file, a DICOM folder (only the images of ``series``, when given: a whole study's export;
    :func:`~scripts.io.dicom_read.read_dicom_series`), or a pair of 3D volumes."""
    if series is not None and not (isinstance(input, (str, os.PathLike)) and Path(input).is_dir()):
        raise InputError("--series", f"chooses series of a DICOM folder; {input} is not a folder")
    if isinstance(input, (list, tuple)):
        if len(input) != 2:
            raise InputError("--input", f"give one 4D file, one DICOM folder, or exactly two 3D volumes, got {len(input)}")
        return read_two_volumes(*input)
    path = Path(input)
    if path.is_dir():
        from scripts.io.dicom_read import read_dicom_series

        return read_dicom_series(path, series=series)
    if not path.exists():
        raise InputError(path, "input not found")
    return read_nifti_4d(path)


def load_input(input=None, start_frame: int | None = None, end_frame: int | None = None,
               series: Sequence[str] | None = None) -> LoadedInput:
    """Read ``input`` (module table; of a DICOM folder only the images of ``series``, when given) and validate the
    endpoint frames (default: first and last)."""
    if input is None:
        if series is not None:
            raise InputError("--series", "the demo case is one series; give a DICOM folder as --input to choose one")
        if start_frame is not None or end_frame is not None:
            raise InputError("--start_frame", "the demo case has fixed endpoints (ED, ES); give an --input to choose")
        return demo_input()
    loaded = read_series(input, series)
    start, end = select_endpoints(loaded, 0 if start_frame is None else start_frame,
                                  -1 if end_frame is None else end_frame)
    return LoadedInput(loaded, start, end)


def warn_default_endpoints(loaded: LoadedInput, start_frame: int | None, end_frame: int | None) -> None:
    """Say so when a two-frame job on a series of more than two frames runs between its first and last frames because
    no endpoint was given: in a cine of one whole cycle the two are neighbours in time."""
    if start_frame is None and end_frame is None and loaded.truth is None and loaded.series.num_frames > 2:
        logger.warning(
            "%s: no --start_frame / --end_frame, so the frames are synthesised between its first and last frames "
            "(0 and %d of %d; in a cine of one whole cycle these are neighbours in time). Choose the two phases with "
            "--start_frame / --end_frame, or make the whole series finer with --upsample K",
            loaded.series.source, loaded.end, loaded.series.num_frames)
