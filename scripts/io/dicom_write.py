r"""DICOM writers of derived series: a whole derived cine as one series, or one interpolated frame as a series.

``write_derived_cine`` writes a cine (every slice, every phase, acquired and synthesised) as one classic single-frame
series a viewer plays: TriggerTime (ContentTime for a series a clock times; with the input's R-R interval as
NominalInterval for a gated MR cine), TemporalPositionIdentifier, NumberOfTemporalPositions and (MR)
CardiacNumberOfImages per image, ImageType ``DERIVED\SECONDARY``, a SourceImageSequence naming the acquired images
each frame came from, the input's StudyInstanceUID as it is (even when malformed: a result outside the patient's
study is lost), SliceLocation as the input wrote it at the same position, and pixels stored as the input stored them
(its BitsStored, PixelRepresentation, RescaleSlope/Intercept), so acquired frames keep their stored values and an MR
input without a Modality LUT gets none.

``write_derived_series`` writes one interpolated frame as a classic single-frame series (one file per slice) that
David Clunie's ``dciodvfy`` passes without error: patient, study, frame-of-reference and equipment attributes copied
from the input (values pydicom finds invalid are dropped, or for UIDs replaced by a UID derived from them, never
written back), new series and instance UIDs, ImageType ``DERIVED\SECONDARY``, geometry from the affine and int16
pixels with RescaleSlope/Intercept that keep the input's units. The SOP class is the input's for classic CT and MR
images; an enhanced (multi-frame) CT/MR input gets classic CT/MR Image Storage, which every viewer and PACS reads.

Every folder is written atomically (:func:`scripts.utils.atomic.atomic_dir`) and is never replaced unless asked.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import logging
import os
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

from scripts.io.dicom_geometry import SliceGeometry, dicom_from_affine
from scripts.io.series import SourceImage
from scripts.utils.atomic import atomic_dir
from scripts.utils.errors import InputError

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
IMAGE_TYPE_3 = {"CT": "AXIAL", "MR": "OTHER"}


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


def ds_value(value: float) -> float:
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
    intercept = ds_value((lo + hi) / 2)
    slope = ds_value((hi - lo) / 65532) if hi > lo else 1.0
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


def copy_header(template: Dataset, modality: str, keep_study_uid: bool = False) -> Dataset:
    """Patient, study, frame-of-reference, equipment and acquisition attributes of ``template`` that are valid.

    An invalid UID (e.g. leading-zero components, common in old scanner files) is replaced by a UID derived from it,
    the same for every call, so all derived series of one input still share one study and frame of reference;
    with ``keep_study_uid`` the StudyInstanceUID is copied as it is, valid or not, so the result stays in the
    patient's study. Other invalid values are dropped (written empty when the attribute is Type 2).
    """
    header = Dataset()
    if "SpecificCharacterSet" in template:
        header.SpecificCharacterSet = template.SpecificCharacterSet
    for group in ("patient", "study", "frame of reference", "equipment", "series", modality):
        for keyword in _COPIED[group]:
            element = template.data_element(keyword) if keyword in template else None
            keep = keep_study_uid and keyword == "StudyInstanceUID"
            if element is not None and not element.is_empty and (keep or _is_valid(element)):
                if keep and not _is_valid(element):
                    logger.warning("StudyInstanceUID %r of the input is not a valid UID; kept as it is, so the result "
                                   "stays in the patient's study", element.value)
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


def now_date_time() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _tm(seconds: float) -> str:
    """A DICOM TM ``HHMMSS.ffffff`` of ``seconds`` after midnight (in [0, 86400)), to the microsecond."""
    micro = round(seconds * 1_000_000)
    whole, micro = divmod(micro, 1_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}{minutes:02d}{secs:02d}.{micro:06d}"


def _clock_times(created: str, times_ms: Sequence[float]) -> list[str]:
    """ContentTime of frames ``times_ms`` apart, the first at ``created`` (TM) or early enough that the last is
    before midnight (a clock time is read as time of day: it must not wrap)."""
    offsets = [(float(t) - float(times_ms[0])) / 1000 for t in times_ms]
    start = int(created[:2]) * 3600 + int(created[2:4]) * 60 + float(created[4:])
    start = max(0.0, min(start, 86399.0 - max(offsets)))
    return [_tm(start + offset) for offset in offsets]


def series_header(header: Dataset, sop_class: str, modality: str, series_number: int, description: str,
                   image_type: Sequence[str], slope: float, intercept: float) -> Dataset:
    """``header`` plus the attributes shared by every image of one new series."""
    ds = copy.deepcopy(header)
    date, time = now_date_time()
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


def slice_dataset(series_header: Dataset, stored: np.ndarray, geometry: SliceGeometry, k: int,
                   slice_thickness: float, window: tuple[float, float]) -> Dataset:
    """Dataset of slice ``k`` of ``stored`` ``(X, Y, Z)`` int16, InstanceNumber ``k + 1``."""
    ds = copy.deepcopy(series_header)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = k + 1
    ds.ImageOrientationPatient = [ds_value(v) for v in geometry.orientation]
    ds.ImagePositionPatient = [ds_value(v) for v in geometry.positions[k]]
    ds.PixelSpacing = [ds_value(v) for v in geometry.pixel_spacing]
    ds.SliceThickness = ds_value(slice_thickness)
    ds.SpacingBetweenSlices = ds_value(geometry.slice_spacing)
    ds.SliceLocation = ds_value(geometry.slice_locations[k])
    ds.WindowCenter, ds.WindowWidth = ds_value(window[0]), ds_value(window[1])
    set_pixels(ds, stored[:, :, k].T)
    return ds


def set_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int = 16, signed: bool = True) -> None:
    """Image Pixel module for 16-bit ``pixels`` ``(frames, rows, columns)`` or ``(rows, columns)`` (int16 when
    ``signed``, else uint16), of which ``bits_stored`` bits are used."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = int(bits_stored)
    ds.HighBit = int(bits_stored) - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2" if signed else "<u2").tobytes()


