"""Read NIfTI inputs into a :class:`~scripts.io.series.Series4D`, with errors a user can act on.

Every problem with an input file is an :class:`~scripts.utils.errors.InputError` that names the file and says what is
wrong: missing, not a regular file (``/dev/zero``), unreadable (truncated, corrupt gzip, not NIfTI), more voxels than
the memory this process may use, a NaN / zero affine, the wrong dimensionality, too few frames, non-finite voxels, or a
constant image (nothing to normalise). The header is read and checked first: a file whose header declares more voxels
than fit is refused before any voxel is read.

Dimensionality: a 4D series is ``(X, Y, Z, T)``. Some tools store time in NIfTI's fifth dimension and leave the
fourth at 1, ``(X, Y, Z, 1, T)``; any image of five or more dimensions whose axes after the third hold exactly one
axis longer than 1 is read as that axis being time (the singletons are dropped). Everything else that is not 4D is
refused.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from scripts.io.series import Series4D
from scripts.utils.errors import InputError
from scripts.utils.memory import check_allocation

__all__ = ["check_affine", "frame_endpoints", "nifti_4d_shape", "nifti_header_shape", "read_nifti_4d", "read_two_volumes", "select_endpoints"]

# What nibabel raises for files it cannot parse or decompress (gzip.BadGzipFile is an OSError).
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, ValueError)

# The most a deflate (gzip) stream can expand: 1032:1.
_MAX_DEFLATE_RATIO = 1032

# NIfTI time units -> milliseconds.
_MS_PER_UNIT = {"sec": 1000.0, "msec": 1.0, "usec": 1e-3}

# Tolerances when two volumes must share a grid: NIfTI stores the affine in float32.
_SPACING_RTOL = 1e-4
_DIRECTION_ATOL = 1e-4
_ORIGIN_ATOL_MM = 1e-3


def _verify_gzip(path: str | os.PathLike) -> None:
    """Decompress a gzip file to its end, which checks its CRC and length.

    nibabel reads only the bytes the image needs and so never reaches the gzip trailer: a corrupt stream can decode
    to wrong voxels without any error.
    """
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 22):
            pass


def check_affine(affine: np.ndarray, source: str | os.PathLike) -> None:
    """Refuse a voxel -> world map that places no voxel in space: NaN/Inf entries, or a zero or degenerate 3x3 part
    (a zero voxel spacing, two axes along one direction). Checked before any voxel is read or any work is done."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(source, f"the voxel-to-world affine is not finite ({np.round(affine, 4).tolist()}); the "
                                 "header's geometry is broken: fix the conversion that wrote it")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(affine[:3, :3])) <= 1e-12 * max(float(np.prod(spacing)), 1e-300):
        raise InputError(source, f"the voxel-to-world affine is degenerate (voxel spacing {np.round(spacing, 4).tolist()} "
                                 "mm, or axes along one direction); the header's geometry is broken: fix the "
                                 "conversion that wrote it")


def _open(path: str | os.PathLike):
    """The image with its header read and checked, no voxels read yet: a regular file, readable as NIfTI, finite and
    non-degenerate geometry, and voxels that fit in the memory this process may use."""
    if not os.path.exists(path):
        raise InputError(path, "file not found")
    if not os.path.isfile(path):
        raise InputError(path, "is not a regular file (a device, pipe or socket); give a NIfTI file")
    try:
        image = nib.load(os.fspath(path))
        shape, stored = tuple(int(n) for n in image.shape), image.get_data_dtype()
    except _READ_ERRORS as err:
        raise InputError(path, f"cannot read it as NIfTI (truncated, corrupt or not a NIfTI file?): {err}") from err
    declared = int(np.prod(shape, dtype=object)) * stored.itemsize
    check_allocation(declared + int(np.prod(shape, dtype=object)) * 4, path,
                     f"reading the {'x'.join(map(str, shape))} voxels its header declares")
    _check_size(path, image, declared)
    check_affine(image.affine, path)
    return image


def _check_size(path: str | os.PathLike, image, declared: int) -> None:
    """Refuse a file too small to hold the voxels its header declares (a cut copy, or a forged header), from its
    size alone: an uncompressed file must hold them after ``vox_offset``; deflate expands at most 1032:1."""
    data_file = getattr(image.file_map.get("image"), "filename", None) or path  # .img beside a .hdr
    size = os.path.getsize(data_file)
    offset = int(getattr(image.dataobj, "offset", 0) or 0)  # where the voxels start (vox_offset)
    compressed = os.fspath(data_file).endswith(".gz")
    room = size * _MAX_DEFLATE_RATIO if compressed else size - offset
    if declared > room:
        held = f"at most {room} bytes" if compressed else f"{max(room, 0)} bytes"
        raise InputError(path, f"cannot read it as NIfTI (truncated, corrupt or not a NIfTI file?): its header "
                               f"declares {declared} bytes of voxels but the {size}-byte "
                               f"{'gzip ' if compressed else ''}file holds {held}")


