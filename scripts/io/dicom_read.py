"""Read one 4D acquisition (3D + time) from a DICOM folder, in whatever layout the scanner exported it.

MONAI's ``LoadImage`` readers (``PydicomReader``, ``ITKReader``) read one 3D series: they stack every image of a
series along the slice axis and cannot tell which images are time points of one position. So the grouping is done
here with pydicom, from geometry and temporal tags only (folder names are a last resort for ordering phases):

1. Every file under the folder (hidden files and folders excepted) is read with ``stop_before_pixels``; non-DICOM
   files with a known non-DICOM suffix (``.txt``, ``.json``, ...) are skipped, any other unreadable file is an error. Non-image objects (SR, RTSTRUCT,
   presentation states, DICOMDIR) and localizers are skipped. Enhanced multi-frame files contribute one image per
   frame (PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence, FrameContentSequence from the
   per-frame or shared functional groups).
2. All images must share one geometry (orientation, pixel spacing, matrix), study and frame of reference, otherwise
   the folder mixes acquisitions and the error lists the series of each.
3. Slice positions: ImagePositionPatient projected on the slice normal (``r x c`` of ImageOrientationPatient),
   clustered within 0.01 mm, sorted increasing. They must form a regular grid: a gap (a missing slice, uneven
   spacing beyond 10 % of the mean spacing) is an error, since every later step assumes one voxel size and silently
   stretching the stack would misplace anatomy. The affine uses the mean step between positions, so gantry tilts and
   (double-)oblique stacks keep their geometry.
4. Time points:
   (a) two or more series that each span several positions are one series per phase (4D-Lung, respiratory 4D CT);
       they are ordered by the first series-level key that every series has, constant within it and distinct across
       series: a percentage in SeriesDescription ("Gated, 50.0%"), TemporalPositionIndex, TemporalPositionIdentifier,
       TriggerTime, AcquisitionTime, the series folder name (natural order), SeriesNumber;
   (b) one series with every slice and phase (GE/Philips cine), (c) one series per slice position (Siemens cine) and
   (d) enhanced multi-frame files: at each position, images are ordered by the first per-image key present on every
       image and not constant: TemporalPositionIndex, TemporalPositionIdentifier, TriggerTime (enhanced:
       NominalCardiacTriggerDelayTime), InstanceNumber (enhanced: frame number). Equal keys at one position are
       duplicate slices.
   Every position must have the same number of time points (>= 2).
5. Pixels are read only for the images used; RescaleSlope/Intercept (per frame for enhanced files) give scanner
   units (CT: Hounsfield units). Compressed transfer syntaxes need a decoder; a missing one is reported with the
   packages to install.

Malformed values that pydicom can still parse (e.g. UIDs with leading-zero components) are tolerated with pydicom's
warning; writers never copy them back (see ``dicom_write``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder

from scripts.io.dicom_geometry import (
    DIRECTION_TOL,
    POSITION_TOL_MM,
    affine_from_dicom,
    slice_normal,
)
from scripts.io.series import Series4D, SourceImage
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)

# Files with these suffixes are not DICOM and are skipped without complaint (exports often carry them).
NON_DICOM_SUFFIXES = frozenset({
    ".txt", ".json", ".xml", ".csv", ".md", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".bmp",
    ".nii", ".gz", ".zip", ".log", ".ini", ".cfg", ".db", ".py", ".yaml", ".yml",
})
# A step between slice positions may differ from the mean step by this fraction of the slice spacing.
GAP_TOLERANCE = 0.1
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


@dataclasses.dataclass
class _Image:
    """One 2D image: a single-frame file or one frame of a multi-frame file (headers only, no pixels)."""

    path: Path
    frame: int | None  # index in a multi-frame file, None for a single-frame file
    header: Dataset
    orientation: np.ndarray  # (6,) ImageOrientationPatient
    position: np.ndarray  # (3,) ImagePositionPatient, LPS mm
    pixel_spacing: np.ndarray  # (2,) mm, DICOM order
    thickness: float | None  # SpacingBetweenSlices or SliceThickness, mm
    slope: float
    intercept: float
    time_keys: dict[str, float]  # per-image temporal keys present on this image

    @property
    def name(self) -> str:
        return str(self.path) if self.frame is None else f"{self.path} (frame {self.frame + 1})"

    @property
    def series_uid(self) -> str:
        return str(self.header.get("SeriesInstanceUID", self.path.parent))

    @property
    def series_label(self) -> str:
        return (f"series {self.header.get('SeriesNumber', '?')} '{self.header.get('SeriesDescription', '')}' "
                f"in {self.path.parent}")


def read_dicom_series(folder: str | os.PathLike, frames: Sequence[int] | None = None) -> Series4D:
    """Read the 4D acquisition in ``folder`` (searched recursively).

    Args:
        folder: a folder holding the DICOM files of one 4D acquisition, in any of the layouts of the module docstring.
        frames: time indices to load (e.g. ``range(6)``); all by default. Only their pixels are read.

    Returns:
        :class:`Series4D` with ``array`` ``(X, Y, Z, T)`` float32 in scanner units (CT: HU), ``affine`` voxel-to-RAS,
        ``times`` ``(T,)`` ms when every image has a TriggerTime, and ``dicom_template`` the header (no pixel data)
        of the first image.

    Raises:
        InputError: naming the folder or file and the problem (see the module docstring for each check).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise InputError(folder, "the folder is empty")
    images = _read_images(folder, files)
    _check_one_acquisition(folder, images)
    normal = slice_normal(images[0].orientation)
    slices = _cluster_positions(images, normal)
    grid, times = _order_in_time(folder, slices, normal)
    num_frames = len(grid[0])
    frames = list(range(num_frames)) if frames is None else list(frames)
    if not frames or min(frames) < 0 or max(frames) >= num_frames:
        raise InputError(folder, f"has {num_frames} time points; frames {frames} were asked for")
    first = [column[0] for column in grid]
    affine = affine_from_dicom(first[0].orientation, first[0].pixel_spacing, first[0].position,
                               _slice_step(folder, first, normal))
    array = _read_pixels([[column[t] for t in frames] for column in grid])
    template = first[0].header
    logger.info("%s: %d x %d x %d voxels, %d of %d time points", folder, *array.shape[:3], len(frames), num_frames)
    sources = [[SourceImage.of(column[t].header, column[t].frame) for t in frames] for column in grid]
    return Series4D(array, affine, str(folder), None if times is None else times[frames], template, sources)


