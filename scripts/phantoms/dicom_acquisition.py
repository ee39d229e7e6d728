"""Synthetic 4D acquisitions in the layouts scanners export, for phantoms and tests.

``write_dicom_acquisition`` writes a 4D array as a whole acquisition in one of the layouts
:func:`scripts.io.dicom_read.read_dicom_series` accepts, with the tags real scanners use to order it:

- ``"a"``: one series per phase (4D-Lung / respiratory 4D CT): ``<patient>/<study>/<series per phase>/*.dcm``, the
  phase as a percentage in SeriesDescription (CT) or TriggerTime + TemporalPositionIdentifier (MR);
- ``"b"``: one series holding every slice and phase (GE/Philips cine), InstanceNumber slice-major, TriggerTime;
- ``"c"``: one series per slice position, the time points as its instances (Siemens cine), TriggerTime;
- ``"d"``: one Enhanced MR/CT Image Storage file, per-frame functional groups (FrameContentSequence with
  TemporalPositionIndex, TemporalPositionTimeOffset and InStackPositionNumber, PlanePositionSequence,
  CardiacSynchronizationSequence for MR).
  Layouts a-c pass ``dciodvfy`` without error; ``d`` carries what a reader needs, not every Enhanced MR/CT module.

Every folder is written atomically (:func:`scripts.utils.atomic.atomic_dir`) and is never replaced unless asked.

The per-slice datasets are built with the derived-series writer's helpers (:mod:`scripts.io.dicom_write`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    generate_uid,
)

from scripts.io.dicom_geometry import SliceGeometry, dicom_from_affine
from scripts.io.dicom_write import (
    CLASSIC_SOP_CLASS,
    ENHANCED_SOP_CLASS,
    IMAGE_TYPE_3,
    check_volume,
    copy_header,
    display_window,
    ds_value,
    encode_int16,
    now_date_time,
    save_dataset,
    series_header,
    set_pixels,
    slice_dataset,
)
from scripts.io.series import Series4D
from scripts.utils.atomic import atomic_dir
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)


def _acquisition_template(modality: str, patient_id: str) -> Dataset:
    """Patient, study and acquisition attributes of a new synthetic acquisition."""
    date, time = now_date_time()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = f"PHANTOM^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = f"4D {modality} phantom"
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "TMSDF-KD bundle phantom"
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    if modality == "CT":
        ds.BodyPartExamined = "CHEST"
        ds.KVP = 120
    else:
        ds.BodyPartExamined = "HEART"
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SS"
        ds.ScanOptions = "CG"  # cardiac gating: makes TriggerTime expected
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 3.0
        ds.EchoTime = 1.5
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = 1.5
        ds.ImagedNucleus = "1H"
    return ds


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text.replace("%", "pct")).strip("_")


def _phase_descriptions(modality: str, num_frames: int, times: np.ndarray) -> list[str]:
    if modality == "CT":
        return [f"Gated, {100.0 * t / num_frames:.1f}%" for t in range(num_frames)]
    return [f"Cine, TT={time:.1f} ms" for time in times]


def write_dicom_acquisition(
    series: Series4D,
    out_dir: str | os.PathLike,
    layout: str = "a",
    modality: str = "CT",
    patient_id: str = "PHANTOM001",
    phase_descriptions: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a 4D array as a synthetic DICOM acquisition under ``out_dir/<patient_id>/<study>/<series>/``.

    Args:
        series: ``array`` ``(X, Y, Z, T)`` in scanner units (CT HU, MR signal), ``affine`` voxel-to-RAS, and
            ``times`` ``(T,)`` ms (TriggerTime; default ``t * 1000 / T``).
        out_dir: the dataset folder; the patient folder ``out_dir/<patient_id>`` is created atomically.
        layout: ``"a"`` series per phase, ``"b"`` one series for all, ``"c"`` series per slice position,
            ``"d"`` one enhanced multi-frame file (see the module docstring).
        modality: ``"CT"`` or ``"MR"``.
        patient_id: PatientID and folder name.
        phase_descriptions: layout ``"a"`` only: SeriesDescription of each phase (default ``"Gated, 50.0%"`` style
            for CT, the trigger time for MR).
        overwrite: replace an existing patient folder.

    Returns:
        The patient folder.
    """
    array = check_volume(series.array, 4)
    if modality not in CLASSIC_SOP_CLASS:
        raise InputError("modality", f"must be 'CT' or 'MR', got {modality!r}")
    if layout not in _LAYOUT_WRITERS:
        raise InputError("layout", f"must be one of {sorted(_LAYOUT_WRITERS)}, got {layout!r}")
    num_frames = array.shape[3]
    times = np.arange(num_frames) * 1000.0 / num_frames if series.times is None else np.asarray(series.times)
    if phase_descriptions is not None and (layout != "a" or len(phase_descriptions) != num_frames):
        raise InputError("phase_descriptions", f"needs layout 'a' and one entry per frame ({num_frames})")
    descriptions = list(phase_descriptions or _phase_descriptions(modality, num_frames, times))
    header = copy_header(_acquisition_template(modality, patient_id), modality)
    stored, slope, intercept = encode_int16(array)
    geometry = dicom_from_affine(series.affine, array.shape[2])
    acquisition = _Acquisition(header, modality, stored, slope, intercept, geometry, times, descriptions,
                               display_window(array))
    patient_dir = Path(out_dir) / patient_id
    with atomic_dir(patient_dir, overwrite=overwrite) as tmp:
        study_dir = tmp / f"{header.StudyDate}-{_slug(header.StudyDescription)}"
        _LAYOUT_WRITERS[layout](acquisition, study_dir)
    return patient_dir


