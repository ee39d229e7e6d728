"""Synthetic scanner exports: a 4D array written as a whole DICOM acquisition, in each layout scanners use.

``write_dicom_acquisition`` writes the layouts :func:`scripts.io.dicom_read.read_dicom_series` reads, with the tags
real scanners use to order them:

- ``series_per_phase``: one series per phase (4D-Lung / respiratory 4D CT): ``<patient>/<study>/<series per
  phase>/*.dcm``, the phase as a percentage in SeriesDescription (CT) or TriggerTime + TemporalPositionIdentifier (MR);
- ``single_series``: one series holding every slice and phase (GE/Philips cine), InstanceNumber slice-major,
  TriggerTime;
- ``series_per_slice``: one series per slice position, the time points as its instances (Siemens cine), TriggerTime;
- ``enhanced``: one Enhanced MR/CT Image Storage file, per-frame functional groups (FrameContentSequence with
  TemporalPositionIndex, TemporalPositionTimeOffset and InStackPositionNumber, PlanePositionSequence,
  CardiacSynchronizationSequence for MR).
  The classic layouts pass ``dciodvfy`` without error; ``enhanced`` carries what a reader needs, not every Enhanced
  MR/CT module.

``quirks`` reproduce what real exports do that a tidy writer would not (each one met on a real scanner's files):

- ``empty_functional_groups``: every classic image carries an empty Per-frame Functional Groups Sequence (5200,9230)
  with one empty item (GE cine MR);
- ``frame_of_reference_per_image``: every image has its own FrameOfReferenceUID (GE cine MR);
- ``invalid_uids``: study, series and frame-of-reference UIDs with leading-zero components, e.g.
  ``1.2.840.0113619...`` (older GE exports; pydicom warns on every read);
- ``ungated_slices``: layout ``series_per_slice`` only: a real-time stack acquired slice after slice without a
  cardiac trigger (Siemens real-time cine): TriggerTime constant within each slice's series and different between
  slices, no temporal position tags, AcquisitionTime advancing over every image of the whole stack;
- ``enhanced_file_per_phase``: layout ``enhanced`` only: one enhanced file per phase, all in one series (Siemens XA
  fMRI and ASL exports).

The older layout letters ``a``-``d`` are accepted as aliases of the four names, in that order. Every folder is
written atomically (:func:`scripts.utils.atomic.atomic_dir`) and is never replaced unless asked.

The per-slice datasets are built with the derived-series writer's helpers (:mod:`scripts.io.dicom_write`).
"""

from __future__ import annotations

import contextlib
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
from scripts.io.dicom_read import LAYOUTS
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

# Older names of the layouts, in the order of LAYOUTS.
LEGACY_LAYOUTS = dict(zip("abcd", LAYOUTS))
# What real exports do that a tidy writer would not (module docstring).
QUIRKS = ("empty_functional_groups", "frame_of_reference_per_image", "invalid_uids", "ungated_slices",
          "enhanced_file_per_phase")


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


