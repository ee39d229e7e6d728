"""Read one 4D acquisition (3D + time) from a DICOM folder, in whatever layout the scanner exported it.

Layouts (the names the phantom writer and messages use):

- ``series_per_phase``: one series per time point, each holding every slice (4D-Lung / respiratory 4D CT);
- ``single_series``: one series holding every slice and every time point (GE, Philips cine);
- ``series_per_slice``: one series per slice position holding its time points (Siemens cine and real-time stacks);
- ``enhanced``: Enhanced MR/CT multi-frame files, one frame per slice and time point (functional groups).

Why not a library's sorter: ITK/GDCM's series reader (``GDCMSeriesFileNames`` + ``IPPSorter``) groups by
SeriesInstanceUID and sorts by position along the normal, but has no notion of time: a cine in one series becomes
one 3D stack of 240 interleaved images, and a series-per-slice cine becomes 28 unrelated series. ``dicom2nifti``
handles GE/Philips 4D by TemporalPositionIdentifier only, and ``highdicom`` reads and writes enhanced objects but
does not sort classic images. So the grouping is done here with pydicom, on the rules those tools and ``dcm2niix``
share (position projected on the slice normal, the vendor's temporal tags), from geometry and temporal tags only:

1. Every file under the folder (hidden files and folders excepted) is read with ``stop_before_pixels``; non-DICOM
   files with a known non-DICOM suffix (``.txt``, ``.json``, ...) are skipped, any other unreadable file is an error.
   Non-image objects (SR, RTSTRUCT, presentation states, DICOMDIR) and localizers are skipped; mosaics (Siemens
   MOSAIC, UIH VFRAME) and colour images are refused. The kind of object comes from SOPClassUID and NumberOfFrames, never from the mere
   presence of a tag (GE classic cines carry an empty Per-frame Functional Groups Sequence): enhanced multi-frame
   files contribute one image per frame (PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence,
   FrameContentSequence from the per-frame or shared functional groups). Before any pixel is read, a file whose
   Rows x Columns x NumberOfFrames would not fit in free memory, a PixelSpacing that is not positive and finite and
   an ImageOrientationPatient that is not two perpendicular unit vectors are refused, naming the file.
2. All images must share PatientID and StudyInstanceUID (the error names both values) and one geometry
   (orientation, pixel spacing, matrix); several geometries mean several acquisitions and the error lists the
   first few. FrameOfReferenceUID is not a grouping key: some scanners (GE) write a new one on every image; a
   warning says so.
3. Slice positions: ImagePositionPatient projected on the slice normal (``r x c`` of ImageOrientationPatient),
   clustered within 0.01 mm, sorted increasing. They must form a regular grid: a gap (a missing slice, uneven
   spacing beyond 10 % of the mean spacing) is an error, since every later step assumes one voxel size and silently
   stretching the stack would misplace anatomy. The affine uses the mean step between positions, so gantry tilts and
   (double-)oblique stacks keep their geometry.
4. Time points:
   - ``series_per_phase`` (two or more series that each span several positions): the series are ordered by the
     first series-level key that every series has, constant within it and distinct across series: a percentage in
     SeriesDescription ("Gated, 50.0%"), TemporalPositionIndex, TemporalPositionIdentifier, TriggerTime,
     AcquisitionTime, the series folder name (natural order), SeriesNumber;
   - series that share no slice position (a series-per-slice stack where one series holds several positions, as in
     some Siemens cine exports) are one stack split by slice, not phases;
   - every other layout: at each slice position, the images are ordered by the first key that orders *them*: a
     phase index (TemporalPositionIndex, TemporalPositionIdentifier; equal values there are duplicate slices), else
     a time that differs on every image there (TriggerTime or, for enhanced frames, NominalCardiacTriggerDelayTime /
     TemporalPositionTimeOffset; then AcquisitionTime; then ContentTime), else InstanceNumber (enhanced: the frame
     number). The key is chosen per position because some exports keep TriggerTime constant within a slice's series
     (Siemens real-time stacks); the log names the key, and a series-per-slice stack that no trigger orders is
     reported as a volume of ungated slices.
   Every position must have the same number of time points (>= 2). The series' times (ms) are its TriggerTimes where
   they differ at every position, else the time since each position's first image by AcquisitionTime or
   ContentTime, else unknown. ``Series4D.gated``: the frames are one ECG-gated cycle (TriggerTimes spanning less
   than one R-R interval, ``cycle_ms``: NominalInterval or HeartRate), not (a clock times them: a real-time or dynamic
   series; TriggerTimes over several heartbeats: first-pass perfusion), or unknown.
5. Pixels are read only for the images used, after the whole array is checked against free memory;
   RescaleSlope/Intercept (per frame for enhanced files) give scanner units (CT: Hounsfield units). Compressed
   transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) are decoded by the pylibjpeg plugins the requirements pin; a
   syntax without a decoder here is reported with the packages to install.

Malformed values that pydicom can still parse (e.g. UIDs with leading-zero components) are tolerated; pydicom's
warnings about them are collected and each kind is said once per folder with its count. Writers never copy such
values back (see ``dicom_write``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import (
    EnhancedCTImageStorage,
    EnhancedMRColorImageStorage,
    EnhancedMRImageStorage,
    EnhancedPETImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    LegacyConvertedEnhancedMRImageStorage,
    LegacyConvertedEnhancedPETImageStorage,
)

from scripts.io.dicom_geometry import (
    DIRECTION_TOL,
    POSITION_TOL_MM,
    affine_from_dicom,
    slice_normal,
)
from scripts.io.series import Series4D, SourceImage
from scripts.utils.args import parse_series
from scripts.utils.errors import InputError
from scripts.utils.memory import available_bytes

logger = logging.getLogger(__name__)

# The layouts a 4D acquisition can come in (module docstring); the phantom writer writes each.
LAYOUTS = ("series_per_phase", "single_series", "series_per_slice", "enhanced")
# SOP classes whose frames are placed by functional groups (one image per frame).
ENHANCED_SOP_CLASSES = frozenset({
    EnhancedMRImageStorage, EnhancedCTImageStorage, EnhancedMRColorImageStorage, EnhancedPETImageStorage,
    LegacyConvertedEnhancedMRImageStorage, LegacyConvertedEnhancedCTImageStorage,
    LegacyConvertedEnhancedPETImageStorage,
})
# Files with these suffixes are not DICOM and are skipped without complaint (exports often carry them).
NON_DICOM_SUFFIXES = frozenset({
    ".txt", ".json", ".xml", ".csv", ".md", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".bmp",
    ".nii", ".gz", ".zip", ".log", ".ini", ".cfg", ".db", ".py", ".yaml", ".yml",
})
# A step between slice positions may differ from the mean step by this fraction of the slice spacing.
GAP_TOLERANCE = 0.1
# ImageOrientationPatient: each vector's length may differ from 1, and their dot product from 0, by this much.
ORIENTATION_TOL = 1e-2
# How many items an error lists before it says "and N more".
LISTED = 3
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
# What differs between two messages of one kind: quoted values and numbers.
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


@dataclasses.dataclass
class _Image:
    """One 2D image: a single-frame file or one frame of a multi-frame file (headers only, no pixels)."""

    path: Path
    frame: int | None  # index in a multi-frame file, None for a single-frame file
    header: Dataset
    orientation: np.ndarray  # (6,) ImageOrientationPatient, two unit vectors
    position: np.ndarray  # (3,) ImagePositionPatient, LPS mm
    pixel_spacing: np.ndarray  # (2,) mm, DICOM order
    thickness: float | None  # SpacingBetweenSlices or SliceThickness, mm
    slope: float
    intercept: float
    time_keys: dict[str, float]  # per-image temporal keys present (ms), and NominalInterval, HeartRateInterval (ms)

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


def _listed(items: Sequence[str], limit: int = LISTED) -> str:
    """The first ``limit`` items joined, then how many more: keeps an error one short line."""
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _short(err: BaseException, limit: int = 200) -> str:
    """A library's error text on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _size(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.1f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MiB"


