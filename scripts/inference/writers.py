"""The outputs of one interpolation, each a named step of ``configs/inference.json``'s ``writers``.

Each writer takes the :class:`~scripts.inference.workflow.Interpolation` (the series, its endpoints, the time points
and the synthesised frames) and a folder, writes its files there and returns what ``summary.json`` lists for it
(paths relative to the folder). The workflow writes into a temporary folder that appears whole or not at all
(:func:`scripts.utils.atomic.atomic_dir`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from scripts.io.dicom_write import write_derived_cine
from scripts.io.montage import write_montage
from scripts.io.nifti_write import write_nifti_frames, write_nifti_series
from scripts.io.preview import write_cine_preview
from scripts.io.time_labels import t_label

if TYPE_CHECKING:  # the workflow imports this module
    from scripts.inference.workflow import Interpolation

__all__ = ["DicomFramesWriter", "MontageWriter", "NiftiFramesWriter", "PreviewWriter"]

logger = logging.getLogger(__name__)


class NiftiFramesWriter:
    """Between two endpoints: ``interp_4d.nii.gz`` (the N synthesised frames, float32, the input's affine, its
    qform / sform code and units)
    and one ``interp_t<t>.nii.gz`` per t. Upsampled: ``upsampled_4d.nii.gz``, the whole cine (acquired frames as
    read, the new ones between them), pixdim[4] the acquired time step / K in ms when the input's is known."""

    def __call__(self, result: Interpolation, folder: Path) -> list[str]:
        code = result.series.xform_code
        if result.upsample is not None:
            write_nifti_series(result.cine, result.series.affine, folder / "upsampled_4d.nii.gz", result.time_step_ms,
                               xform_code=code)
            return ["upsampled_4d.nii.gz"]
        written = write_nifti_frames(result.frames, result.series.affine, folder, result.times, xform_code=code)
        return [os.path.relpath(p, folder) for p in (written.series, *written.volumes)]


class DicomFramesWriter:
    """The cine (every slice, acquired and synthesised frames in time order) as one derived DICOM series in ``dicom/``,
    in the input's study, referencing the acquired images (:func:`scripts.io.dicom_write.write_derived_cine`).

    Args:
        series_number: SeriesNumber of the derived series.
        description: SeriesDescription; ``{job}`` is replaced by ``x<K>`` (upsampled) or the time points.
        folder: the name of the series folder.
    """

    def __init__(self, series_number: int = 9000, description: str = "TMSDF-KD {job}", folder: str = "dicom"):
        self.series_number = int(series_number)
        self.description = description
        self.folder = folder

    def __call__(self, result: Interpolation, folder: Path) -> str:
        if result.upsample is not None:
            job, derivation = f"x{result.upsample}", (f"{result.upsample - 1} frame(s) synthesised between every two "
                                                      "consecutive acquired frames of the input series")
        else:
            job = "t=" + ",".join(t_label(t) for t in result.times)
            derivation = f"frames synthesised between acquired frames {result.start} and {result.end} of the input"
        if result.cine_times is None:
            logger.warning("%s: frame times unknown or not increasing; the DICOM cine has no TriggerTime, its frames "
                           "are ordered by TemporalPositionIdentifier", result.series.source)
        frame_sources = [[f.previous] if f.acquired else [f.previous, f.next] for f in result.plan]
        write_derived_cine(result.cine, result.series.affine, folder / self.folder, result.series.dicom_template,
                           frame_sources, result.series.dicom_sources, self.description.format(job=job),
                           trigger_times=result.cine_times, series_number=self.series_number, derivation=derivation,
                           cycle_ms=result.series.cycle_ms if result.series.gated else None,
                           clock=result.series.timed_by in ("AcquisitionTime", "ContentTime"))
        return self.folder


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


class PreviewWriter:
    """``preview.gif``: the middle slice of the acquired cine beside the output cine, looping
    (:func:`scripts.io.preview.write_cine_preview`).

    Args:
        name: the file name.
        frame_ms: display time of one output frame.
    """

    def __init__(self, name: str = "preview.gif", frame_ms: int = 80):
        self.name, self.frame_ms = name, int(frame_ms)

    def __call__(self, result: Interpolation, folder: Path) -> str:
        label = f"x{result.upsample}" if result.upsample is not None else "interpolated"
        write_cine_preview(result.series.array, result.cine, [f.previous for f in result.plan], folder / self.name,
                           frame_ms=self.frame_ms, labels=("acquired", label))
        return self.name