def _load(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header | None]:
    """Load the voxels (float32, NIfTI scaling applied), the affine and the header; any failure -> InputError."""
    image = _open(path)
    try:
        array = np.asarray(image.get_fdata(dtype=np.float32))
        if os.fspath(path).endswith(".gz"):
            _verify_gzip(path)
    except _READ_ERRORS as err:
        raise InputError(path, f"cannot read it as NIfTI (truncated, corrupt or not a NIfTI file?): {err}") from err
    return array, np.asarray(image.affine, dtype=np.float64), getattr(image, "header", None)


def _xform_code(header: nib.Nifti1Header | None) -> int:
    """The code of the space nibabel's affine maps to: the sform's when set, else the qform's (0: neither; 1 for a
    format without the codes)."""
    if header is None or "sform_code" not in header:
        return 1
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    return sform if sform > 0 else qform


def _check_values(array: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse NaN/Inf voxels and a constant image (min-max normalisation would divide by zero)."""
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise InputError(path, f"{bad} voxel(s) are NaN or infinite; every voxel must be a finite number")
    lo, hi = float(array.min()), float(array.max())
    if lo == hi:
        raise InputError(path, f"the image is constant (every voxel is {lo}); there is nothing to interpolate")


def _shape_4d(shape: tuple[int, ...], path: str | os.PathLike) -> tuple[int, int, int, int]:
    """The (X, Y, Z, T) shape of an image of ``shape``; (X, Y, Z, 1, T) layouts are squeezed (module docstring)."""
    if len(shape) > 4 and sum(n > 1 for n in shape[3:]) <= 1:
        shape = (*shape[:3], int(np.prod(shape[3:])))
    if len(shape) != 4:
        raise InputError(
            path,
            f"is {len(shape)}D with shape {tuple(shape)}; expected a 4D series (X, Y, Z, T) "
            "(for two 3D volumes give both files instead)",
        )
    if shape[3] < 2:
        raise InputError(path, f"has {shape[3]} frame(s) (shape {tuple(shape)}); at least 2 are needed")
    return tuple(int(n) for n in shape)


NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: str | os.PathLike) -> str | None:
    """``<name>`` of ``<name>.nii.gz`` / ``<name>.nii`` (a case's name, and its sidecar's ``<name>.json``), or None
    for other file names."""
    name = Path(path).name
    return next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def nifti_header_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape a NIfTI header declares, after the checks made before reading any voxel (a regular, readable file;
    voxels that fit in memory; a finite, non-degenerate affine); :class:`InputError` naming the file otherwise."""
    return tuple(int(n) for n in _open(path).shape)


def nifti_4d_shape(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """The ``(X, Y, Z, T)`` shape of a 4D NIfTI from its header alone (no voxels are read).

    Raises:
        InputError: as :func:`read_nifti_4d` for a missing or unreadable file, a wrong dimensionality or < 2 frames.
    """
    shape = _open(path).shape
    return _shape_4d(shape, path)


def _frame_times_ms(header: nib.Nifti1Header | None, num_frames: int) -> np.ndarray | None:
    """Frame times in ms from the header's 4th pixdim and time unit, or None when the unit is unknown."""
    if header is None or not hasattr(header, "get_xyzt_units"):
        return None
    unit = header.get_xyzt_units()[1]
    step = float(header["pixdim"][4])
    if unit not in _MS_PER_UNIT or not step > 0:
        return None
    return np.arange(num_frames, dtype=np.float64) * step * _MS_PER_UNIT[unit]


def read_nifti_4d(path: str | os.PathLike) -> Series4D:
    """Read a 4D NIfTI series.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file holding ``(X, Y, Z, T)`` voxels (or ``(X, Y, Z, 1, T)``, see the module
            docstring).

    Returns:
        a :class:`Series4D` with ``array`` ``(X, Y, Z, T)`` float32 in the file's units (its ``scl_slope`` /
        ``scl_inter`` applied), ``affine`` the header's voxel -> RAS mm map as nibabel chooses it (sform, else
        qform), and ``times`` in ms when a 4D header gives a time step and unit (else None).

    Raises:
        InputError: naming the file, when it is missing or unreadable, not 4D, has fewer than 2 frames, holds
            NaN/Inf voxels or is constant.
    """
    array, affine, header = _load(path)
    stored_as_4d = array.ndim == 4  # pixdim[4] is the time step only then
    array = array.reshape(_shape_4d(array.shape, path))
    _check_values(array, path)
    times = _frame_times_ms(header, array.shape[3]) if stored_as_4d else None
    return Series4D(array=array, affine=affine, source=os.fspath(path), times=times, xform_code=_xform_code(header))


def _read_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """One 3D volume (a 4D file with a single frame is accepted as 3D), its affine and its affine's code."""
    array, affine, header = _load(path)
    if array.ndim > 3 and all(n == 1 for n in array.shape[3:]):
        array = array.reshape(array.shape[:3])
    if array.ndim != 3:
        raise InputError(path, f"is {array.ndim}D with shape {tuple(array.shape)}; expected one 3D volume (X, Y, Z)")
    _check_values(array, path)
    return array, affine, _xform_code(header)


def _grid_mismatch(affine0: np.ndarray, affine1: np.ndarray) -> str | None:
    """Describe how two affines differ (spacing, orientation, position), or None when they describe one grid."""
    spacing0, spacing1 = np.linalg.norm(affine0[:3, :3], axis=0), np.linalg.norm(affine1[:3, :3], axis=0)
    if not np.allclose(spacing0, spacing1, rtol=_SPACING_RTOL, atol=0):
        return f"voxel spacing differs: {np.round(spacing0, 4).tolist()} vs {np.round(spacing1, 4).tolist()} mm"
    directions0, directions1 = affine0[:3, :3] / spacing0, affine1[:3, :3] / spacing1
    if not np.allclose(directions0, directions1, atol=_DIRECTION_ATOL):
        code0, code1 = "".join(nib.aff2axcodes(affine0)), "".join(nib.aff2axcodes(affine1))
        return (
            f"orientation differs: axis directions {(np.round(directions0, 4) + 0.0).tolist()} ({code0}) vs "
            f"{(np.round(directions1, 4) + 0.0).tolist()} ({code1})"
        )
    if not np.allclose(affine0[:3, 3], affine1[:3, 3], atol=_ORIGIN_ATOL_MM, rtol=0):
        origin0, origin1 = np.round(affine0[:3, 3], 3).tolist(), np.round(affine1[:3, 3], 3).tolist()
        return f"position differs: origin {origin0} vs {origin1} mm"
    return None


def read_two_volumes(path0: str | os.PathLike, path1: str | os.PathLike) -> Series4D:
    """Read two 3D volumes of one grid (the endpoints I0 and I1) as a two-frame series.

    Args:
        path0: the volume at t = 0.
        path1: the volume at t = 1.

    Returns:
        a :class:`Series4D` with ``array`` ``(X, Y, Z, 2)`` float32, frame 0 from ``path0``, frame 1 from ``path1``,
        and the affine (and its code) of ``path0``.

    Raises:
        InputError: naming a file that is missing, unreadable, not 3D, non-finite or constant; or naming both files
            and the values when their shapes, voxel spacings, orientations or positions differ.
    """
    volume0, affine0, code0 = _read_volume(path0)
    volume1, affine1, _ = _read_volume(path1)
    pair = f"{os.fspath(path0)} and {os.fspath(path1)}"
    if volume0.shape != volume1.shape:
        raise InputError(pair, f"shapes differ: {volume0.shape} vs {volume1.shape}; both volumes must share one grid")
    mismatch = _grid_mismatch(affine0, affine1)
    if mismatch:
        raise InputError(pair, f"{mismatch}; both volumes must share one grid")
    return Series4D(array=np.stack([volume0, volume1], axis=-1), affine=affine0, source=pair, xform_code=code0)


def _frame_index(value: object, name: str, num_frames: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(name, f"must be an integer frame index, got {value!r}")
    if not -num_frames <= value < num_frames:
        raise InputError(
            name,
            f"frame {value} is out of range for a series of {num_frames} frames "
            f"(valid: 0..{num_frames - 1}, or -{num_frames}..-1 counting from the end)",
        )
    return int(value) % num_frames


def frame_endpoints(
    num_frames: int, start_frame: int, end_frame: int, names: tuple[str, str] = ("--start_frame", "--end_frame")
) -> tuple[int, int]:
    """Check two endpoint frame indices of a ``num_frames`` series; return them in ``0 .. num_frames-1``.

    Indices are 0-based; negative ones count from the end as in Python (``-1`` is the last frame).

    Args:
        num_frames: T, the number of frames of the series.
        start_frame: the frame at t = 0.
        end_frame: the frame at t = 1.
        names: how errors name the two values (command-line arguments, or a file and its keys).

    Raises:
        InputError: naming the value that is not an integer or out of range, or both when they select one frame.
    """
    start = _frame_index(start_frame, names[0], num_frames)
    end = _frame_index(end_frame, names[1], num_frames)
    if start == end:
        raise InputError(
            f"{names[0]}/{names[1]}", f"both select frame {start}; the endpoints must be two different frames"
        )
    return start, end


def select_endpoints(series: Series4D, start_frame: int, end_frame: int) -> tuple[int, int]:
    """Check the ``--start_frame`` / ``--end_frame`` a user gave for ``series`` (see :func:`frame_endpoints`).

    Returns:
        ``(start, end)`` in ``0 .. T-1``.
    """
    return frame_endpoints(series.num_frames, start_frame, end_frame)
