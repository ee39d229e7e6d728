"""The in-memory form of a 4D series that every reader returns and every writer takes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


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
    """

    array: np.ndarray
    affine: np.ndarray
    source: str
    times: np.ndarray | None = None
    dicom_template: Any = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along axes 0, 1, 2 (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def num_frames(self) -> int:
        return int(self.array.shape[3])
