"""``python -m scripts to_nifti``: a DICOM 4D acquisition as the 4D NIfTI that training and fine-tuning read.

Sites keep their cines as DICOM; the fine-tuning configs read a folder of 4D NIfTI files (dataset kind ``nifti4d``,
:mod:`scripts.datasets.nifti4d`). This writes one such case from one DICOM folder (any layout
:func:`~scripts.io.dicom_read.read_dicom_series` reads; ``--series`` for a folder holding a whole study):

    <output>.nii.gz   (X, Y, Z, T) float32 in the scanner's units, the series' affine, pixdim[4] its mean frame step
                      in ms when the frames' times are known
    <output>.json     {"cyclic": true} for an ECG-gated cine (one cycle: fine-tuning then draws frames across the
                      wrap from the last frame to the first), {"cyclic": false} for a series a clock or successive
                      heartbeats time; none where the input does not say

Both files are written atomically; an existing one is refused unless ``--overwrite``, which keeps the endpoints an
existing sidecar holds (``start_frame``, ``end_frame``) and leaves a sidecar alone where the input does not say.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from scripts.io.dicom_read import read_dicom_series
from scripts.io.nifti_write import write_nifti_series
from scripts.utils.args import parse_bool, parse_path, parse_series
from scripts.utils.atomic import atomic_file
from scripts.utils.errors import InputError, OutputExistsError

__all__ = ["to_nifti"]

logger = logging.getLogger(__name__)

SUFFIXES = (".nii.gz", ".nii")


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
    suffix = next((s for s in SUFFIXES if target.name.endswith(s) and len(target.name) > len(s)), None)
    if suffix is None:
        raise InputError("--output", f"expected a file name ending in .nii.gz or .nii, got {target.name!r}")
    sidecar = target.with_name(target.name[: -len(suffix)] + ".json")
    for path in (target, sidecar):
        if path.exists() and not replace:
            raise OutputExistsError(path)
    if not target.parent.is_dir():
        raise InputError(target.parent, "the output's folder does not exist")
    read = read_dicom_series(source, series=chosen)
    times = read.times
    step = None if times is None or len(times) < 2 else float(np.mean(np.diff(times)))
    write_nifti_series(read.array, read.affine, target, step, overwrite=replace)
    if read.gated is not None:
        try:
            with atomic_file(sidecar, overwrite=replace) as tmp:
                tmp.write_text(json.dumps({**_kept(sidecar), "cyclic": bool(read.gated)}) + "\n")
        except BaseException:
            os.remove(target)  # never the NIfTI without the sidecar it needs
            raise
    logger.info("wrote %s: %s voxels x %d frames%s%s", target, " x ".join(map(str, read.array.shape[:3])),
                read.array.shape[3], "" if step is None else f", {step:.1f} ms apart",
                "" if read.gated is None else f", cyclic {bool(read.gated)} ({sidecar.name})")
    return str(Path(target))


def _kept(sidecar: Path) -> dict:
    """What an existing sidecar being overwritten says besides ``cyclic`` (its endpoints), so they are kept."""
    try:
        content = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in content.items() if k != "cyclic"} if isinstance(content, dict) else {}
