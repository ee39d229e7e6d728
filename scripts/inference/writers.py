"""The outputs of one interpolation, each a named step of ``configs/inference.json``'s ``writers``.

Each writer takes the :class:`~scripts.inference.workflow.Interpolation` (the series, its endpoints, the time points
and the synthesised frames) and a folder, writes its files there and returns what ``summary.json`` lists for it
(paths relative to the folder). The workflow writes into a temporary folder that appears whole or not at all
(:func:`scripts.utils.atomic.atomic_dir`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from scripts.io.dicom_write import write_derived_series
from scripts.io.montage import write_montage
from scripts.io.nifti_write import write_nifti_frames
from scripts.io.time_labels import t_label

if TYPE_CHECKING:  # the workflow imports this module
    from scripts.inference.workflow import Interpolation

__all__ = ["NiftiFramesWriter", "DicomFramesWriter", "MontageWriter"]


class NiftiFramesWriter:
    """``interp_4d.nii.gz`` (the N synthesised frames, float32, the input's affine and units) and one
    ``interp_t<t>.nii.gz`` per t."""

    def __call__(self, result: Interpolation, folder: Path) -> list[str]:
        written = write_nifti_frames(result.frames, result.series.affine, folder, result.times)
        return [os.path.relpath(p, folder) for p in (written.series, *written.volumes)]


class DicomFramesWriter:
    """One derived DICOM series per t (``dicom_<t>/``, one file per slice), patient and study copied from the input.

    Args:
        first_series_number: SeriesNumber of the first t; the next t get the following numbers.
        description: SeriesDescription, ``{t}`` replaced by the time point (three decimals).
    """

    def __init__(self, first_series_number: int = 9000, description: str = "TMSDF-KD interpolated t={t}"):
        self.first_series_number = int(first_series_number)
        self.description = description

    def __call__(self, result: Interpolation, folder: Path) -> list[str]:
        names = []
        for n, t in enumerate(result.times):
            name = f"dicom_{t_label(t)}"
            write_derived_series(result.frames[..., n], result.series.affine, folder / name,
                                 result.series.dicom_template, series_number=self.first_series_number + n,
                                 series_description=self.description.format(t=t_label(t)))
            names.append(name)
        return names


class MontageWriter:
    """``montage.png``: the middle slice of I0, every synthesised frame and I1 (and the truth under them, when known).

    Args:
        name: the file name.
    """

    def __init__(self, name: str = "montage.png"):
        self.name = name

    def __call__(self, result: Interpolation, folder: Path) -> str:
        scale = result.scale
        truth = None if result.truth is None else scale.to_unit(result.truth)
        write_montage(scale.to_unit(result.i0), result.frames_unit, scale.to_unit(result.i1), result.times,
                      folder / self.name, truth=truth)
        return self.name