def read_dicom_series(folder: str | os.PathLike, frames: Sequence[int] | None = None,
                      series: str | int | Sequence[str | int] | None = None) -> Series4D:
    """Read the 4D acquisition in ``folder`` (searched recursively).

    Args:
        folder: a folder holding the DICOM files of one 4D acquisition, in any of the layouts of the module docstring.
        frames: time indices to load (e.g. ``range(6)``); all by default. Only their pixels are read.
        series: read only the images of these series (:func:`scripts.utils.args.parse_series`: a SeriesNumber, a
            SeriesInstanceUID or text found in SeriesDescription, any case, or a list of these), for a folder that
            holds a whole study export; None reads every image in the folder.

    Returns:
        :class:`Series4D` with ``array`` ``(X, Y, Z, T)`` float32 in scanner units (CT: HU), ``affine`` voxel-to-RAS,
        ``times`` ``(T,)`` ms (TriggerTime where a trigger orders the time points, else AcquisitionTime/ContentTime
        relative to the first time point, else ``None``), and ``dicom_template`` the header (no pixel data) of the
        first image.

    Raises:
        InputError: naming the folder or file and the problem (see the module docstring for each check).
    """
    folder = Path(folder)
    logged = _Collect()
    pydicom_logger = logging.getLogger("pydicom")
    pydicom_logger.addFilter(logged)  # pydicom logs many of its warnings too: each kind is said once below instead
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return _read_series(folder, frames, parse_series(series, "series"))
            finally:
                warned = _kinds((record.category, str(record.message)) for record in caught)
    finally:
        pydicom_logger.removeFilter(logged)
        for (category, kind), text in warned.items():
            warnings.warn(f"{folder}: {text}", category, stacklevel=2)
        said = {kind for _, kind in warned}
        for (_, kind), text in _kinds((UserWarning, message) for message in logged.messages).items():
            if kind not in said:
                logger.warning("%s: pydicom: %s", folder, text)


