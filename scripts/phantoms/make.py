"""The ``phantom`` verb: write phantom data sets (ACDC layout, 4D-Lung-style DICOM, cine DICOM) to disk."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from scripts.phantoms.base import FIELD_OF_VIEW_MM, Phantom, case_seed, save_truth
from scripts.utils.args import parse_shape
from scripts.utils.atomic import atomic_dir
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)


KINDS = ("cardiac", "lung", "cine_dicom")


def _write_acdc_case(phantom: Phantom, case_dir: Path, patient: int, rng: np.random.Generator) -> None:
    """Write one phantom as an ACDC case folder ``case_dir`` (``patientNNN_4d.nii.gz``, ``Info.cfg``, truth).

    The 4D image is int16 in the phantom's units (MR signal rounded to integers, well below the noise), with the
    affine, the voxel size in mm and the frame interval in ms in the header. ``Info.cfg`` holds ED and ES 1-based.
    Height and weight are drawn from ``rng`` to fill the ACDC fields.
    """
    case_dir.mkdir(parents=True)
    name = f"patient{patient:03d}"
    data = np.clip(np.rint(phantom.array), -32768, 32767).astype(np.int16)
    image = nib.Nifti1Image(data, phantom.affine)
    image.header.set_xyzt_units("mm", "msec")
    image.header.set_zooms((*np.linalg.norm(phantom.affine[:3, :3], axis=0), phantom.frame_time_ms))
    nib.save(image, case_dir / f"{name}_4d.nii.gz")
    info = {
        "ED": phantom.ed + 1,
        "ES": phantom.es + 1,
        "Group": "NOR",
        "Height": f"{rng.uniform(150, 195):.1f}",
        "NbFrame": phantom.array.shape[3],
        "Weight": f"{rng.uniform(50, 105):.1f}",
    }
    (case_dir / "Info.cfg").write_text("".join(f"{key}: {value}\n" for key, value in info.items()))
    save_truth(phantom, case_dir)


def write_acdc_layout(
    out_dir: str | os.PathLike,
    num_cases: int,
    seed: int = 0,
    shape: Sequence[int] = (128, 128, 32),
    frames: int = 20,
    first_patient: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write ``num_cases`` cardiac phantoms in the ACDC layout: ``out_dir/patientNNN/{patientNNN_4d.nii.gz, Info.cfg,
    truth/motion.npz}``, patients numbered from ``first_patient``.

    Case ``patient`` is ``cardiac_phantom(case_seed(seed, patient), shape, frames, spacing)``, the same whatever
    ``num_cases``. The in-plane field of view stays 192 mm (spacing ``192 / X`` by ``192 / Y`` mm, 1.5 mm at 128) so a
    smaller ``shape`` shows the same anatomy with coarser voxels; slices are 10 mm.
    The whole folder appears at once when every case is written; an existing ``out_dir`` is refused
    (:class:`~scripts.utils.errors.OutputExistsError`) unless ``overwrite``.
    """
    from scripts.phantoms.cardiac import (
        cardiac_phantom,  # that module builds on this one
    )

    if int(seed) < 0:
        raise InputError("--seed", f"must be a non-negative integer, got {seed}")
    if int(num_cases) < 1:
        raise InputError("--num_cases", f"must be at least 1, got {num_cases}")
    last = int(first_patient) + int(num_cases) - 1
    if int(first_patient) < 1 or last > 999:
        raise InputError("--num_cases", f"patients {first_patient}..{last} do not fit ACDC's patient001..patient999")
    shape = parse_shape(shape)
    spacing = (FIELD_OF_VIEW_MM / shape[0], FIELD_OF_VIEW_MM / shape[1], 10.0)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for patient in range(int(first_patient), last + 1):
            sub_seed = case_seed(seed, patient)
            phantom = cardiac_phantom(sub_seed, shape=shape, frames=frames, spacing=spacing)
            _write_acdc_case(phantom, tmp / f"patient{patient:03d}", patient, np.random.default_rng([sub_seed, 1]))
            logger.info("phantom patient%03d written (ED %d, ES %d)", patient, phantom.ed + 1, phantom.es + 1)
    return Path(out_dir)


def phantom(
    kind: str = "cardiac",
    out: str = "phantom",
    num_cases: int = 2,
    seed: int = 0,
    shape: str | Sequence[int] | None = None,
    frames: int | None = None,
    layout: str = "single_series",
    overwrite: bool = False,
) -> str:
    """Write a synthetic 4D dataset whose true motion is known, in the layout the training and evaluation read.

    Cardiac: short-axis cine MR stacks (LV, myocardium, RV, papillary muscles, chest wall, lungs, liver, spine,
    coil shading, Rician noise) beating over one cycle with nonlinear, regionally delayed contraction, twist and
    base descent, written in the ACDC layout (``patientNNN/patientNNN_4d.nii.gz`` + ``Info.cfg``) with the true
    displacement of every frame in ``patientNNN/truth/motion.npz``
    (``scripts.phantoms.base.load_truth`` reads it).

    Lung: respiratory 4D CT (body, lungs, vessels, a nodule, diaphragm) over 10 phases, phase 0 end-inhale, in the
    4D-Lung DICOM layout (one series per phase). Cine_dicom: the cardiac phantom as a full field-of-view,
    double-oblique cine MR from another vendor (DICOM layout single_series, series_per_slice or enhanced). Both keep
    the truth in
    ``<patient>/.phantom/truth/motion.npz``.

    Args:
        kind: "cardiac" (ACDC layout), "lung" (4D-Lung DICOM layout) or "cine_dicom" (oblique cine MR DICOM).
        out: folder to create; it must not exist unless --overwrite True.
        num_cases: number of patients, numbered from 001.
        seed: dataset seed; patient k is the same for a given seed whatever num_cases.
        shape: voxels per volume as X,Y,Z (cardiac default 128,128,32: the field of view stays 192 mm in-plane, so
            128 gives 1.5 mm voxels, slices 10 mm; lung 128,128,128 at 2.5 mm; cine_dicom 256,256,10).
        frames: frames per cardiac cycle (default 20, at least 6) or respiratory phases (lung, default 10).
        layout: cine_dicom only: "single_series" one series with every slice and phase, "series_per_slice" one
            series per slice, "enhanced" one enhanced multi-frame file.
        overwrite: replace an existing --out folder.

    Returns:
        The folder written.
    """
    if kind not in KINDS:
        raise InputError("--kind", f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "cardiac":
        return str(write_acdc_layout(out, num_cases, seed=seed, shape=(128, 128, 32) if shape is None else shape,
                                     frames=20 if frames is None else frames, overwrite=overwrite))
    from scripts.phantoms import dicom as phantom_dicom

    if int(num_cases) < 1:
        raise InputError("--num_cases", f"must be at least 1, got {num_cases}")
    if kind == "lung":
        return str(phantom_dicom.write_lung_layout(out, num_cases, seed=seed, frames=10 if frames is None else frames,
                                                   shape=(128, 128, 128) if shape is None else shape,
                                                   overwrite=overwrite))
    return str(phantom_dicom.write_cine_dicom(out, num_cases, seed=seed, shape=(256, 256, 10) if shape is None else shape,
                                              frames=20 if frames is None else frames, layout=layout,
                                              overwrite=overwrite))
