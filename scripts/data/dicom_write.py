"""DICOM writers: derived series for interpolated frames, and synthetic 4D acquisitions in the layouts scanners export.

``write_derived_series`` writes one interpolated frame as a classic single-frame series (one file per slice) that
David Clunie's ``dciodvfy`` passes without error: patient, study, frame-of-reference and equipment attributes copied
from the input (values pydicom finds invalid are dropped, or for UIDs replaced by a UID derived from them, never
written back), new series and instance UIDs, ImageType ``DERIVED\\SECONDARY``, geometry from the affine and int16
pixels with RescaleSlope/Intercept that keep the input's units. The SOP class is the input's for classic CT and MR
images; an enhanced (multi-frame) CT/MR input gets classic CT/MR Image Storage, which every viewer and PACS reads.

``write_dicom_acquisition`` writes a 4D array as a whole acquisition in one of the layouts
:func:`scripts.data.dicom_read.read_dicom_series` accepts, with the tags real scanners use to order it:

- ``"a"``: one series per phase (4D-Lung / respiratory 4D CT): ``<patient>/<study>/<series per phase>/*.dcm``, the
  phase as a percentage in SeriesDescription (CT) or TriggerTime + TemporalPositionIdentifier (MR);
- ``"b"``: one series holding every slice and phase (GE/Philips cine), InstanceNumber slice-major, TriggerTime;
- ``"c"``: one series per slice position, the time points as its instances (Siemens cine), TriggerTime;
- ``"d"``: one Enhanced MR/CT Image Storage file, per-frame functional groups (FrameContentSequence with
  TemporalPositionIndex, TemporalPositionTimeOffset and InStackPositionNumber, PlanePositionSequence,
  CardiacSynchronizationSequence for MR).
  Layouts a-c pass ``dciodvfy`` without error; ``d`` carries what a reader needs, not every Enhanced MR/CT module.

Every folder is written atomically (:func:`scripts.atomic.atomic_dir`) and is never replaced unless asked.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds, validate_value

from scripts.atomic import atomic_dir
from scripts.data.dicom_geometry import SliceGeometry, dicom_from_affine
from scripts.data.series import Series4D
from scripts.errors import InputError

logger = logging.getLogger(__name__)

# Classic SOP class a derived series gets, by the input's SOP class.
DERIVED_SOP_CLASS = {
    CTImageStorage: CTImageStorage,
    MRImageStorage: MRImageStorage,
    EnhancedCTImageStorage: CTImageStorage,
    EnhancedMRImageStorage: MRImageStorage,
}
CLASSIC_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}
ENHANCED_SOP_CLASS = {"CT": EnhancedCTImageStorage, "MR": EnhancedMRImageStorage}

# ImageType value 3, required by the CT and MR Image modules (defined terms).
_IMAGE_TYPE_3 = {"CT": "AXIAL", "MR": "OTHER"}
# Attributes copied from the input, by module. Type 2 ones are written empty when the input lacks a valid value.
_COPIED = {
    "patient": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize",
                "PatientWeight"),
    "study": ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
              "StudyDescription"),
    "frame of reference": ("FrameOfReferenceUID", "PositionReferenceIndicator"),
    "equipment": ("Manufacturer", "InstitutionName", "StationName", "ManufacturerModelName", "DeviceSerialNumber",
                  "SoftwareVersions"),
    "series": ("BodyPartExamined", "PatientPosition"),
    "CT": ("KVP", "AcquisitionNumber", "ConvolutionKernel"),
    "MR": ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime",
           "EchoTrainLength", "InversionTime", "FlipAngle", "MagneticFieldStrength", "ImagedNucleus", "SequenceName"),
}
_TYPE2 = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "StudyID", "AccessionNumber", "PositionReferenceIndicator", "Manufacturer", "PatientPosition", "KVP",
    "AcquisitionNumber", "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength",
}
# Type 1 MR attributes a template may lack (e.g. an enhanced input keeps them per frame): "research mode", "none".
_MR_TYPE1_DEFAULTS = {"ScanningSequence": "RM", "SequenceVariant": "NONE"}


def _ds(value: float) -> float:
    """``value`` as a DICOM decimal string holds it (16 characters), so pixels are encoded with the written value."""
    return float(format_number_as_ds(float(value)))


def encode_int16(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored int16 values with RescaleSlope and RescaleIntercept so that ``stored * slope + intercept ~ values``.

    Integer-valued data within int16 (CT Hounsfield units) are kept exactly (slope 1, intercept 0); anything else is
    mapped linearly onto the int16 range, so the error is at most ``slope / 2`` = range / 131068.

    Args:
        values: any shape, float, in the input's units; must be finite.

    Returns:
        ``(stored int16 array of the same shape, slope, intercept)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("volume", "contains NaN or infinite values; DICOM pixels cannot store them")
    lo, hi = float(values.min()), float(values.max())
    if lo >= -32768 and hi <= 32767 and np.array_equal(values, np.round(values)):
        return values.astype(np.int16), 1.0, 0.0
    intercept = _ds((lo + hi) / 2)
    slope = _ds((hi - lo) / 65532) if hi > lo else 1.0
    stored = np.clip(np.round((values - intercept) / slope), -32768, 32767)
    return stored.astype(np.int16), slope, intercept


def _values(value) -> list:
    """A DICOM value as a list (empty for a missing or empty one)."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]