class _Collect(logging.Filter):
    """A logging filter that keeps the messages of the records it stops."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


def _kinds(messages: Iterable[tuple[type[Warning], str]]) -> dict[tuple[type[Warning], str], str]:
    """One text per kind of ``messages`` (category, and text before the first ':' without quoted values and
    numbers), saying how many there were."""
    kinds: dict[tuple[type, str], list[str]] = defaultdict(list)
    for category, text in messages:
        kinds[(category, _VARYING.sub("", text.split(":")[0]))].append(text)
    return {kind: texts[0] + (f" (and {len(texts) - 1} more like it)" if len(texts) > 1 else "")
            for kind, texts in kinds.items()}


def _read_series(folder: Path, frames: Sequence[int] | None, series: tuple[str, ...] | None) -> Series4D:
    if not folder.is_dir():
        raise InputError(folder, "does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise InputError(folder, "the folder is empty")
    images = _read_images(folder, files, series)
    _check_same(folder, images, "PatientID")  # another patient's images are the worst mix-up: said first
    _check_one_acquisition(folder, images)
    _check_same(folder, images, "StudyInstanceUID")
    normal = slice_normal(images[0].orientation)
    slices = _cluster_positions(images, normal)
    grid, times, timed_by = _order_in_time(folder, slices, normal)
    num_frames = len(grid[0])
    frames = list(range(num_frames)) if frames is None else list(frames)
    if not frames or min(frames) < 0 or max(frames) >= num_frames:
        raise InputError(folder, f"has {num_frames} time points; frames {_listed([str(f) for f in frames])} were "
                         "asked for")
    first = [column[0] for column in grid]
    affine = affine_from_dicom(first[0].orientation, first[0].pixel_spacing, first[0].position,
                               _slice_step(folder, first, normal))
    shape = (int(first[0].header.Columns), int(first[0].header.Rows), len(grid), len(frames))
    _check_fits(folder, int(np.prod(shape, dtype=np.int64)) * 4, f"{' x '.join(map(str, shape))} voxels as float32")
    array = _read_pixels([[column[t] for t in frames] for column in grid])
    template = first[0].header
    logger.info("%s: %d x %d x %d voxels, %d of %d time points", folder, *array.shape[:3], len(frames), num_frames)
    sources = [[SourceImage.of(column[t].header, column[t].frame) for t in frames] for column in grid]
    gated, cycle_ms = _gating(folder, grid, times, timed_by)
    return Series4D(array, affine, str(folder), None if times is None else times[frames], template, sources,
                    gated=gated, cycle_ms=cycle_ms, timed_by=timed_by)


# A cardiac cycle (R-R interval) is 250-3000 ms (240-20 beats per minute): a NominalInterval outside is not one
# (0 is what several scanners write without an ECG; GE perfusion exports have written 6), and TriggerTimes spread
# over more than the longest are not delays after one trigger.
RR_RANGE_MS = (250.0, 3000.0)


def _gating(folder: Path, grid: list[list[_Image]], times: np.ndarray | None,
            timed_by: str | None) -> tuple[bool | None, float | None]:
    """Whether the frames are one ECG-gated cycle (:attr:`Series4D.gated`) and its R-R interval in ms.

    Gated: TriggerTime times the frames and they span less than one cycle, the images' median NominalInterval
    (enhanced: RRIntervalTimeNominal), else ``60000 / HeartRate``, where that lies in :data:`RR_RANGE_MS`, else its
    upper end. TriggerTimes spread over more (GE first-pass perfusion counts them on from beat to beat) are successive
    heartbeats: not gated, said in the log. A clock (AcquisitionTime, ContentTime): not gated; no times: unknown.
    """
    if timed_by is None or times is None:
        return None, None
    if timed_by != "TriggerTime":
        return False, None
    cycle, source = None, ""
    for key, name in (("NominalInterval", "NominalInterval"), ("HeartRateInterval", "HeartRate")):
        values = [im.time_keys[key] for column in grid for im in column if key in im.time_keys]
        value = float(np.median(values)) if values else None
        if value is not None and RR_RANGE_MS[0] <= value <= RR_RANGE_MS[1]:
            cycle, source = value, name
            break
    span = float(times[-1] - times[0])
    if span >= 1.1 * (cycle or RR_RANGE_MS[1]):
        bound = f"one R-R interval ({cycle:.0f} ms by {source})" if cycle else f"{RR_RANGE_MS[1]:.0f} ms"
        logger.warning("%s: its TriggerTimes span %.1f s, more than %s: not delays after one cardiac trigger "
                       "(successive heartbeats, as in first-pass perfusion, or a dynamic series), so not one gated "
                       "cardiac cycle", folder, span / 1000, bound)
        return False, cycle
    return True, cycle


def _check_fits(source: Path | str, need: int, what: str) -> None:
    """Refuse before allocating ``need`` bytes when they exceed the memory free for this process."""
    free = available_bytes(torch.device("cpu"))
    if need > free:
        raise InputError(source, f"{what} would need {_size(need)} of memory but {_size(free)} is free; "
                         "read fewer frames or crop the series first")


# --- headers ----------------------------------------------------------------------------------------------------

def _read_images(folder: Path, files: list[Path], series: tuple[str, ...] | None = None) -> list[_Image]:
    """Images of every DICOM image file under ``folder`` (of the ``series`` asked for, if any); non-image objects and
    localizers are skipped."""
    images, skipped, num_dicom = [], [], 0
    held: Counter[str] = Counter()  # files per series, when a series is asked for
    chosen: dict[str, None] = {}  # the series asked for that are there, in the order met
    free = available_bytes(torch.device("cpu"))
    for path in files:
        header = _read_header(path)
        if header is None:
            continue
        num_dicom += 1
        if series is not None:
            name = _series_name(header)
            held[name] += 1
            if not _is_series(header, series):
                continue
            chosen[name] = None
        sop_class = header.get("SOPClassUID") or getattr(header, "file_meta", {}).get("MediaStorageSOPClassUID")
        kind = getattr(sop_class, "name", str(sop_class))
        if "Rows" not in header or "Columns" not in header:
            if "Image Storage" in kind:
                raise InputError(path, f"a {kind} file without Rows/Columns: truncated or incomplete")
            skipped.append(kind)
            continue
        image_type = [str(v).upper() for v in header.get("ImageType", [])]
        if "LOCALIZER" in image_type:
            logger.info("%s: skipping a localizer image", path)
            continue
        if {"MOSAIC", "VFRAME"} & set(image_type):
            raise InputError(path, f"a mosaic (ImageType {'/'.join(sorted({'MOSAIC', 'VFRAME'} & set(image_type)))}: "
                             "the slices of a volume tiled in one image, as Siemens and UIH export EPI); convert the "
                             "series to a 4D NIfTI (e.g. with dcm2niix) and read that")
        _check_pixel_claim(path, header, free)
        _check_decodable(path, header)
        if int(header.get("SamplesPerPixel", 1)) != 1:
            raise InputError(path, f"colour image (SamplesPerPixel {header.SamplesPerPixel}); expected greyscale")
        images.extend(_enhanced_images(path, header) if _is_enhanced(path, header, sop_class, kind)
                      else [_classic_image(path, header)])
    if num_dicom == 0:
        raise InputError(folder, f"no DICOM file in the folder ({len(files)} files, none of them DICOM)")
    if series is not None:
        if not chosen:
            listing = [f"{name} ({n} files)" for name, n in sorted(held.items(), key=lambda item: _natural_key(item[0]))]
            raise InputError(folder, f"no series matches {', '.join(repr(s) for s in series)} (a SeriesNumber, a "
                             f"SeriesInstanceUID or text of a SeriesDescription); it holds {_listed(listing, 6)}")
        logger.info("%s: reading %s (%d of %d DICOM files)", folder, _listed(list(chosen)),
                    sum(held[n] for n in chosen), num_dicom)
    if not images:
        kinds = _listed(sorted(set(skipped))) or "localizers only"
        raise InputError(folder, f"no DICOM image in the folder, only non-image objects ({kinds})")
    if skipped:
        logger.info("%s: skipped %d non-image DICOM objects (%s)", folder, len(skipped), _listed(sorted(set(skipped))))
    return images


def _read_header(path: Path) -> Dataset | None:
    """The header of ``path`` without pixel data, or ``None`` for a non-DICOM file with a non-DICOM suffix."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as err:
        if path.suffix.lower() in NON_DICOM_SUFFIXES:
            logger.debug("%s: not DICOM, skipped", path)
            return None
        raise InputError(path, f"not a readable DICOM file ({_short(err)}); remove it from the folder") from err
    except Exception as err:  # truncated or corrupt files raise anything from EOFError to struct.error
        raise InputError(path, f"not a readable DICOM file ({type(err).__name__}: {_short(err)})") from err


