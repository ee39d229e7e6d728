"""Phantoms written as DICOM, in the layouts scanners export, for tests, demos and CI.

    lung        respiratory 4D CT, one series per phase (layout ``series_per_phase``, the 4D-Lung layout read by
                ``lung4d``): ``out/<patient>/<study>/<series per phase>/*.dcm``
    cine_dicom  cardiac cine MR as another vendor sends it: double-oblique short axis, 8 mm slices, one series
                holding every slice and phase (``single_series``), one series per slice (``series_per_slice``) or
                one enhanced file (``enhanced``)

The true motion of each case is saved beside its DICOM files in ``<patient>/.phantom/truth/motion.npz`` (a hidden
folder, so DICOM readers and the 4D-Lung case listing pass it by); ``load_truth(<patient>/.phantom)`` reads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from scripts.io.series import Series4D
from scripts.phantoms.base import Phantom, case_seed, save_truth
from scripts.phantoms.dicom_acquisition import layout_name, write_dicom_acquisition
from scripts.utils.args import parse_shape
from scripts.utils.atomic import atomic_dir
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)

TRUTH_DIR = ".phantom"
OBLIQUE_DEGREES = (18.0, -27.0, 35.0)  # rotations about the scanner x, y, z axes: a double-oblique short axis


def rotation(degrees: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation Rz @ Ry @ Rx for angles (x, y, z) in degrees."""
    ax, ay, az = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique(affine: np.ndarray, degrees: Sequence[float] = OBLIQUE_DEGREES) -> np.ndarray:
    """``affine`` rotated about its first voxel: same voxels and spacing, double-oblique orientation."""
    rotated = affine.copy()
    rotated[:3, :3] = rotation(degrees) @ affine[:3, :3]
    return rotated


def _write_cases(out_dir, num_cases: int, seed: int, make: Callable[[int], Phantom], layout: str, modality: str,
                 overwrite: bool, orientation: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for patient in range(1, int(num_cases) + 1):
            case = make(case_seed(seed, patient))
            affine = case.affine if orientation is None else orientation(case.affine)
            times = np.arange(case.array.shape[3]) * case.frame_time_ms
            series = Series4D(case.array, affine, source=f"phantom {patient}", times=times)
            folder = write_dicom_acquisition(series, tmp, layout=layout, modality=modality,
                                             patient_id=f"PHANTOM{patient:03d}")
            save_truth(case, folder / TRUTH_DIR)
            logger.info("phantom %s written (layout %s, %s)", folder.name, layout, modality)
    return Path(out_dir)


def write_lung_layout(out_dir: str | os.PathLike, num_cases: int, seed: int = 0,
                      shape: Sequence[int] = (128, 128, 128), frames: int = 10, overwrite: bool = False) -> Path:
    """``num_cases`` lung 4D CT phantoms in the 4D-Lung layout (one CT series per phase, phase % in the description)."""
    from scripts.phantoms.lung import lung_phantom

    shape = parse_shape(shape)
    return _write_cases(out_dir, num_cases, seed, lambda s: lung_phantom(s, shape=shape, phases=frames),
                        layout="series_per_phase", modality="CT", overwrite=overwrite)


def write_cine_dicom(out_dir: str | os.PathLike, num_cases: int, seed: int = 0, shape: Sequence[int] = (256, 256, 10),
                     frames: int = 20, layout: str = "single_series", overwrite: bool = False) -> Path:
    """Cardiac cine phantoms as a full field-of-view MR acquisition from another vendor: double-oblique, 8 mm slices,
    1.4 mm pixels at 256 (360 mm field of view), in DICOM ``layout`` single_series, series_per_slice or enhanced."""
    from scripts.phantoms.cardiac import cardiac_phantom

    shape = parse_shape(shape)
    layout = layout_name(layout)
    if layout == "series_per_phase":
        raise InputError("--layout", "a cine is written as single_series, series_per_slice or enhanced")
    spacing = (360.0 / shape[0], 360.0 / shape[1], 8.0)
    return _write_cases(out_dir, num_cases, seed,
                        lambda s: cardiac_phantom(s, shape=shape, frames=frames, spacing=spacing),
                        layout=layout, modality="MR", overwrite=overwrite, orientation=oblique)