@dataclasses.dataclass
class _Acquisition:
    """Everything the layout writers share."""

    header: Dataset  # patient, study, frame of reference, equipment, acquisition attributes
    modality: str
    stored: np.ndarray  # (X, Y, Z, T) int16
    slope: float
    intercept: float
    geometry: SliceGeometry
    times: np.ndarray  # (T,) ms
    descriptions: list[str]  # SeriesDescription per phase (layout a)
    window: tuple[float, float]  # WindowCenter, WindowWidth

    @property
    def image_type(self) -> list[str]:
        return ["ORIGINAL", "PRIMARY", IMAGE_TYPE_3[self.modality]]

    def series_header(self, series_number: int, description: str) -> Dataset:
        return series_header(self.header, CLASSIC_SOP_CLASS[self.modality], self.modality, series_number,
                              description, self.image_type, self.slope, self.intercept)

    def slice(self, series_header: Dataset, frame: int, k: int) -> Dataset:
        """Dataset of slice ``k`` of ``frame``, with that frame's temporal attributes."""
        ds = slice_dataset(series_header, self.stored[..., frame], self.geometry, k, self.geometry.slice_spacing,
                            self.window)
        ds.TriggerTime = ds_value(self.times[frame])
        if self.modality == "MR":
            ds.TemporalPositionIdentifier = frame + 1
            ds.NumberOfTemporalPositions = len(self.times)
            ds.CardiacNumberOfImages = len(self.times)
        return ds


def _write_series_per_phase(acq: _Acquisition, study_dir: Path) -> None:
    """Layout a: one series per phase, 4D-Lung style folders and file names."""
    for frame, description in enumerate(acq.descriptions):
        header = acq.series_header(frame + 1, description)
        series_dir = study_dir / f"{frame + 1}.000000-{_slug(description)}"
        series_dir.mkdir(parents=True)
        for k in range(acq.stored.shape[2]):
            ds = acq.slice(header, frame, k)
            if acq.modality == "CT":
                del ds.TriggerTime  # 4D CT phases carry their phase in SeriesDescription, not a trigger time
            save_dataset(ds, series_dir / f"1-{k + 1:03d}.dcm")


def _write_single_series(acq: _Acquisition, study_dir: Path) -> None:
    """Layout b: every slice and phase in one series; InstanceNumber runs over phases within each slice."""
    header = acq.series_header(1, f"Cine {acq.modality}, all slices and phases")
    series_dir = study_dir / "1-cine"
    series_dir.mkdir(parents=True)
    num_frames = len(acq.times)
    for frame in range(num_frames):
        for k in range(acq.stored.shape[2]):
            ds = acq.slice(header, frame, k)
            ds.InstanceNumber = k * num_frames + frame + 1
            save_dataset(ds, series_dir / f"IM{ds.InstanceNumber:05d}.dcm")