_UID = re.compile(r"\d+(\.\d+)+")


def _series_name(header: Dataset) -> str:
    """How a series is named to the user: ``series 7 'CINE sax'`` (SeriesNumber, SeriesDescription)."""
    return (f"series {header.get('SeriesNumber', '?')} '{header.get('SeriesDescription', '') or ''}' "
            f"(UID {header.get('SeriesInstanceUID', '?')})")


def _is_series(header: Dataset, series: tuple[str, ...]) -> bool:
    """Whether ``header``'s series is one of ``series``: a SeriesNumber (digits), a SeriesInstanceUID (a UID), or
    text found in its SeriesDescription (any case)."""
    number = _optional_number(header, "SeriesNumber")
    uid = str(header.get("SeriesInstanceUID", "") or "")
    description = str(header.get("SeriesDescription", "") or "").casefold()
    for wanted in series:
        if re.fullmatch(r"[0-9]+", wanted):
            if number is not None and number == int(wanted):
                return True
        elif _UID.fullmatch(wanted):
            if uid == wanted:
                return True
        elif wanted.casefold() in description:
            return True
    return False


def _number_of_frames(path: Path, header: Dataset) -> int:
    value = header.get("NumberOfFrames")
    try:
        frames = 1 if value in (None, "") else int(value)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"NumberOfFrames has an invalid value {value!r}") from err
    if frames < 1:
        raise InputError(path, f"NumberOfFrames is {frames}; an image needs at least one frame")
    return frames


