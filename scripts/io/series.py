"""The in-memory form of a 4D series that every reader returns and every writer takes."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np


class SourceImage(NamedTuple):
    """One acquired DICOM image: what a derived image's SourceImageSequence names, and where the input placed it.

    Attributes:
        sop_class_uid, sop_instance_uid: of the file holding the image.
        frame: 1-based frame number within a multi-frame file, ``None`` for a single-frame file.
        slice_location: the input's SliceLocation (mm) as written by the scanner, ``None`` when absent.
    """

    sop_class_uid: str
    sop_instance_uid: str
    frame: int | None = None
    slice_location: float | None = None

    @classmethod
    def of(cls, header: Any, frame: int | None = None) -> SourceImage:
        """From a pydicom dataset (``frame``: 0-based index in a multi-frame file, or ``None``)."""
        try:
            location = float(header.get("SliceLocation"))
        except (TypeError, ValueError):
            location = None
        return cls(str(header.get("SOPClassUID", "")), str(header.get("SOPInstanceUID", "")),
                   None if frame is None else frame + 1, location)


@dataclasses.dataclass
class Series4D:
    """One 4D acquisition (3D + time) on one grid.

    Attributes:
        array: ``(X, Y, Z, T)`` float32 voxels in the scanner's units (MR signal, CT Hounsfield units). Axis 0 runs
            along the image rows (DICOM ImageOrientationPatient's first vector), axis 1 down the columns, axis 2
            along the slice normal in the order of increasing position, axis 3 over time.
        affine: ``(4, 4)`` float64 map from voxel index ``(i, j, k, 1)`` to RAS world coordinates in mm, the nibabel
            convention (a DICOM reader converts from LPS).
        source: where it came from (file or folder), used in error messages.
        times: ``(T,)`` acquisition times in ms (e.g. DICOM TriggerTime) when known, else ``None``.
        dicom_template: for a DICOM input, one of its datasets (pixel data removed), so derived DICOM outputs can
            copy the patient, study and equipment attributes; ``None`` otherwise.
        dicom_sources: for a DICOM input, ``dicom_sources[z][t]`` identifies the acquired image of slice ``z`` (axis-2
            order) at frame ``t`` (:class:`SourceImage`), so derived images can reference what they came from and
            repeat the input's SliceLocation; ``None`` otherwise.
        xform_code: the NIfTI code of the space ``affine`` maps to (1 scanner, 2 aligned, 3 Talairach, 4 MNI, 5
            template; 0 unknown), as a NIfTI input's header gives it (its sform's, else its qform's); 1 for DICOM
            inputs. NIfTI outputs carry it, so they claim what the input claimed.
        gated: True when the frames are one ECG-gated cycle (DICOM TriggerTime differs at every slice position and
            spans less than one R-R interval), False when they are not (a clock times them, AcquisitionTime /
            ContentTime: a real-time or dynamic series; or TriggerTimes run on over several heartbeats, as GE
            first-pass perfusion writes them), None when unknown (NIfTI, or frames ordered by index alone).
        cycle_ms: the R-R interval in ms of a series that TriggerTime times (DICOM NominalInterval, else
            ``60000 / HeartRate``, the median over the images, where it lies in 250-3000 ms), else ``None``.
        timed_by: the DICOM attribute ``times`` came from (``TriggerTime``, or a clock: ``AcquisitionTime``,
            ``ContentTime``), else ``None``.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str
    times: np.ndarray | None = None
    dicom_template: Any = None
    dicom_sources: list[list[SourceImage]] | None = None
    xform_code: int = 1
    gated: bool | None = None
    cycle_ms: float | None = None
    timed_by: str | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along axes 0, 1, 2 (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def num_frames(self) -> int:
        return int(self.array.shape[3])