# --- headers ----------------------------------------------------------------------------------------------------

def _read_images(folder: Path, files: list[Path]) -> list[_Image]:
    """Images of every DICOM image file under ``folder``; non-image objects and localizers are skipped."""
    images, skipped, num_dicom = [], [], 0
    for path in files:
        header = _read_header(path)
        if header is None:
            continue
        num_dicom += 1
        sop_class = header.get("SOPClassUID") or getattr(header, "file_meta", {}).get("MediaStorageSOPClassUID")
        kind = getattr(sop_class, "name", str(sop_class))
        if "Rows" not in header or "Columns" not in header:
            if "Image Storage" in kind:
                raise InputError(path, f"a {kind} file without Rows/Columns: truncated or incomplete")
            skipped.append(kind)
            continue
        if "LOCALIZER" in [str(v).upper() for v in header.get("ImageType", [])]:
            logger.info("%s: skipping a localizer image", path)
            continue
        _check_decodable(path, header)
        if int(header.get("SamplesPerPixel", 1)) != 1:
            raise InputError(path, f"colour image (SamplesPerPixel {header.SamplesPerPixel}); expected greyscale")
        images.extend(_enhanced_images(path, header) if "PerFrameFunctionalGroupsSequence" in header
                      else [_classic_image(path, header)])
    if num_dicom == 0:
        raise InputError(folder, f"no DICOM file in the folder ({len(files)} files, none of them DICOM)")
    if not images:
        kinds = ", ".join(sorted(set(skipped))) or "localizers only"
        raise InputError(folder, f"no DICOM image in the folder, only non-image objects ({kinds})")
    if skipped:
        logger.info("%s: skipped %d non-image DICOM objects (%s)", folder, len(skipped), ", ".join(set(skipped)))
    return images