def _check_pixel_claim(path: Path, header: Dataset, free: int) -> None:
    """Refuse a header whose Rows x Columns x NumberOfFrames cannot be real or would not fit in free memory."""
    rows, columns = int(header.Rows or 0), int(header.Columns or 0)
    if rows < 1 or columns < 1:
        raise InputError(path, f"Rows {rows} x Columns {columns}: an image needs at least one pixel")
    frames = _number_of_frames(path, header)
    need = rows * columns * frames * (4 + (int(header.get("BitsAllocated", 16) or 16) + 7) // 8)
    if need > free:
        raise InputError(path, f"Rows {rows} x Columns {columns} x {frames} frames would need {_size(need)} of memory "
                         f"to decode but {_size(free)} is free")


def _is_enhanced(path: Path, header: Dataset, sop_class, kind: str) -> bool:
    """Whether ``header`` is a multi-frame object placed by functional groups, from its SOP class and frame count.

    A classic image may carry an empty Per-frame Functional Groups Sequence (GE cines do): the tag alone says
    nothing. A multi-frame file of another SOP class counts as enhanced only when it holds one functional group per
    frame; without them its frames cannot be placed in space.
    """
    if sop_class in ENHANCED_SOP_CLASSES:
        return True
    frames = _number_of_frames(path, header)
    if frames == 1:
        if "PerFrameFunctionalGroupsSequence" in header:
            logger.debug("%s: a single-frame %s with a Per-frame Functional Groups Sequence: read as classic",
                         path, kind)
        return False
    if len(header.get("PerFrameFunctionalGroupsSequence") or []) == frames:
        return True
    raise InputError(path, f"a multi-frame {kind} ({frames} frames) without per-frame functional groups: its frames "
                     "cannot be placed in space")


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
        raise InputError(path, f"{keyword} must hold {count} finite numbers, got {value!r}")
    return numbers


def _pixel_spacing(path: Path | str, owner: Dataset) -> np.ndarray:
    spacing = _numbers(path, owner, "PixelSpacing", 2)
    if np.any(spacing <= 0):
        raise InputError(path, f"PixelSpacing {spacing.tolist()} mm: both spacings must be positive")
    return spacing


def _orientation(path: Path | str, owner: Dataset) -> np.ndarray:
    """ImageOrientationPatient as two unit vectors; an error if they are not (nearly) perpendicular unit vectors."""
    values = _numbers(path, owner, "ImageOrientationPatient", 6)
    row, column = values[:3], values[3:]
    lengths = np.linalg.norm(row), np.linalg.norm(column)
    if max(abs(lengths[0] - 1), abs(lengths[1] - 1)) > ORIENTATION_TOL or abs(row @ column) > ORIENTATION_TOL:
        raise InputError(path, f"ImageOrientationPatient {values.tolist()} is degenerate: its row and column "
                         "directions must be perpendicular unit vectors")
    return np.concatenate([row / lengths[0], column / lengths[1]])


def _optional_number(owner: Dataset | None, keyword: str) -> float | None:
    """``owner.keyword`` as a float, or ``None`` if absent, empty or not a number (tolerated: it only orders)."""
    if owner is None or owner.get(keyword) in (None, ""):
        return None
    try:
        value = float(owner.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _beat_ms(heart_rate: float | None) -> float | None:
    """The R-R interval (ms) of a HeartRate in beats per minute; None for none or a non-positive one."""
    return None if heart_rate is None or heart_rate <= 0 else 60000.0 / heart_rate


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _time_of_day(value) -> float | None:
    """A DICOM TM value (``HHMMSS.ffffff``) or the time part of a DT value in seconds since midnight."""
    text = str(value or "").strip()
    if len(text) >= 14 and "." not in text[:8] and text[:8].isdigit():  # DT: YYYYMMDDHHMMSS.ffffff
        text = text[8:]
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?", text)
    if match is None:
        return None
    hours, minutes, seconds, fraction, _ = match.groups()
    return int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0) + float(fraction or 0)


def _clock_ms(owner: Dataset | None, keyword: str) -> float | None:
    return None if owner is None else _milliseconds(_time_of_day(owner.get(keyword)))


def _classic_image(path: Path, header: Dataset) -> _Image:
    keys = {k: _optional_number(header, k)
            for k in ("TemporalPositionIndex", "TemporalPositionIdentifier", "TriggerTime", "InstanceNumber")}
    keys["AcquisitionTime"] = _clock_ms(header, "AcquisitionTime")
    keys["ContentTime"] = _clock_ms(header, "ContentTime")
    keys["NominalInterval"] = _optional_number(header, "NominalInterval")
    keys["HeartRateInterval"] = _beat_ms(_optional_number(header, "HeartRate"))
    thickness = _optional_number(header, "SpacingBetweenSlices") or _optional_number(header, "SliceThickness")
    return _Image(path, None, header, _orientation(path, header), _numbers(path, header, "ImagePositionPatient", 3),
                  _pixel_spacing(path, header), thickness, _optional_number(header, "RescaleSlope") or 1.0,
                  _optional_number(header, "RescaleIntercept") or 0.0,
                  {k: v for k, v in keys.items() if v is not None})


def _enhanced_images(path: Path, header: Dataset) -> list[_Image]:
    """One image per frame of an enhanced multi-frame file, from its per-frame or shared functional groups."""
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or []
    frames = _number_of_frames(path, header)
    if len(per_frame) != frames:
        raise InputError(path, f"an enhanced multi-frame image with {frames} frames but {len(per_frame)} items in "
                         "its Per-frame Functional Groups Sequence: its frames cannot be placed in space")
    shared = header.SharedFunctionalGroupsSequence[0] if header.get("SharedFunctionalGroupsSequence") else Dataset()
    images = []
    for frame, group in enumerate(per_frame):
        def item(keyword: str, group: Dataset = group) -> Dataset | None:
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
            "TriggerTime": _first_known(_optional_number(cardiac, "NominalCardiacTriggerDelayTime"), _milliseconds(
                _optional_number(content, "TemporalPositionTimeOffset"))),  # a first phase's delay is 0, not absent
            "AcquisitionTime": _clock_ms(content, "FrameAcquisitionDateTime"),
            "InstanceNumber": float(frame + 1),
            "NominalInterval": _optional_number(cardiac, "RRIntervalTimeNominal"),
            "HeartRateInterval": _beat_ms(_optional_number(header, "HeartRate")),
        }
        thickness = _optional_number(measures, "SpacingBetweenSlices") or _optional_number(measures, "SliceThickness")
        images.append(_Image(
            path, frame, header, _orientation(where, plane), _numbers(where, position, "ImagePositionPatient", 3),
            _pixel_spacing(where, measures), thickness, _optional_number(transform, "RescaleSlope") or 1.0,
            _optional_number(transform, "RescaleIntercept") or 0.0, {k: v for k, v in keys.items() if v is not None}))
    return images