def _is_valid(element: pydicom.DataElement) -> bool:
    """Whether every value of a text element is valid for its VR (pydicom's checks: UID syntax, date format ...)."""
    try:
        for value in _values(element.value):
            validate_value(element.VR, str(value), pydicom.config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _copy_header(template: Dataset, modality: str) -> Dataset:
    """Patient, study, frame-of-reference, equipment and acquisition attributes of ``template`` that are valid.

    An invalid UID (e.g. leading-zero components, common in old scanner files) is replaced by a UID derived from it,
    the same for every call, so all derived series of one input still share one study and frame of reference.
    Other invalid values are dropped (written empty when the attribute is Type 2).
    """
    header = Dataset()
    if "SpecificCharacterSet" in template:
        header.SpecificCharacterSet = template.SpecificCharacterSet
    for group in ("patient", "study", "frame of reference", "equipment", "series", modality):
        for keyword in _COPIED[group]:
            element = template.data_element(keyword) if keyword in template else None
            if element is not None and not element.is_empty and _is_valid(element):
                header.add(copy.deepcopy(element))
            elif element is not None and element.VR == "UI" and not element.is_empty:
                logger.warning("%s %r of the input is not a valid UID; writing a UID derived from it", keyword,
                               element.value)
                setattr(header, keyword, generate_uid(entropy_srcs=[str(element.value)]))
            elif keyword in _TYPE2:
                if element is not None and not element.is_empty:
                    logger.warning("%s %r of the input is invalid; writing it empty", keyword, element.value)
                setattr(header, keyword, None)
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        if keyword not in header:
            setattr(header, keyword, generate_uid())
    if modality == "MR":
        for keyword, default in _MR_TYPE1_DEFAULTS.items():
            header.setdefault(keyword, default)
    return header


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _series_header(header: Dataset, sop_class: str, modality: str, series_number: int, description: str,
                   image_type: Sequence[str], slope: float, intercept: float) -> Dataset:
    """``header`` plus the attributes shared by every image of one new series."""
    ds = copy.deepcopy(header)
    date, time = _now()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ImageType = list(image_type)
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if modality == "CT":
        ds.RescaleType = "HU"
    return ds


def _slice_dataset(series_header: Dataset, stored: np.ndarray, geometry: SliceGeometry, k: int,
                   slice_thickness: float, window: tuple[float, float]) -> Dataset:
    """Dataset of slice ``k`` of ``stored`` ``(X, Y, Z)`` int16, InstanceNumber ``k + 1``."""
    ds = copy.deepcopy(series_header)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = k + 1
    ds.ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
    ds.ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
    ds.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
    ds.SliceThickness = _ds(slice_thickness)
    ds.SpacingBetweenSlices = _ds(geometry.slice_spacing)
    ds.SliceLocation = _ds(geometry.slice_locations[k])
    ds.WindowCenter, ds.WindowWidth = _ds(window[0]), _ds(window[1])
    _set_pixels(ds, stored[:, :, k].T)
    return ds


def _set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Image Pixel module for int16 ``pixels`` ``(frames, rows, columns)`` or ``(rows, columns)``."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()


def _window(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    return (lo + hi) / 2, max(hi - lo, 1.0)


def _save(ds: Dataset, path: Path) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _check_volume(volume: np.ndarray, dims: int) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != dims:
        raise InputError("volume", f"expected {dims} dimensions, got shape {volume.shape}")
    return volume


def write_derived_series(
    volume: np.ndarray,
    affine: np.ndarray,
    out_dir: str | os.PathLike,
    template: Dataset,
    series_description: str,
    series_number: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Write one derived frame as a DICOM series, one file per slice (``0001.dcm`` ...), atomically.

    Args:
        volume: ``(X, Y, Z)`` float, in the input's units (CT Hounsfield units, MR signal).
        affine: ``(4, 4)`` voxel-to-RAS mm (nibabel convention) of ``volume``.
        out_dir: the series folder to create.
        template: a dataset of the input (``Series4D.dicom_template``): its patient, study, frame of reference,
            equipment, acquisition attributes and SOP class are reused.
        series_description: SeriesDescription, e.g. ``"TMSDF-KD t=0.50"``.
        series_number: SeriesNumber of the new series.
        overwrite: replace an existing ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        InputError: a template that is neither CT nor MR, a non-finite volume, or an affine DICOM cannot hold.
        OutputExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    volume = _check_volume(volume, 3)
    sop_class = DERIVED_SOP_CLASS.get(str(template.get("SOPClassUID", "")))
    if sop_class is None:
        raise InputError("template", f"SOP class {template.get('SOPClassUID')} is not a CT or MR image; "
                         "derived series are written for CT and MR inputs only")
    modality = "CT" if sop_class == CTImageStorage else "MR"
    geometry = dicom_from_affine(affine, volume.shape[2])
    stored, slope, intercept = encode_int16(volume)
    image_type = ["DERIVED", "SECONDARY", _IMAGE_TYPE_3[modality]]
    header = _series_header(_copy_header(template, modality), sop_class, modality, series_number,
                            series_description, image_type, slope, intercept)
    header.DerivationDescription = "temporal interpolation between two frames of the input series"
    if modality == "MR" and {"CG", "PPG"} & set(_values(header.get("ScanOptions"))):
        header.TriggerTime = None  # Type 2C under cardiac/peripheral gating; an interpolated frame has no trigger
    thickness_element = template.data_element("SliceThickness") if "SliceThickness" in template else None
    valid_thickness = thickness_element is not None and not thickness_element.is_empty and _is_valid(thickness_element)
    thickness = float(thickness_element.value) if valid_thickness else geometry.slice_spacing
    window = _window(volume)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for k in range(volume.shape[2]):
            _save(_slice_dataset(header, stored, geometry, k, thickness, window), tmp / f"{k + 1:04d}.dcm")
    return Path(out_dir)


# --- synthetic acquisitions -------------------------------------------------------------------------------------

def _acquisition_template(modality: str, patient_id: str) -> Dataset:
    """Patient, study and acquisition attributes of a new synthetic acquisition."""
    date, time = _now()
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
    array = _check_volume(series.array, 4)
    if modality not in CLASSIC_SOP_CLASS:
        raise InputError("modality", f"must be 'CT' or 'MR', got {modality!r}")
    if layout not in _LAYOUT_WRITERS:
        raise InputError("layout", f"must be one of {sorted(_LAYOUT_WRITERS)}, got {layout!r}")
    num_frames = array.shape[3]
    times = np.arange(num_frames) * 1000.0 / num_frames if series.times is None else np.asarray(series.times)
    if phase_descriptions is not None and (layout != "a" or len(phase_descriptions) != num_frames):
        raise InputError("phase_descriptions", f"needs layout 'a' and one entry per frame ({num_frames})")
    descriptions = list(phase_descriptions or _phase_descriptions(modality, num_frames, times))
    header = _copy_header(_acquisition_template(modality, patient_id), modality)
    stored, slope, intercept = encode_int16(array)
    geometry = dicom_from_affine(series.affine, array.shape[2])
    acquisition = _Acquisition(header, modality, stored, slope, intercept, geometry, times, descriptions,
                               _window(array))
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
        return ["ORIGINAL", "PRIMARY", _IMAGE_TYPE_3[self.modality]]

    def series_header(self, series_number: int, description: str) -> Dataset:
        return _series_header(self.header, CLASSIC_SOP_CLASS[self.modality], self.modality, series_number,
                              description, self.image_type, self.slope, self.intercept)

    def slice(self, series_header: Dataset, frame: int, k: int) -> Dataset:
        """Dataset of slice ``k`` of ``frame``, with that frame's temporal attributes."""
        ds = _slice_dataset(series_header, self.stored[..., frame], self.geometry, k, self.geometry.slice_spacing,
                            self.window)
        ds.TriggerTime = _ds(self.times[frame])
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
            _save(ds, series_dir / f"1-{k + 1:03d}.dcm")


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
            _save(ds, series_dir / f"IM{ds.InstanceNumber:05d}.dcm")


def _write_series_per_slice(acq: _Acquisition, study_dir: Path) -> None:
    """Layout c: one series per slice position, its time points as instances 1..T."""
    for k in range(acq.stored.shape[2]):
        header = acq.series_header(k + 1, f"Cine {acq.modality}, slice {k + 1}")
        series_dir = study_dir / f"{k + 1}-slice"
        series_dir.mkdir(parents=True)
        for frame in range(len(acq.times)):
            ds = acq.slice(header, frame, k)
            ds.InstanceNumber = frame + 1
            _save(ds, series_dir / f"IM{frame + 1:04d}.dcm")


def _write_enhanced(acq: _Acquisition, study_dir: Path) -> None:
    """Layout d: one Enhanced MR/CT Image Storage file, frames time-major, per-frame functional groups."""
    geometry, num_slices, num_frames = acq.geometry, acq.stored.shape[2], len(acq.times)
    ds = copy.deepcopy(acq.header)
    date, time = _now()
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
    shared.PixelMeasuresSequence[0].PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
    shared.PixelMeasuresSequence[0].SliceThickness = _ds(geometry.slice_spacing)
    shared.PixelMeasuresSequence[0].SpacingBetweenSlices = _ds(geometry.slice_spacing)
    shared.PlaneOrientationSequence = DicomSequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
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
            group.PlanePositionSequence[0].ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
            if acq.modality == "MR":
                group.CardiacSynchronizationSequence = DicomSequence([Dataset()])
                group.CardiacSynchronizationSequence[0].NominalCardiacTriggerDelayTime = _ds(acq.times[frame])
            per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    _set_pixels(ds, np.moveaxis(acq.stored, (3, 2), (0, 1)).reshape(num_frames * num_slices, *acq.stored.shape[:2])
                .transpose(0, 2, 1))
    series_dir = study_dir / "1-enhanced"
    series_dir.mkdir(parents=True)
    _save(ds, series_dir / "IM0001.dcm")


_LAYOUT_WRITERS = {
    "a": _write_series_per_phase,
    "b": _write_single_series,
    "c": _write_series_per_slice,
    "d": _write_enhanced,
}
