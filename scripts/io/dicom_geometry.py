"""DICOM patient geometry <-> voxel-to-RAS affine, shared by the DICOM reader and writers.

DICOM places pixel (column ``i``, row ``j``) of a slice at ``ImagePositionPatient + i * PixelSpacing[1] * r +
j * PixelSpacing[0] * c`` in LPS millimetres, where ``r`` and ``c`` are the two unit vectors of
ImageOrientationPatient (along a row, down a column). A :class:`~scripts.io.series.Series4D` volume is indexed
``(i, j, k)`` (axis 0 along ``r``, axis 1 along ``c``, axis 2 over slices in increasing position along the normal
``r x c``), and its affine maps that index to RAS (nibabel's convention), so::

    affine = LPS_TO_RAS @ [[r * PixelSpacing[1], c * PixelSpacing[0], slice_step, ImagePositionPatient of slice 0],
                           [0, 0, 0, 1]]

``slice_step`` is the vector between consecutive slice positions (along the normal, or sheared for a gantry tilt),
so oblique and double-oblique stacks keep their geometry exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scripts.utils.errors import InputError

# x -> -x, y -> -y: DICOM LPS to NIfTI/nibabel RAS (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Two directions closer than this (in cosine units) count as equal; two positions closer than POSITION_TOL_MM are
# the same place. Both are far above the rounding of 16-character DICOM decimal strings and far below any real
# voxel size.
DIRECTION_TOL = 1e-4
POSITION_TOL_MM = 1e-2


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """Unit normal ``r x c`` of a slice from its ImageOrientationPatient ``(6,)`` (LPS)."""
    orientation = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def affine_from_dicom(
    orientation: np.ndarray, pixel_spacing: np.ndarray, first_position: np.ndarray, slice_step: np.ndarray
) -> np.ndarray:
    """Voxel-to-RAS affine ``(4, 4)`` of a stack of slices.

    Args:
        orientation: ImageOrientationPatient ``(6,)``, LPS unit vectors along a row then down a column.
        pixel_spacing: PixelSpacing ``(2,)`` in mm: between rows, then between columns (DICOM order).
        first_position: ImagePositionPatient ``(3,)`` in LPS mm of the first slice (lowest along the normal).
        slice_step: ``(3,)`` LPS mm from one slice position to the next.
    """
    orientation = np.asarray(orientation, dtype=np.float64)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * float(pixel_spacing[1])
    lps[:3, 1] = orientation[3:] * float(pixel_spacing[0])
    lps[:3, 2] = np.asarray(slice_step, dtype=np.float64)
    lps[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return LPS_TO_RAS @ lps


@dataclasses.dataclass
class SliceGeometry:
    """The DICOM attributes that place the slices of one volume.

    Attributes:
        orientation: ImageOrientationPatient ``(6,)``.
        pixel_spacing: PixelSpacing ``(2,)`` mm, DICOM order (row spacing, column spacing).
        positions: ImagePositionPatient of every slice ``(Z, 3)`` LPS mm, in volume axis-2 order.
        slice_spacing: distance between neighbouring slice planes along the normal in mm (SpacingBetweenSlices).
    """

    orientation: np.ndarray
    pixel_spacing: np.ndarray
    positions: np.ndarray
    slice_spacing: float

    @property
    def slice_locations(self) -> np.ndarray:
        """SliceLocation ``(Z,)`` in mm: each position projected on the slice normal."""
        return self.positions @ slice_normal(self.orientation)


def dicom_from_affine(affine: np.ndarray, num_slices: int) -> SliceGeometry:
    """Slice geometry of a ``(X, Y, num_slices)`` volume with voxel-to-RAS ``affine``; inverse of ``affine_from_dicom``.

    Raises:
        InputError: if axes 0 and 1 are not perpendicular or axis 2 lies in their plane (DICOM slices cannot hold it).
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing_x, spacing_y = np.linalg.norm(lps[:3, :2], axis=0)
    row, col = lps[:3, 0] / spacing_x, lps[:3, 1] / spacing_y
    if abs(float(row @ col)) > DIRECTION_TOL:
        raise InputError("affine", "voxel axes 0 and 1 are not perpendicular; DICOM slices need a rectangular grid")
    orientation = np.concatenate([row, col])
    step = lps[:3, 2]
    slice_spacing = abs(float(step @ slice_normal(orientation)))
    if slice_spacing < POSITION_TOL_MM:
        raise InputError("affine", "voxel axis 2 lies in the slice plane; DICOM slices need it to leave the plane")
    positions = lps[:3, 3] + np.arange(num_slices)[:, None] * step
    return SliceGeometry(orientation, np.array([spacing_y, spacing_x]), positions, slice_spacing)