# --- one patient, one acquisition, slice positions --------------------------------------------------------------

def _check_same(folder: Path, images: list[_Image], keyword: str) -> None:
    """All images carry one value of ``keyword``; the error names two of the values and a file of each."""
    example: dict[str, Path] = {}
    count: Counter[str] = Counter()
    for image in images:
        value = str(image.header.get(keyword, "") or "")
        example.setdefault(value, image.path)
        count[value] += 1
    if len(count) > 1:
        values = [f"{keyword} '{value}' ({n} images, e.g. {example[value]})" for value, n in count.most_common()]
        raise InputError(folder, f"holds {len(count)} different {keyword} values: {_listed(values, 2)}; point to "
                         "the folder of one patient's study")


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
    return differences


def _check_one_acquisition(folder: Path, images: list[_Image]) -> None:
    """All images share orientation, pixel spacing and matrix; no image appears twice; FoR UIDs may differ (warned)."""
    groups: list[list[_Image]] = []
    for image in images:
        for group in groups:
            if not _geometry_differences(group[0], image):
                group.append(image)
                break
        else:
            groups.append([image])
    if len(groups) > 1:
        groups.sort(key=len, reverse=True)
        described = [
            f"{len(group)} images in {_listed(sorted({im.series_label for im in group}), 2)}"
            + ("" if i == 0 else f" (differs by {', '.join(_geometry_differences(groups[0][0], group[0]))})")
            for i, group in enumerate(groups)]
        raise InputError(folder, f"holds {len(groups)} acquisitions with different geometry: {_listed(described, 2)}; "
                         "move the series of one acquisition into a folder of its own and point to that, or choose "
                         "it by its SeriesNumber (interpolate --series N)")
    frames_of_reference = {str(im.header.get("FrameOfReferenceUID", "")) for im in images}
    if len(frames_of_reference) > 1:
        logger.warning("%s: %d different FrameOfReferenceUIDs among %d images of one geometry (some scanners write "
                       "one per image); grouped by orientation, position and pixel grid instead",
                       folder, len(frames_of_reference), len(images))
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
        # the widest gap where one is too wide (a missing slice), else the narrowest (an extra or shifted slice)
        worst = int(gaps.argmax()) if gaps.max() > (1 + GAP_TOLERANCE) * spacing else int(gaps.argmin())
        raise InputError(folder, f"slice positions are not evenly spaced: {gaps[worst]:.3f} mm between "
                         f"{_location([first[worst]], normal)} and {_location([first[worst + 1]], normal)}, "
                         f"{spacing:.3f} mm on average (a missing slice or a gap); a regular grid is required")
    return step


# --- time -------------------------------------------------------------------------------------------------------

def _order_in_time(folder: Path, slices: list[list[_Image]], normal: np.ndarray
                   ) -> tuple[list[list[_Image]], np.ndarray | None, str | None]:
    """``grid[z][t]`` images, times ``(T,)`` ms (or None) and the key the times came from (TriggerTime,
    AcquisitionTime, ContentTime, or None), deciding the layout from series and temporal tags."""
    by_series: dict[str, list[_Image]] = defaultdict(list)
    for images_here in slices:
        for image in images_here:
            by_series[image.series_uid].append(image)
    slice_of = {id(im): z for z, images_here in enumerate(slices) for im in images_here}
    positions_per_series = [len({slice_of[id(im)] for im in ims}) for ims in by_series.values()]
    # Series that share no slice position split one stack by slice: Siemens series-per-slice cines where one series
    # (one folder) holds several of the positions (the Kaggle Data Science Bowl's IM-<series>-<frame>-<slice> files).
    by_slice = (len(by_series) >= 2 and sum(positions_per_series) == len(slices)
                and _one_stack(by_series, slice_of))
    if len(by_series) >= 2 and max(positions_per_series) >= 2 and not by_slice:
        _check_not_several_time_series(folder, by_series, slice_of)
    if len(by_series) >= 2 and min(positions_per_series) >= 2 and not by_slice:
        layout = "series_per_phase"
        grid, (times, timed_by), key = _order_series(folder, by_series, slices, slice_of, normal)
    else:
        if any(im.frame is not None for images_here in slices for im in images_here):
            layout = "enhanced"
        elif len(by_series) == 1:
            layout = "single_series"
        elif max(positions_per_series) == 1:
            layout = "series_per_slice"
        elif by_slice:
            layout = f"series_per_slice ({len(by_series)} series for {len(slices)} slice positions)"
        else:
            layout = f"mixed ({len(by_series)} series)"
        grid, (times, timed_by), key = _order_images(folder, slices, normal)
    _check_time_points(folder, grid, slices, normal)
    logger.info("%s: layout %s, %d slice positions x %d time points, time points ordered by %s", folder, layout,
                len(grid), len(grid[0]), key)
    if layout.startswith("series_per_slice") and not key.startswith(("TriggerTime", "TemporalPosition")):
        _warn_ungated(folder, grid, key)
    return grid, times, timed_by