def _read_header(path: Path) -> Dataset | None:
    """The header of ``path`` without pixel data, or ``None`` for a non-DICOM file with a non-DICOM suffix."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as err:
        if path.suffix.lower() in NON_DICOM_SUFFIXES:
            logger.debug("%s: not DICOM, skipped", path)
            return None
        raise InputError(path, f"not a readable DICOM file ({err}); remove it from the folder") from err
    except Exception as err:  # truncated or corrupt files raise anything from EOFError to struct.error
        raise InputError(path, f"not a readable DICOM file ({type(err).__name__}: {err})") from err


def _check_decodable(path: Path, header: Dataset) -> None:
    """Fail early, naming the transfer syntax and the packages to install, if pixel data cannot be decoded here."""
    meta = getattr(header, "file_meta", None)
    syntax = None if meta is None else meta.get("TransferSyntaxUID")
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise InputError(path, f"pixel data use transfer syntax {syntax.name} ({syntax}), "
                         "which pydicom cannot decode") from err
    if not decoder.is_available:
        raise InputError(path, f"pixel data are compressed with {syntax.name} ({syntax}) and no decoder for it is "
                         f"installed; install one of: {'; '.join(decoder.missing_dependencies)} (pip packages "
                         "pylibjpeg + pylibjpeg-libjpeg / pylibjpeg-openjpeg / pylibjpeg-rle, or python-gdcm)")


def _numbers(path: Path | str, owner: Dataset, keyword: str, count: int) -> np.ndarray:
    """``count`` numbers of attribute ``keyword`` of ``owner``; an error naming the file and tag if absent/invalid."""
    value = owner.get(keyword)
    if value is None or value == "":
        raise InputError(path, f"missing {keyword}, needed to place the image in space")
    try:
        numbers = np.array([float(v) for v in (value if isinstance(value, Sequence) and not isinstance(value, str)
                                                else [value])], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"{keyword} has an invalid value {value!r}") from err
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise InputError(path, f"{keyword} must hold {count} numbers, got {value!r}")
    return numbers


def _optional_number(owner: Dataset | None, keyword: str) -> float | None:
    """``owner.keyword`` as a float, or ``None`` if absent, empty or not a number (tolerated: it only orders)."""
    if owner is None or owner.get(keyword) in (None, ""):
        return None
    try:
        return float(owner.get(keyword))
    except (TypeError, ValueError):
        return None


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _time_of_day(value) -> float | None:
    """A DICOM TM value (``HHMMSS.ffffff``) in seconds since midnight."""
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", str(value or "").strip())
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    return int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0) + float(fraction or 0)


def _classic_image(path: Path, header: Dataset) -> _Image:
    keys = {k: _optional_number(header, k)
            for k in ("TemporalPositionIndex", "TemporalPositionIdentifier", "TriggerTime", "InstanceNumber")}
    thickness = _optional_number(header, "SpacingBetweenSlices") or _optional_number(header, "SliceThickness")
    return _Image(path, None, header, _numbers(path, header, "ImageOrientationPatient", 6),
                  _numbers(path, header, "ImagePositionPatient", 3), _numbers(path, header, "PixelSpacing", 2),
                  thickness, _optional_number(header, "RescaleSlope") or 1.0,
                  _optional_number(header, "RescaleIntercept") or 0.0,
                  {k: v for k, v in keys.items() if v is not None})


def _enhanced_images(path: Path, header: Dataset) -> list[_Image]:
    """One image per frame of an enhanced multi-frame file, from its per-frame or shared functional groups."""
    shared = header.SharedFunctionalGroupsSequence[0] if header.get("SharedFunctionalGroupsSequence") else Dataset()
    images = []
    for frame, group in enumerate(header.PerFrameFunctionalGroupsSequence):
        def item(keyword: str) -> Dataset | None:
            for owner in (group, shared):
                if owner.get(keyword):
                    return owner.get(keyword)[0]
            return None

        where = f"{path} (frame {frame + 1})"
        plane, position, measures = item("PlaneOrientationSequence"), item("PlanePositionSequence"), \
            item("PixelMeasuresSequence")
        for keyword, owner in (("PlaneOrientationSequence", plane), ("PlanePositionSequence", position),
                               ("PixelMeasuresSequence", measures)):
            if owner is None:
                raise InputError(where, f"missing {keyword}, needed to place the frame in space")
        transform = item("PixelValueTransformationSequence") or header
        content, cardiac = item("FrameContentSequence"), item("CardiacSynchronizationSequence")
        keys = {
            "TemporalPositionIndex": _optional_number(content, "TemporalPositionIndex"),
            "TriggerTime": _optional_number(cardiac, "NominalCardiacTriggerDelayTime") or _milliseconds(
                _optional_number(content, "TemporalPositionTimeOffset")),
            "InstanceNumber": float(frame + 1),
        }
        thickness = _optional_number(measures, "SpacingBetweenSlices") or _optional_number(measures, "SliceThickness")
        images.append(_Image(
            path, frame, header, _numbers(where, plane, "ImageOrientationPatient", 6),
            _numbers(where, position, "ImagePositionPatient", 3), _numbers(where, measures, "PixelSpacing", 2),
            thickness, _optional_number(transform, "RescaleSlope") or 1.0,
            _optional_number(transform, "RescaleIntercept") or 0.0, {k: v for k, v in keys.items() if v is not None}))
    return images


# --- one acquisition, slice positions ---------------------------------------------------------------------------

def _geometry_differences(a: _Image, b: _Image) -> list[str]:
    """Names of what differs between the acquisitions of images ``a`` and ``b`` (empty if they belong together)."""
    differences = []
    if not np.allclose(a.orientation, b.orientation, atol=DIRECTION_TOL):
        orientations = [np.round(im.orientation, 4).tolist() for im in (a, b)]
        differences.append(f"orientation {orientations[0]} vs {orientations[1]}")
    if not np.allclose(a.pixel_spacing, b.pixel_spacing, rtol=1e-4):
        differences.append(f"pixel spacing {a.pixel_spacing.tolist()} vs {b.pixel_spacing.tolist()}")
    shape_a, shape_b = (a.header.Rows, a.header.Columns), (b.header.Rows, b.header.Columns)
    if shape_a != shape_b:
        differences.append(f"matrix {shape_a} vs {shape_b}")
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        if a.header.get(keyword) != b.header.get(keyword):
            differences.append(f"{keyword} {a.header.get(keyword)} vs {b.header.get(keyword)}")
    return differences


def _check_one_acquisition(folder: Path, images: list[_Image]) -> None:
    """All images share orientation, pixel spacing, matrix, study and frame of reference; no image appears twice."""
    groups: list[list[_Image]] = []
    for image in images:
        for group in groups:
            if not _geometry_differences(group[0], image):
                group.append(image)
                break
        else:
            groups.append([image])
    if len(groups) > 1:
        described = "; ".join(
            f"acquisition {i + 1}: " + ", ".join(sorted({im.series_label for im in group}))
            + ("" if i == 0 else f" (differs by {', '.join(_geometry_differences(groups[0][0], group[0]))})")
            for i, group in enumerate(groups))
        raise InputError(folder, f"holds {len(groups)} acquisitions with different geometry: {described}. "
                         "Point to the folder of one acquisition")
    seen: dict[tuple[str, int | None], _Image] = {}
    for image in images:
        key = (str(image.header.get("SOPInstanceUID", image.path)), image.frame)
        if key in seen:
            raise InputError(folder, f"duplicate slice: {seen[key].name} and {image.name} are the same image "
                             f"(SOPInstanceUID {key[0]})")
        seen[key] = image


def _cluster_positions(images: list[_Image], normal: np.ndarray) -> list[list[_Image]]:
    """Images grouped by slice position (within POSITION_TOL_MM), positions in increasing order along ``normal``."""
    ordered = sorted(images, key=lambda im: float(im.position @ normal))
    slices: list[list[_Image]] = [[ordered[0]]]
    for image in ordered[1:]:
        if float((image.position - slices[-1][0].position) @ normal) > POSITION_TOL_MM:
            slices.append([image])
        else:
            slices[-1].append(image)
    for images_here in slices:
        offsets = np.linalg.norm([im.position - images_here[0].position for im in images_here], axis=1)
        if offsets.max() > POSITION_TOL_MM:
            other = images_here[int(offsets.argmax())]
            raise InputError(other.path, f"lies in the plane of {images_here[0].path} but is shifted in-plane by "
                             f"{offsets.max():.3f} mm; the folder mixes stacks with different positions")
    return slices


def _location(images_here: list[_Image], normal: np.ndarray) -> str:
    return f"slice location {float(images_here[0].position @ normal):.2f} mm"


def _slice_step(folder: Path, first: list[_Image], normal: np.ndarray) -> np.ndarray:
    """LPS vector between consecutive slice positions; an error if the positions do not form a regular grid."""
    if len(first) == 1:
        if not first[0].thickness:
            raise InputError(first[0].path, "a single slice position without SliceThickness or "
                             "SpacingBetweenSlices: the slice spacing is unknown")
        return normal * first[0].thickness
    positions = np.array([im.position for im in first])
    step = (positions[-1] - positions[0]) / (len(first) - 1)
    spacing = float(step @ normal)
    expected = positions[0] + np.arange(len(first))[:, None] * step
    deviation = np.linalg.norm(positions - expected, axis=1)
    if deviation.max() > GAP_TOLERANCE * spacing:
        gaps = np.diff(positions @ normal)
        worst = int(np.abs(gaps - spacing).argmax())
        raise InputError(folder, f"slice positions are not evenly spaced: {gaps[worst]:.3f} mm between "
                         f"{_location([first[worst]], normal)} and {_location([first[worst + 1]], normal)}, "
                         f"{spacing:.3f} mm on average (a missing slice or a gap); a regular grid is required")
    return step


# --- time -------------------------------------------------------------------------------------------------------

def _order_in_time(folder: Path, slices: list[list[_Image]], normal: np.ndarray
                   ) -> tuple[list[list[_Image]], np.ndarray | None]:
    """``grid[z][t]`` images and times ``(T,)`` ms (or None), deciding the layout from series and temporal tags."""
    by_series: dict[str, list[_Image]] = defaultdict(list)
    for images_here in slices:
        for image in images_here:
            by_series[image.series_uid].append(image)
    slice_of = {id(im): z for z, images_here in enumerate(slices) for im in images_here}
    if len(by_series) >= 2 and all(len({slice_of[id(im)] for im in ims}) >= 2 for ims in by_series.values()):
        logger.info("%s: one series per phase (%d series)", folder, len(by_series))
        grid, times = _order_series(folder, by_series, slices, slice_of, normal)
    else:
        logger.info("%s: time points within series (%d series, %d slice positions)", folder, len(by_series),
                    len(slices))
        grid, times = _order_images(folder, slices, normal)
    _check_time_points(folder, grid, slices, normal)
    return grid, times


def _check_time_points(folder: Path, grid: list[list[_Image]], slices: list[list[_Image]], normal) -> None:
    counts = [len(column) for column in grid]
    typical = max(set(counts), key=counts.count)
    for column, images_here in zip(grid, slices):
        if len(column) != typical:
            raise InputError(folder, f"{_location(images_here, normal)} has {len(column)} time points, other "
                             f"positions have {typical}; every slice position needs every time point")
    if typical < 2:
        raise InputError(folder, "only one time point: a 4D acquisition needs at least 2 frames")


def _natural_key(text: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _percent(image: _Image) -> float | None:
    match = _PERCENT.search(str(image.header.get("SeriesDescription", "")))
    return float(match.group(1)) if match else None


# Series-level phase keys, in order of preference: (name, value of one image or None).
_SERIES_KEYS: tuple[tuple[str, Callable[[_Image], object]], ...] = (
    ("phase percentage in SeriesDescription", _percent),
    ("TemporalPositionIndex", lambda im: im.time_keys.get("TemporalPositionIndex")),
    ("TemporalPositionIdentifier", lambda im: im.time_keys.get("TemporalPositionIdentifier")),
    ("TriggerTime", lambda im: im.time_keys.get("TriggerTime")),
    ("AcquisitionTime", lambda im: _time_of_day(im.header.get("AcquisitionTime"))),
    ("series folder name", lambda im: _natural_key(im.path.parent.name)),
    ("SeriesNumber", lambda im: _optional_number(im.header, "SeriesNumber")),
)
# Keys that name a phase: two series with the same value are the same phase twice.
_PHASE_NAMING_KEYS = {"phase percentage in SeriesDescription", "TemporalPositionIndex", "TemporalPositionIdentifier"}


def _order_series(folder, by_series, slices, slice_of, normal) -> tuple[list[list[_Image]], np.ndarray | None]:
    """Layout (a): each series is one phase; order the series by the first usable series-level key."""
    for name, key in _SERIES_KEYS:
        values = {uid: {key(im) for im in ims} for uid, ims in by_series.items()}
        lacking = [uid for uid, v in values.items() if None in v]
        if lacking:
            if name == _SERIES_KEYS[0][0] and len(lacking) < len(values):
                labels = ", ".join(sorted({by_series[uid][0].series_label for uid in lacking}))
                raise InputError(folder, f"some series carry a phase percentage in SeriesDescription and others do "
                                 f"not ({labels}); remove the series that are not phases (e.g. average or MIP)")
            continue
        if any(len(v) > 1 for v in values.values()):
            continue
        phase_of = {uid: next(iter(v)) for uid, v in values.items()}
        if len(set(phase_of.values())) < len(phase_of):
            if name in _PHASE_NAMING_KEYS:
                twice = [uid for uid in phase_of if list(phase_of.values()).count(phase_of[uid]) > 1]
                labels = ", ".join(sorted(by_series[uid][0].series_label for uid in twice))
                raise InputError(folder, f"duplicate phases: series with the same {name}: {labels}")
            continue
        order = sorted(phase_of, key=phase_of.get)
        logger.info("%s: phases ordered by %s", folder, name)
        break
    else:
        raise InputError(folder, "cannot order the phase series: no phase tag, time or folder name differs")
    grid: list[list[_Image]] = [[] for _ in slices]
    for uid in order:
        for image in by_series[uid]:
            column = grid[slice_of[id(image)]]
            if column and column[-1].series_uid == uid:
                raise InputError(folder, f"duplicate slices: {column[-1].name} and {image.name} lie at the same "
                                 f"{_location([image], normal)} in one phase ({image.series_label})")
            column.append(image)
    trigger = [[im.time_keys.get("TriggerTime") for im in by_series[uid]] for uid in order]
    times = None if any(None in t for t in trigger) else np.array([np.mean(t) for t in trigger])
    return grid, times


_IMAGE_KEYS = ("TemporalPositionIndex", "TemporalPositionIdentifier", "TriggerTime", "InstanceNumber")


def _order_images(folder, slices, normal) -> tuple[list[list[_Image]], np.ndarray | None]:
    """Layouts (b), (c), (d): order the images at each position by the first usable per-image key."""
    images = [im for images_here in slices for im in images_here]
    if max(len(images_here) for images_here in slices) < 2:
        raise InputError(folder, "only one time point: a 4D acquisition needs at least 2 frames")
    for name in _IMAGE_KEYS:
        values = [im.time_keys.get(name) for im in images]
        if None not in values and len(set(values)) > 1:
            break
    else:
        raise InputError(folder, "cannot order the time points: no TemporalPositionIndex, TemporalPositionIdentifier, "
                         "TriggerTime or InstanceNumber differs between images")
    logger.info("%s: time points ordered by %s", folder, name)
    grid = [sorted(images_here, key=lambda im: im.time_keys[name]) for images_here in slices]
    for column in grid:
        for earlier, later in zip(column, column[1:]):
            if earlier.time_keys[name] == later.time_keys[name]:
                raise InputError(folder, f"duplicate slices: {earlier.name} and {later.name} lie at the same "
                                 f"{_location([later], normal)} with the same {name} {later.time_keys[name]:g}")
    num_frames = min(len(column) for column in grid)
    trigger = [[im.time_keys.get("TriggerTime") for im in column[:num_frames]] for column in grid]
    times = None if any(None in t for t in trigger) else np.array(trigger).mean(axis=0)
    return grid, times


# --- pixels -----------------------------------------------------------------------------------------------------

def _read_pixels(grid: list[list[_Image]]) -> np.ndarray:
    """``(X, Y, Z, T)`` float32 in scanner units from ``grid[z][t]``, reading each file once."""
    first = grid[0][0]
    array = np.empty((int(first.header.Columns), int(first.header.Rows), len(grid), len(grid[0])), np.float32)
    uses: dict[Path, list[tuple[int, int, _Image]]] = defaultdict(list)
    for z, column in enumerate(grid):
        for t, image in enumerate(column):
            uses[image.path].append((z, t, image))
    for path, here in uses.items():
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as err:  # pydicom raises many types for truncated or undecodable pixel data
            raise InputError(path, f"cannot decode the pixel data ({type(err).__name__}: {err})") from err
        for z, t, image in here:
            plane = pixels if image.frame is None else pixels.reshape(-1, *pixels.shape[-2:])[image.frame]
            if plane.shape != (array.shape[1], array.shape[0]):
                raise InputError(image.name, f"pixel data have shape {plane.shape}, header says "
                                 f"{(array.shape[1], array.shape[0])}")
            array[:, :, z, t] = plane.T * image.slope + image.intercept
    return array
