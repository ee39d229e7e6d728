"""DICOM writer of derived series: one interpolated frame as a classic single-frame series.

``write_derived_series`` writes one interpolated frame as a classic single-frame series (one file per slice) that
David Clunie's ``dciodvfy`` passes without error: patient, study, frame-of-reference and equipment attributes copied
from the input (values pydicom finds invalid are dropped, or for UIDs replaced by a UID derived from them, never
written back), new series and instance UIDs, ImageType ``DERIVED\SECONDARY``, geometry from the affine and int16
pixels with RescaleSlope/Intercept that keep the input's units. The SOP class is the input's for classic CT and MR
images; an enhanced (multi-frame) CT/MR input gets classic CT/MR Image Storage, which every viewer and PACS reads.

Every folder is written atomically (:func:`scripts.utils.atomic.atomic_dir`) and is never replaced unless asked.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
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


def copy_header(template: Dataset, modality: str) -> Dataset:
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


def now_date_time() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


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


def set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Image Pixel module for int16 ``pixels`` ``(frames, rows, columns)`` or ``(rows, columns)``."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()


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
    sop_class = DERIVED_SOP_CLASS.get(str(template.get("SOPClassUID", "")))
    if sop_class is None:
        raise InputError("template", f"SOP class {template.get('SOPClassUID')} is not a CT or MR image; "
                         "derived series are written for CT and MR inputs only")
    modality = "CT" if sop_class == CTImageStorage else "MR"
    geometry = dicom_from_affine(affine, volume.shape[2])
    stored, slope, intercept = encode_int16(volume)
    image_type = ["DERIVED", "SECONDARY", IMAGE_TYPE_3[modality]]
    header = series_header(copy_header(template, modality), sop_class, modality, series_number,
                            series_description, image_type, slope, intercept)
    header.DerivationDescription = "temporal interpolation between two frames of the input series"
    if modality == "MR" and {"CG", "PPG"} & set(_values(header.get("ScanOptions"))):
        header.TriggerTime = None  # Type 2C under cardiac/peripheral gating; an interpolated frame has no trigger
    thickness_element = template.data_element("SliceThickness") if "SliceThickness" in template else None
    valid_thickness = thickness_element is not None and not thickness_element.is_empty and _is_valid(thickness_element)
    thickness = float(thickness_element.value) if valid_thickness else geometry.slice_spacing
    window = display_window(volume)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for k in range(volume.shape[2]):
            save_dataset(slice_dataset(header, stored, geometry, k, thickness, window), tmp / f"{k + 1:04d}.dcm")
    return Path(out_dir)