def _one_stack(by_series: dict[str, list[_Image]], slice_of: dict) -> bool:
    """Whether series that share no slice position are one acquisition split by slice: the same number of time
    points at every position of every series, and, where trigger times are known, frame steps within a factor
    :data:`STEP_RATIO` of each other (slices acquired in separate breath-holds differ with the heart rate, a
    perfusion series beside a cine by an order of magnitude)."""
    counts = {n for images in by_series.values() for n in Counter(slice_of[id(im)] for im in images).values()}
    if len(counts) != 1:
        return False
    steps = []
    for images in by_series.values():
        triggers = [im.time_keys.get("TriggerTime") for im in images]
        if None in triggers:
            return True  # nothing more to compare: the time points are ordered per position
        by_position: dict[int, list[float]] = defaultdict(list)
        for image, trigger in zip(images, triggers):
            by_position[slice_of[id(image)]].append(trigger)
        steps.extend(float(np.median(np.diff(sorted(values)))) for values in by_position.values() if len(values) > 1)
    steps = [step for step in steps if step > 0]  # a trigger constant within a slice (real-time stacks) says nothing
    return not steps or max(steps) <= STEP_RATIO * min(steps)


# Frame steps of the slices of one cine differ with the heart rate between breath-holds (RR 700 vs 1000 ms: 1.4).
STEP_RATIO = 1.6


def _check_not_several_time_series(folder: Path, by_series: dict[str, list[_Image]], slice_of: dict) -> None:
    """Refuse several series of one geometry when one of them holds time points of its own (every position it covers
    more than once): they are separate acquisitions (e.g. fMRI and diffusion runs exported into one folder)."""
    def time_points(images: list[_Image]) -> int:
        return min(Counter(slice_of[id(im)] for im in images).values())

    timed = {uid for uid, images in by_series.items() if time_points(images) >= 2}
    if timed:
        labels = [f"{images[0].series_label} ({time_points(images)} time points)" for uid, images in
                  sorted(by_series.items(), key=lambda item: item[0] not in timed)]
        raise InputError(folder, f"holds {len(by_series)} series of one geometry, {len(timed)} of them with time "
                         f"points of their own: {_listed(labels, 2)}; move one series into a folder of its own "
                         "and point to that, or choose it by its SeriesNumber (interpolate --series N)")


def _warn_ungated(folder: Path, grid: list[list[_Image]], key: str) -> None:
    """Say that a series-per-slice stack without a trigger stacks slices acquired at different times."""
    starts = [column[0].time_keys.get("AcquisitionTime", column[0].time_keys.get("ContentTime")) for column in grid]
    apart = "" if None in starts else f" up to {(max(starts) - min(starts)) / 1000:.1f} s apart"
    logger.warning("%s: each slice position is a series of its own ordered by %s, not by a cardiac trigger: each "
                   "volume stacks ungated slices acquired%s, so motion between them is not one instant", folder, key,
                   apart or " one after another")


def _check_time_points(folder: Path, grid: list[list[_Image]], slices: list[list[_Image]], normal) -> None:
    counts = [len(column) for column in grid]
    typical = max(set(counts), key=counts.count)
    for column, images_here in zip(grid, slices):
        if len(column) != typical:
            raise InputError(folder, f"{_location(images_here, normal)} has {len(column)} time points, other "
                             f"positions have {typical}; every slice position needs every time point")
    if typical < 2:
        raise InputError(folder, f"only one time point at each of {len(grid)} slice positions: a 3D series; a 4D "
                         "acquisition needs at least 2 frames")


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
# Keys that name a phase: two series (or two images at one position) with the same value are the same phase twice.
_PHASE_NAMING_KEYS = ("TemporalPositionIndex", "TemporalPositionIdentifier")
# Per-image times, used at a position only when they differ on every image there; then the instance order.
_TIME_KEYS = ("TriggerTime", "AcquisitionTime", "ContentTime")
_IMAGE_KEYS = (*_PHASE_NAMING_KEYS, *_TIME_KEYS, "InstanceNumber")