def display_window(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    return (lo + hi) / 2, max(hi - lo, 1.0)


def save_dataset(ds: Dataset, path: Path) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def check_volume(volume: np.ndarray, dims: int) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != dims:
        raise InputError("volume", f"expected {dims} dimensions, got shape {volume.shape}")
    return volume


def derived_sop_class(template: Dataset) -> tuple[str, str]:
    """The classic SOP class and modality of a series derived from ``template``; InputError unless CT or MR."""
    sop_class = DERIVED_SOP_CLASS.get(str(template.get("SOPClassUID", "")))
    if sop_class is None:
        raise InputError("template", f"SOP class {template.get('SOPClassUID')} is not a CT or MR image; "
                         "derived series are written for CT and MR inputs only")
    return sop_class, "CT" if sop_class == CTImageStorage else "MR"


def slice_thickness(template: Dataset, geometry: SliceGeometry) -> float:
    """The input's SliceThickness when valid, else the slice spacing (mm)."""
    element = template.data_element("SliceThickness") if "SliceThickness" in template else None
    valid = element is not None and not element.is_empty and _is_valid(element)
    return float(element.value) if valid else geometry.slice_spacing


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
    volume = check_volume(volume, 3)
    sop_class, modality = derived_sop_class(template)
    geometry = dicom_from_affine(affine, volume.shape[2])
    stored, slope, intercept = encode_int16(volume)
    image_type = ["DERIVED", "SECONDARY", IMAGE_TYPE_3[modality]]
    header = series_header(copy_header(template, modality), sop_class, modality, series_number,
                            series_description, image_type, slope, intercept)
    header.DerivationDescription = "temporal interpolation between two frames of the input series"
    if modality == "MR" and {"CG", "PPG"} & set(_values(header.get("ScanOptions"))):
        header.TriggerTime = None  # Type 2C under cardiac/peripheral gating; an interpolated frame has no trigger
    thickness = slice_thickness(template, geometry)
    window = display_window(volume)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for k in range(volume.shape[2]):
            save_dataset(slice_dataset(header, stored, geometry, k, thickness, window), tmp / f"{k + 1:04d}.dcm")
    return Path(out_dir)


@dataclasses.dataclass(frozen=True)
class StoredEncoding:
    """How an input stored its pixels: ``value = stored * slope + intercept``, ``bits_stored`` bits, signed or not."""

    slope: float = 1.0
    intercept: float = 0.0
    bits_stored: int = 16
    signed: bool = True

    @property
    def identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0

    @property
    def limits(self) -> tuple[int, int]:
        bits = self.bits_stored
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)

    @classmethod
    def of(cls, template: Dataset) -> StoredEncoding:
        """The encoding of ``template`` (an enhanced file's from its shared, else first per-frame, functional
        groups); 16 bits stored when the input used more than 16 bits or an odd layout."""
        transform = template
        if "RescaleSlope" not in template:
            for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
                items = template.get(groups) or []
                if items and items[0].get("PixelValueTransformationSequence"):
                    transform = items[0].PixelValueTransformationSequence[0]
                    break
        slope = float(transform.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(transform.get("RescaleIntercept", 0.0) or 0.0)
        bits = int(template.get("BitsStored", 16) or 16)
        return cls(slope, intercept, bits if 1 < bits <= 16 else 16, bool(int(template.get("PixelRepresentation", 1))))

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored values (int16 or uint16) of ``values`` in the input's units: rounded, clipped to the stored bits."""
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InputError("volume", "contains NaN or infinite values; DICOM pixels cannot store them")
        lo, hi = self.limits
        stored = np.clip(np.round((values - self.intercept) / self.slope), lo, hi)
        return stored.astype(np.int16 if self.signed else np.uint16)


def _slice_locations(geometry: SliceGeometry, sources: Sequence[Sequence[SourceImage]] | None) -> list[float | None]:
    """SliceLocation per slice as the input wrote it at that position (vendors differ in sign and origin), else
    the position along the slice normal; ``None`` where the input wrote none."""
    if sources is None:
        return [float(v) for v in geometry.slice_locations]
    return [row[0].slice_location for row in sources]


@contextlib.contextmanager
def _validation(mode: int):
    """pydicom's reading and writing validation set to ``mode`` for the block."""
    settings = pydicom.config.settings
    before = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = mode
    try:
        yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = before


def _source_item(source: SourceImage) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_instance_uid
    if source.frame is not None:
        item.ReferencedFrameNumber = source.frame
    return item


def write_derived_cine(
    cine: np.ndarray,
    affine: np.ndarray,
    out_dir: str | os.PathLike,
    template: Dataset,
    frame_sources: Sequence[Sequence[int]],
    sources: Sequence[Sequence[SourceImage]] | None,
    series_description: str,
    trigger_times: Sequence[float] | None = None,
    series_number: int = 9000,
    derivation: str = "temporal interpolation between acquired frames of the input series",
    overwrite: bool = False,
    cycle_ms: float | None = None,
    clock: bool = False,
) -> Path:
    """Write a derived cine, every slice and every frame, as one classic single-frame series, atomically.

    Files ``IM<instance>.dcm``; InstanceNumber runs over the frames of slice 1, then slice 2, ... (slice-major, as
    scanners number a cine), TemporalPositionIdentifier is the frame (1-based).

    Args:
        cine: ``(X, Y, Z, M)`` float in the input's units (CT Hounsfield units, MR signal), frames in time order.
        affine: ``(4, 4)`` voxel-to-RAS mm (nibabel convention) of the volumes.
        out_dir: the series folder to create.
        template: a dataset of the input (``Series4D.dicom_template``): patient, study, frame of reference,
            equipment, acquisition attributes, SOP class and pixel encoding are taken from it.
        frame_sources: for each of the M frames, the acquired frames (0-based) it came from (one for an acquired
            frame, two for a synthesised one).
        sources: ``sources[z][t]`` the acquired images (``Series4D.dicom_sources``) the SourceImageSequence names and
            whose SliceLocation is repeated; ``None`` writes neither.
        series_description: SeriesDescription.
        trigger_times: ``(M,)`` ms (TriggerTime), or None when the input's times are unknown.
        clock: ``trigger_times`` are a clock's (a real-time or dynamic series a clock times, not a trigger), so they
            are written as ContentTime (the series' creation time plus each frame's time) instead of TriggerTime,
            which says "delay after the R wave" and would read back as one gated cycle; TriggerTime is then written
            empty where ScanOptions says the acquisition was gated (CG, PPG: Type 2C there).
        series_number: SeriesNumber.
        derivation: DerivationDescription.
        overwrite: replace an existing ``out_dir``; otherwise an existing one is an OutputExistsError.
        cycle_ms: the R-R interval (ms) of a gated MR cine (``Series4D.cycle_ms``), written as NominalInterval on
            every image, so the cine reads back as the same cycle (a prospectively triggered cine's frames span only
            part of it); None (or a CT) writes none.

    Returns ``out_dir``; raises InputError for a template that is neither CT nor MR, a non-finite cine, or an affine
    DICOM slices cannot hold.
    """
    cine = check_volume(cine, 4)
    num_slices, num_frames = cine.shape[2], cine.shape[3]
    if len(frame_sources) != num_frames or (trigger_times is not None and len(trigger_times) != num_frames):
        raise ValueError(f"frame_sources and trigger_times need one entry per frame ({num_frames})")
    sop_class, modality = derived_sop_class(template)
    geometry = dicom_from_affine(affine, num_slices)
    encoding = StoredEncoding.of(template)
    stored = encoding.encode(cine)
    with _validation(pydicom.config.IGNORE):  # copy_header says once what it keeps or replaces
        header = series_header(copy_header(template, modality, keep_study_uid=True), sop_class, modality,
                                series_number, series_description, ["DERIVED", "SECONDARY", IMAGE_TYPE_3[modality]],
                                encoding.slope, encoding.intercept)
    if modality == "MR" and encoding.identity:  # no Modality LUT in an MR image unless the input had one
        del header.RescaleSlope, header.RescaleIntercept
    header.DerivationDescription = derivation
    if modality == "MR" and cycle_ms is not None:
        header.NominalInterval = round(float(cycle_ms))  # IS, ms
    clock_times = _clock_times(header.ContentTime, trigger_times) if clock and trigger_times is not None else None
    gated_scan = bool({"CG", "PPG"} & set(_values(header.get("ScanOptions"))))
    window = display_window(cine)
    thickness = slice_thickness(template, geometry)
    locations = _slice_locations(geometry, sources)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp, _validation(pydicom.config.IGNORE):
        for k in range(num_slices):
            for m in range(num_frames):
                ds = slice_dataset(header, stored[..., m], geometry, k, thickness, window)
                ds.InstanceNumber = k * num_frames + m + 1
                if locations[k] is None:
                    del ds.SliceLocation
                else:
                    ds.SliceLocation = ds_value(locations[k])
                if clock_times is not None:
                    ds.ContentTime = clock_times[m]
                    if gated_scan:
                        ds.TriggerTime = None
                elif trigger_times is not None:
                    ds.TriggerTime = ds_value(trigger_times[m])
                ds.TemporalPositionIdentifier = m + 1
                ds.NumberOfTemporalPositions = num_frames
                if modality == "MR":
                    ds.CardiacNumberOfImages = num_frames
                if sources is not None:
                    ds.SourceImageSequence = DicomSequence([_source_item(sources[k][t]) for t in frame_sources[m]])
                set_pixels(ds, stored[:, :, k, m].T, encoding.bits_stored, encoding.signed)
                save_dataset(ds, tmp / f"IM{ds.InstanceNumber:05d}.dcm")
    logger.debug("wrote %s: %d slices x %d frames", out_dir, num_slices, num_frames)
    return Path(out_dir)
