"""``python -m scripts to_nifti``: a DICOM 4D acquisition as the 4D NIfTI that training and fine-tuning read.

Sites keep their cines as DICOM; the fine-tuning configs read a folder of 4D NIfTI files (dataset kind ``nifti4d``,
:mod:`scripts.datasets.nifti4d`). This writes one such case from one DICOM folder (any layout
:func:`~scripts.io.dicom_read.read_dicom_series` reads; ``--series`` for a folder holding a whole study):

    <output>.nii.gz   (X, Y, Z, T) float32 in the scanner's units, the series' affine, pixdim[4] its mean frame step
                      in ms when the frames' times are known
    <output>.json     {"cyclic": true} for an ECG-gated cine (one cycle: fine-tuning then draws frames across the
                      wrap from the last frame to the first), {"cyclic": false} for a series a clock or successive
                      heartbeats time; none where the input does not say

Both files are written atomically, and renamed into place only when both are written; an existing one is refused
unless ``--overwrite``, which keeps the endpoints an existing sidecar holds (``start_frame``, ``end_frame``; refused
before writing when they do not fit the new series) and drops what it said of the old series' cycle.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np

from scripts.io.dicom_read import read_dicom_series
from scripts.io.nifti_read import frame_endpoints, nifti_stem
from scripts.io.nifti_write import write_nifti_series
from scripts.utils.args import parse_bool, parse_path, parse_series
from scripts.utils.atomic import atomic_file, check_parent
from scripts.utils.errors import InputError, OutputExistsError

__all__ = ["to_nifti"]

logger = logging.getLogger(__name__)


def to_nifti(input: str, output: str, series: str | int | list | None = None, overwrite: bool = False) -> str:
    """Convert the DICOM 4D acquisition in ``input`` to ``output`` (a 4D NIfTI) and its sidecar (module docstring).

    Args:
        input: a DICOM folder of one 4D acquisition (searched recursively).
        output: the NIfTI file to write, ``<name>.nii.gz`` or ``<name>.nii``; ``<name>.json`` beside it.
        series: with a folder that holds a whole study, the series to read: its SeriesNumber, text of its
            SeriesDescription or its SeriesInstanceUID, or a list of these.
        overwrite: replace existing output files; True or False.

    Returns:
        the NIfTI file written.
    """
    source = parse_path(input, "--input")
    target = parse_path(output, "--output")
    chosen = parse_series(series, "--series")
    replace = parse_bool(overwrite, "--overwrite")
    if not source.is_dir():
        raise InputError(source, "is not a folder; expected a DICOM folder of one 4D acquisition")
    stem = nifti_stem(target)
    if stem is None:
        raise InputError("--output", f"expected a file name ending in .nii.gz or .nii, got {target.name!r}")
    sidecar = target.with_name(f"{stem}.json")
    for path in (target, sidecar):
        if path.exists() and not path.is_file():
            raise InputError(path, "exists and is not a file; choose another --output")
        if path.exists() and not replace:
            raise OutputExistsError(path)
    if not target.parent.is_dir():
        raise InputError(target.parent, "the output's folder does not exist")
    check_parent(target)  # a folder this process may not write into is said before the work, not after
    kept = _kept(sidecar) if replace else {}
    read = read_dicom_series(source, series=chosen)
    if kept:  # an overwritten case's endpoints must fit this series
        frame_endpoints(read.num_frames, kept.get("start_frame", 0), kept.get("end_frame", -1),
                        (f"{sidecar}: start_frame", f"{sidecar}: end_frame"))
    content = {**kept, **({} if read.gated is None else {"cyclic": bool(read.gated)})}
    times = read.times
    step = None if times is None or len(times) < 2 else float(np.mean(np.diff(times)))
    with contextlib.ExitStack() as stack:  # both files renamed into place only when both are written
        nifti_tmp = stack.enter_context(atomic_file(target, overwrite=replace))
        if content or sidecar.exists():
            sidecar_tmp = stack.enter_context(atomic_file(sidecar, overwrite=replace))
            sidecar_tmp.write_text(json.dumps(content) + "\n")
        write_nifti_series(read.array, read.affine, nifti_tmp, step, overwrite=True)
    logger.info("wrote %s: %s voxels x %d frames%s%s", target, " x ".join(map(str, read.array.shape[:3])),
                read.array.shape[3], "" if step is None else f", {step:.1f} ms apart",
                "" if read.gated is None else f", cyclic {bool(read.gated)} ({sidecar.name})")
    return str(Path(target))


def _kept(sidecar: Path) -> dict:
    """The endpoints (``start_frame``, ``end_frame``) an existing sidecar being overwritten holds; what it said of
    the old input's cycle is not kept."""
    try:
        content = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: content[k] for k in ("start_frame", "end_frame") if k in content} if isinstance(content, dict) else {}