def _order_series(folder, by_series, slices, slice_of, normal
                  ) -> tuple[list[list[_Image]], tuple[np.ndarray | None, str | None], str]:
    """Layout series_per_phase: each series is one phase; order the series by the first usable series-level key."""
    for name, key in _SERIES_KEYS:
        values = {uid: {key(im) for im in ims} for uid, ims in by_series.items()}
        lacking = [uid for uid, v in values.items() if None in v]
        if lacking:
            if name == _SERIES_KEYS[0][0] and len(lacking) < len(values):
                labels = _listed(sorted({by_series[uid][0].series_label for uid in lacking}))
                raise InputError(folder, f"some series carry a phase percentage in SeriesDescription and others do "
                                 f"not ({labels}); remove the series that are not phases (e.g. average or MIP)")
            continue
        if any(len(v) > 1 for v in values.values()):
            continue
        phase_of = {uid: next(iter(v)) for uid, v in values.items()}
        if len(set(phase_of.values())) < len(phase_of):
            if name in (_SERIES_KEYS[0][0], *_PHASE_NAMING_KEYS):
                twice = [uid for uid in phase_of if list(phase_of.values()).count(phase_of[uid]) > 1]
                labels = _listed(sorted(by_series[uid][0].series_label for uid in twice))
                raise InputError(folder, f"duplicate phases: series with the same {name}: {labels}")
            continue
        order = sorted(phase_of, key=phase_of.get)
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
    if any(None in t for t in trigger):
        return grid, (None, None), name
    return grid, (np.array([np.mean(t) for t in trigger]), "TriggerTime"), name


def _position_key(images_here: list[_Image]) -> str | None:
    """The key that orders the images at one slice position (module docstring, step 4), or None."""
    for name in _IMAGE_KEYS:
        values = [im.time_keys.get(name) for im in images_here]
        if None in values or len(set(values)) < 2:
            continue
        if name in _TIME_KEYS and len(set(values)) < len(values):
            continue  # a time shared by several images there does not order them
        return name
    return None


def _order_images(folder, slices, normal) -> tuple[list[list[_Image]], tuple[np.ndarray | None, str | None], str]:
    """Layouts single_series, series_per_slice, enhanced: order the images at each position by its own key."""
    if max(len(images_here) for images_here in slices) < 2:
        raise InputError(folder, f"only one time point at each of {len(slices)} slice positions: a 3D series; a 4D "
                         "acquisition needs at least 2 frames")
    grid, keys = [], []
    for images_here in slices:
        name = _position_key(images_here)
        if name is None:
            raise InputError(folder, f"cannot order the {len(images_here)} images at {_location(images_here, normal)}:"
                             f" none of {', '.join(_IMAGE_KEYS)} differs between them")
        column = sorted(images_here, key=lambda im: im.time_keys[name])
        for earlier, later in itertools.pairwise(column):
            if earlier.time_keys[name] == later.time_keys[name]:
                raise InputError(folder, f"duplicate slices: {earlier.name} and {later.name} lie at the same "
                                 f"{_location([later], normal)} with the same {name} {later.time_keys[name]:g}")
        grid.append(column)
        keys.append(name)
    used = Counter(keys)
    key = next(iter(used)) if len(used) == 1 else ", ".join(f"{k} at {n} positions" for k, n in used.most_common())
    if len(used) > 1:
        logger.warning("%s: the slice positions order their time points by different keys (%s)", folder, key)
    return grid, _times(grid, used), key


def _times(grid: list[list[_Image]], used: Counter) -> tuple[np.ndarray | None, str | None]:
    """``(T,)`` ms: mean TriggerTime per time point where it differs at every position, else the mean time since the
    position's first image when every position was ordered by a clock (AcquisitionTime, ContentTime), or by a phase
    index the clock rises with at every position in a derived, ungated series (this bundle's cine of a real-time
    series: TemporalPositionIdentifier and ContentTime; an original series' clock may be its reconstruction order),
    else None; and the key they came from."""
    num_frames = min(len(column) for column in grid)
    for name, relative in (("TriggerTime", False), ("AcquisitionTime", True), ("ContentTime", True)):
        values = [[im.time_keys.get(name) for im in column[:num_frames]] for column in grid]
        if any(None in v or len(set(v)) < num_frames for v in values):
            continue
        array = np.array(values, dtype=np.float64)
        if relative and set(used) != {name} and not _rising_clock(array, grid, used):
            continue
        return (array - array[:, :1] if relative else array).mean(axis=0), name
    return None, None


def _rising_clock(clock: np.ndarray, grid: list[list[_Image]], used: Counter) -> bool:
    """Whether ``clock`` ``(Z, T)`` (ms) times a series ordered by a phase index: it rises with the index at every
    position, and the series is derived and ungated (ImageType DERIVED, no CG or PPG in ScanOptions)."""
    if not set(used) <= set(_PHASE_NAMING_KEYS) or not (np.diff(clock, axis=1) > 0).all():
        return False
    for column in grid:
        for image in column[: clock.shape[1]]:
            options = image.header.get("ScanOptions") or []
            options = {str(v).upper() for v in ([options] if isinstance(options, str) else options)}
            if [str(v).upper() for v in image.header.get("ImageType", [])][:1] != ["DERIVED"] or {"CG", "PPG"} & options:
                return False
    return True


def _first_known(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


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
            raise InputError(path, f"cannot decode the pixel data ({type(err).__name__}: {_short(err)})") from err
        for z, t, image in here:
            plane = pixels if image.frame is None else pixels.reshape(-1, *pixels.shape[-2:])[image.frame]
            if plane.shape != (array.shape[1], array.shape[0]):
                raise InputError(image.name, f"pixel data have shape {plane.shape}, header says "
                                 f"{(array.shape[1], array.shape[0])}")
            array[:, :, z, t] = plane.T * image.slope + image.intercept
    return array