def _write_series_per_slice(acq: _Acquisition, study_dir: Path) -> None:
    """Layout c: one series per slice position, its time points as instances 1..T."""
    for k in range(acq.stored.shape[2]):
        header = acq.series_header(k + 1, f"Cine {acq.modality}, slice {k + 1}")
        series_dir = study_dir / f"{k + 1}-slice"
        series_dir.mkdir(parents=True)
        for frame in range(len(acq.times)):
            ds = acq.slice(header, frame, k)
            ds.InstanceNumber = frame + 1
            save_dataset(ds, series_dir / f"IM{frame + 1:04d}.dcm")


def _write_enhanced(acq: _Acquisition, study_dir: Path) -> None:
    """Layout d: one Enhanced MR/CT Image Storage file, frames time-major, per-frame functional groups."""
    geometry, num_slices, num_frames = acq.geometry, acq.stored.shape[2], len(acq.times)
    ds = copy.deepcopy(acq.header)
    date, time = now_date_time()
    ds.SOPClassUID = ENHANCED_SOP_CLASS[acq.modality]
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = acq.modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"Enhanced {acq.modality}, all slices and phases"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = date + time
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = num_slices * num_frames

    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [ds_value(v) for v in geometry.pixel_spacing]
    shared.PixelMeasuresSequence[0].SliceThickness = ds_value(geometry.slice_spacing)
    shared.PixelMeasuresSequence[0].SpacingBetweenSlices = ds_value(geometry.slice_spacing)
    shared.PlaneOrientationSequence = DicomSequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [ds_value(v) for v in geometry.orientation]
    shared.PixelValueTransformationSequence = DicomSequence([Dataset()])
    transform = shared.PixelValueTransformationSequence[0]
    transform.RescaleIntercept, transform.RescaleSlope = acq.intercept, acq.slope
    transform.RescaleType = "HU" if acq.modality == "CT" else "US"
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    organization_uid = generate_uid()
    ds.DimensionOrganizationSequence = DicomSequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = organization_uid
    ds.DimensionIndexSequence = DicomSequence()
    for pointer in ("TemporalPositionIndex", "InStackPositionNumber"):
        index = Dataset()
        index.DimensionOrganizationUID = organization_uid
        index.DimensionIndexPointer = pydicom.datadict.tag_for_keyword(pointer)
        index.FunctionalGroupPointer = pydicom.datadict.tag_for_keyword("FrameContentSequence")
        ds.DimensionIndexSequence.append(index)

    per_frame = DicomSequence()
    for frame in range(num_frames):
        for k in range(num_slices):
            group = Dataset()
            content = Dataset()
            content.StackID = "1"
            content.InStackPositionNumber = k + 1
            content.TemporalPositionIndex = frame + 1
            content.TemporalPositionTimeOffset = float(acq.times[frame]) / 1000  # seconds
            content.DimensionIndexValues = [frame + 1, k + 1]
            group.FrameContentSequence = DicomSequence([content])
            group.PlanePositionSequence = DicomSequence([Dataset()])
            group.PlanePositionSequence[0].ImagePositionPatient = [ds_value(v) for v in geometry.positions[k]]
            if acq.modality == "MR":
                group.CardiacSynchronizationSequence = DicomSequence([Dataset()])
                group.CardiacSynchronizationSequence[0].NominalCardiacTriggerDelayTime = ds_value(acq.times[frame])
            per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    set_pixels(ds, np.moveaxis(acq.stored, (3, 2), (0, 1)).reshape(num_frames * num_slices, *acq.stored.shape[:2])
                .transpose(0, 2, 1))
    series_dir = study_dir / "1-enhanced"
    series_dir.mkdir(parents=True)
    save_dataset(ds, series_dir / "IM0001.dcm")


_LAYOUT_WRITERS = {
    "a": _write_series_per_phase,
    "b": _write_single_series,
    "c": _write_series_per_slice,
    "d": _write_enhanced,
}