def layout_name(layout: str) -> str:
    """The layout name of ``layout`` (a name of :data:`LAYOUTS` or an older letter ``a``-``d``)."""
    name = LEGACY_LAYOUTS.get(str(layout), str(layout))
    if name not in LAYOUTS:
        raise InputError("--layout", f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return name


def _check_quirks(quirks: Sequence[str], layout: str) -> frozenset[str]:
    unknown = sorted(set(quirks) - set(QUIRKS))
    if unknown:
        raise InputError("quirks", f"unknown {', '.join(unknown)}; choose from {', '.join(QUIRKS)}")
    if "ungated_slices" in quirks and layout != "series_per_slice":
        raise InputError("quirks", f"ungated_slices needs layout series_per_slice, got {layout}")
    if layout == "enhanced" and set(quirks) & {"empty_functional_groups", "frame_of_reference_per_image"}:
        raise InputError("quirks", "empty_functional_groups and frame_of_reference_per_image apply to classic layouts")
    if "enhanced_file_per_phase" in quirks and layout != "enhanced":
        raise InputError("quirks", f"enhanced_file_per_phase needs layout enhanced, got {layout}")
    return frozenset(quirks)


def write_dicom_acquisition(
    series: Series4D,
    out_dir: str | os.PathLike,
    layout: str = "series_per_phase",
    modality: str = "CT",
    patient_id: str = "PHANTOM001",
    phase_descriptions: Sequence[str] | None = None,
    quirks: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write a 4D array as a synthetic DICOM acquisition under ``out_dir/<patient_id>/<study>/<series>/``.

    Args:
        series: ``array`` ``(X, Y, Z, T)`` in scanner units (CT HU, MR signal), ``affine`` voxel-to-RAS, and
            ``times`` ``(T,)`` ms (TriggerTime; default ``t * 1000 / T``) and ``cycle_ms`` (MR: NominalInterval, the
            R-R interval; default ``T`` mean frame steps).
        out_dir: the dataset folder; the patient folder ``out_dir/<patient_id>`` is created atomically.
        layout: one of :data:`LAYOUTS` (module docstring; the letters ``a``-``d`` are accepted too).
        modality: ``"CT"`` or ``"MR"``.
        patient_id: PatientID and folder name.
        phase_descriptions: layout ``series_per_phase`` only: SeriesDescription of each phase (default
            ``"Gated, 50.0%"`` style for CT, the trigger time for MR).
        quirks: names from :data:`QUIRKS`: what real exports do (module docstring).
        overwrite: replace an existing patient folder.

    Returns:
        The patient folder.
    """
    array = check_volume(series.array, 4)
    if modality not in CLASSIC_SOP_CLASS:
        raise InputError("modality", f"must be 'CT' or 'MR', got {modality!r}")
    layout = layout_name(layout)
    quirks = _check_quirks(tuple(quirks), layout)
    num_frames = array.shape[3]
    times = np.arange(num_frames) * 1000.0 / num_frames if series.times is None else np.asarray(series.times)
    if phase_descriptions is not None and (layout != "series_per_phase" or len(phase_descriptions) != num_frames):
        raise InputError("phase_descriptions", f"needs layout series_per_phase and one entry per frame ({num_frames})")
    descriptions = list(phase_descriptions or _phase_descriptions(modality, num_frames, times))
    header = copy_header(_acquisition_template(modality, patient_id), modality)
    stored, slope, intercept = encode_int16(array)
    geometry = dicom_from_affine(series.affine, array.shape[2])
    cycle_ms = series.cycle_ms or (float(np.mean(np.diff(times))) * num_frames if num_frames > 1 else 1000.0)
    acquisition = _Acquisition(header, modality, stored, slope, intercept, geometry, times, descriptions,
                               display_window(array), quirks, cycle_ms)
    patient_dir = Path(out_dir) / patient_id
    with contextlib.ExitStack() as stack:
        if "invalid_uids" in quirks:
            stack.enter_context(pydicom.config.disable_value_validation())
            header.StudyInstanceUID, header.FrameOfReferenceUID = _invalid_uid(), _invalid_uid()
        if "ungated_slices" in quirks:
            header.ScanOptions = ""  # no cardiac gating
        tmp = stack.enter_context(atomic_dir(patient_dir, overwrite=overwrite))
        study_dir = tmp / f"{header.StudyDate}-{_slug(header.StudyDescription)}"
        _LAYOUT_WRITERS[layout](acquisition, study_dir)
    return patient_dir


def _invalid_uid() -> str:
    """A unique UID with a leading-zero component, as older GE scanners wrote them (invalid, but readable)."""
    return f"1.2.840.0113619.2.5.{generate_uid().split('.')[-1][:24]}"


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
    descriptions: list[str]  # SeriesDescription per phase (layout series_per_phase)
    window: tuple[float, float]  # WindowCenter, WindowWidth
    quirks: frozenset[str] = frozenset()
    cycle_ms: float = 1000.0  # NominalInterval (MR), the R-R interval

    @property
    def image_type(self) -> list[str]:
        return ["ORIGINAL", "PRIMARY", IMAGE_TYPE_3[self.modality]]

    @property
    def frame_interval_ms(self) -> float:
        return float(np.mean(np.diff(self.times))) if len(self.times) > 1 else 50.0

    def series_header(self, series_number: int, description: str) -> Dataset:
        ds = series_header(self.header, CLASSIC_SOP_CLASS[self.modality], self.modality, series_number,
                           description, self.image_type, self.slope, self.intercept)
        if "invalid_uids" in self.quirks:
            ds.SeriesInstanceUID = _invalid_uid()
        return ds

    def slice(self, series_header: Dataset, frame: int, k: int) -> Dataset:
        """Dataset of slice ``k`` of ``frame``, with that frame's temporal attributes."""
        ds = slice_dataset(series_header, self.stored[..., frame], self.geometry, k, self.geometry.slice_spacing,
                           self.window)
        ds.TriggerTime = ds_value(self.times[frame])
        if self.modality == "MR":
            ds.TemporalPositionIdentifier = frame + 1
            ds.NumberOfTemporalPositions = len(self.times)
            ds.CardiacNumberOfImages = len(self.times)
            ds.NominalInterval = round(self.cycle_ms)
        if "ungated_slices" in self.quirks:  # one slice after the other, each a real-time series of its own
            for keyword in ("TemporalPositionIdentifier", "NumberOfTemporalPositions", "CardiacNumberOfImages",
                            "NominalInterval"):
                if keyword in ds:
                    delattr(ds, keyword)
            ds.TriggerTime = ds_value(k * 13.0)  # what the scanner wrote: constant within the slice's series
            start = 9 * 3600 + 0.001 * self.frame_interval_ms * (k * len(self.times) + frame)
            ds.AcquisitionTime = _time_text(start)
        return ds

    def save(self, ds: Dataset, path: Path) -> None:
        """Write ``ds`` to ``path`` with the per-image quirks."""
        if "frame_of_reference_per_image" in self.quirks:
            ds.FrameOfReferenceUID = _invalid_uid() if "invalid_uids" in self.quirks else generate_uid()
        if "empty_functional_groups" in self.quirks:
            ds.PerFrameFunctionalGroupsSequence = DicomSequence([Dataset()])
        save_dataset(ds, path)


def _time_text(seconds: float) -> str:
    """A DICOM TM value ``HHMMSS.ffffff`` for ``seconds`` since midnight."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    return f"{int(hours):02d}{int(minutes):02d}{rest:09.6f}"


def _write_series_per_phase(acq: _Acquisition, study_dir: Path) -> None:
    """Layout series_per_phase: one series per phase, 4D-Lung style folders and file names."""
    for frame, description in enumerate(acq.descriptions):
        header = acq.series_header(frame + 1, description)
        series_dir = study_dir / f"{frame + 1}.000000-{_slug(description)}"
        series_dir.mkdir(parents=True)
        for k in range(acq.stored.shape[2]):
            ds = acq.slice(header, frame, k)
            if acq.modality == "CT":
                del ds.TriggerTime  # 4D CT phases carry their phase in SeriesDescription, not a trigger time
            acq.save(ds, series_dir / f"1-{k + 1:03d}.dcm")


def _write_single_series(acq: _Acquisition, study_dir: Path) -> None:
    """Layout single_series: every slice and phase in one series; InstanceNumber runs over phases within each slice."""
    header = acq.series_header(1, f"Cine {acq.modality}, all slices and phases")
    series_dir = study_dir / "1-cine"
    series_dir.mkdir(parents=True)
    num_frames = len(acq.times)
    for frame in range(num_frames):
        for k in range(acq.stored.shape[2]):
            ds = acq.slice(header, frame, k)
            ds.InstanceNumber = k * num_frames + frame + 1
            acq.save(ds, series_dir / f"IM{ds.InstanceNumber:05d}.dcm")


def _write_series_per_slice(acq: _Acquisition, study_dir: Path) -> None:
    """Layout series_per_slice: one series per slice position, its time points as instances 1..T."""
    for k in range(acq.stored.shape[2]):
        header = acq.series_header(k + 1, f"Cine {acq.modality}, slice {k + 1}")
        series_dir = study_dir / f"{k + 1}-slice"
        series_dir.mkdir(parents=True)
        for frame in range(len(acq.times)):
            ds = acq.slice(header, frame, k)
            ds.InstanceNumber = frame + 1
            acq.save(ds, series_dir / f"IM{frame + 1:04d}.dcm")


def _write_enhanced(acq: _Acquisition, study_dir: Path) -> None:
    """Layout enhanced: one Enhanced MR/CT Image Storage file, frames time-major, per-frame functional groups (with
    the quirk ``enhanced_file_per_phase``, one such file per phase in one series)."""
    num_frames = len(acq.times)
    files = [[t] for t in range(num_frames)] if "enhanced_file_per_phase" in acq.quirks else [list(range(num_frames))]
    series_uid = generate_uid()
    series_dir = study_dir / "1-enhanced"
    series_dir.mkdir(parents=True)
    for index, phases in enumerate(files):
        save_dataset(_enhanced_dataset(acq, phases, series_uid, index + 1), series_dir / f"IM{index + 1:04d}.dcm")


def _enhanced_dataset(acq: _Acquisition, phases: list[int], series_uid: str, instance_number: int) -> Dataset:
    """One Enhanced MR/CT Image Storage dataset holding every slice of ``phases``."""
    geometry, num_slices = acq.geometry, acq.stored.shape[2]
    ds = copy.deepcopy(acq.header)
    date, time = now_date_time()
    ds.SOPClassUID = ENHANCED_SOP_CLASS[acq.modality]
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = acq.modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"Enhanced {acq.modality}, all slices and phases"
    ds.InstanceNumber = instance_number
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = date + time
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = num_slices * len(phases)

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
    for frame in phases:
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
                group.CardiacSynchronizationSequence[0].RRIntervalTimeNominal = float(acq.cycle_ms)
            per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    stored = acq.stored[..., phases]
    set_pixels(ds, np.moveaxis(stored, (3, 2), (0, 1)).reshape(len(phases) * num_slices, *stored.shape[:2])
               .transpose(0, 2, 1))
    return ds


_LAYOUT_WRITERS = {
    "series_per_phase": _write_series_per_phase,
    "single_series": _write_single_series,
    "series_per_slice": _write_series_per_slice,
    "enhanced": _write_enhanced,
}
