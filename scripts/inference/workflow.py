"""The inference program of ``configs/inference.json``: load -> intensity scale -> network -> writers.

    loader       (:func:`scripts.inference.inputs.load_input`)      the series and its endpoint frames
    scaling      (:class:`scripts.transforms.intensity.EndpointMinMax`) the endpoints' joint min-max -> [0, 1]
    inferer      (:class:`scripts.inference.interpolator.SeriesInterpolator`) the student, I0/I1 encoded once
    writers      (:mod:`scripts.inference.writers`)                  NIfTI, DICOM, montage, preview; then ``summary.json``

Two jobs: frames at ``t`` between two endpoint frames (``t`` / ``num_frames``, ``start_frame`` / ``end_frame``), or
the whole series made ``upsample`` times finer in time (``upsample`` K: K - 1 new frames between every two consecutive
acquired frames, and from the last back to the first when ``cyclic``; one intensity scale for the whole series, its
min-max, so the frames stay comparable). Either way the result is also a cine
(:class:`~scripts.inference.times.CineFrame` plan): acquired and synthesised frames in time order, which the DICOM
and preview writers write whole.

Each step is a named object of the config, so a user overrides one without touching the others
(``--writers#montage#name preview.png``). Everything is checked before the work: the output folder (refused if it
exists unless ``overwrite``, and even then unless it is an output folder of this bundle, holding ``summary.json``, and
holds no input), the output format against the input, the geometry and size of the grid, the time points. The
synthesised frames are checked finite before anything is written. All files appear together in
``output_dir`` (:func:`scripts.utils.atomic.atomic_dir`), or none of them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import PSNRMetric

from scripts.baselines.linear import blend
from scripts.inference.inputs import LoadedInput, load_input, warn_default_endpoints
from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.region import MotionRegion
from scripts.inference.times import (
    CineFrame,
    check_upsample,
    cine_times_ms,
    cycle_period_ms,
    cycle_phases,
    endpoints_plan,
    resolve_times,
    upsample_plan,
)
from scripts.inference.warp_choice import span_fraction
from scripts.io.nifti_read import check_affine
from scripts.io.series import Series4D
from scripts.networks.tmsdf import DIVISOR
from scripts.transforms.intensity import EndpointMinMax, IntensityScale
from scripts.utils.args import parse_bool, parse_cyclic, parse_series
from scripts.utils.atomic import OUTPUT_MARKER, atomic_dir, atomic_file, check_parent, check_replaceable
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.memory import available_bytes, size_text

__all__ = ["OUTPUT_FORMATS", "Interpolation", "InterpolationWorkflow", "demo_scores", "synthesise_between",
           "upsample_cine"]

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("nifti", "dicom", "both")
# which writers each output format runs (summary.json is always written)
_FORMAT_WRITERS = {"nifti": ("nifti",), "dicom": ("dicom",), "both": ("nifti", "dicom")}
# written whatever the format, when the config names them
_OPTIONAL_WRITERS = ("montage", "preview")


@dataclasses.dataclass
class Interpolation:
    """One interpolation's inputs and results, what every writer receives.

    Attributes:
        series: the input series (``array`` ``(X, Y, Z, T)`` in the input's units).
        start, end: the endpoint frames (0-based); with ``upsample``, the first pair of the series.
        times: the N time points in [0, 1], ascending (with ``upsample``, those of every pair).
        scale: the intensity map between the input's units and [0, 1].
        frames_unit: ``(X, Y, Z, N)`` float32 synthesised frames in [0, 1] (with ``upsample``, the first pair's).
        frames: the same in the input's units.
        truth: ``(X, Y, Z, N)`` true frames in the input's units (the demo case), else None.
        plan: the output cine, acquired and synthesised frames in time order (M frames).
        cine: ``(X, Y, Z, M)`` float32, the cine in the input's units, acquired frames exactly as read.
        cine_times: ``(M,)`` ms of each cine frame when the input's frame times are known, else None.
        upsample: the factor K of a whole-series upsampling, None for the two-endpoint job.
    """

    series: Series4D
    start: int
    end: int
    times: list[float]
    scale: IntensityScale
    frames_unit: np.ndarray
    frames: np.ndarray
    truth: np.ndarray | None = None
    plan: list[CineFrame] = dataclasses.field(default_factory=list)
    cine: np.ndarray | None = None
    cine_times: np.ndarray | None = None
    upsample: int | None = None

    @property
    def time_step_ms(self) -> float | None:
        """The cine's mean time step in ms (with ``upsample``, the acquired step / K), when the input's frame times
        are known."""
        times = self.cine_times
        return None if times is None or len(times) < 2 else float(np.mean(np.diff(times)))

    @property
    def i0(self) -> np.ndarray:
        return self.series.array[..., self.start]

    @property
    def i1(self) -> np.ndarray:
        return self.series.array[..., self.end]


class InterpolationWorkflow:
    """Interpolate one series and write the outputs to ``output_dir``.

    Args:
        inferer: the network step (:class:`~scripts.inference.interpolator.SeriesInterpolator`).
        writers: ``{"nifti": ..., "dicom": ..., "montage": ...}`` (:mod:`scripts.inference.writers`); each is called
            as ``writer(interpolation, folder)`` and returns what ``summary.json`` lists for it.
        loader: ``loader(input, start_frame, end_frame, series=...) -> LoadedInput`` (default
            :func:`~scripts.inference.inputs.load_input`).
        scaling: ``scaling(i0, i1, source) -> IntensityScale`` (default the endpoints' joint min-max).
        input: a 4D NIfTI file, a DICOM folder, a list of two 3D volumes, or None for the embedded demo case.
        series: of a DICOM folder holding a whole study, the series to read (a SeriesNumber, a SeriesInstanceUID or
            text of a SeriesDescription, or a list of these: :func:`~scripts.utils.args.parse_series`); None reads
            every image in the folder.
        t: time point(s) in [0, 1] between the start (0) and end (1) frame.
        num_frames: instead of ``t``, this many evenly spaced time points (default: 1, t = 0.5).
        start_frame, end_frame: 0-based endpoint frames of a 4D input (default first and last; the demo uses its
            ED and ES and, without ``t``/``num_frames``, the times of the true frames in between).
        output_dir: the folder to create; refused if it exists unless ``overwrite``.
        output_format: ``nifti``, ``dicom`` (DICOM inputs) or ``both``.
        overwrite: replace ``output_dir`` if it exists.
        upsample: instead of ``t``: the whole series with ``upsample - 1`` new frames between every two consecutive
            acquired frames (refused together with ``t``, ``num_frames``, ``start_frame``, ``end_frame``).
        cyclic: with ``upsample``, the series is periodic (a cardiac cycle, a breathing cycle): new frames also
            between the last acquired frame and the first; ``"auto"`` / None: periodic unless the input says it is
            not one cycle (:func:`resolve_cyclic`).
        region: where the network runs (:class:`~scripts.inference.region.MotionRegion`); None runs it on the
            whole volume.
    """

    def __init__(
        self,
        inferer: SeriesInterpolator,
        writers: Mapping[str, Callable],
        loader: Callable[..., LoadedInput] = load_input,
        scaling: Callable[..., IntensityScale] | None = None,
        input: str | Sequence[str] | None = None,
        t: float | Sequence[float] | str | None = None,
        num_frames: int | None = None,
        start_frame: int | None = None,
        end_frame: int | None = None,
        output_dir: str | os.PathLike = "output",
        output_format: str = "nifti",
        overwrite: bool = False,
        upsample: int | None = None,
        cyclic: bool | str | None = "auto",
        region: MotionRegion | None = None,
        series: str | int | Sequence[str | int] | None = None,
    ):
        self.inferer, self.writers, self.loader = inferer, dict(writers), loader
        self.region = MotionRegion(enabled=False) if region is None else region
        self.scaling = EndpointMinMax() if scaling is None else scaling
        self.input, self.t, self.num_frames = input, t, num_frames
        self.start_frame, self.end_frame = start_frame, end_frame
        self.output_dir, self.output_format = output_dir, output_format
        self.overwrite = parse_bool(overwrite, "--overwrite")
        self.upsample, self.cyclic = upsample, cyclic
        self.series = parse_series(series, "--series")

    def _inputs(self) -> list[str]:
        """The input files / folders (what ``--overwrite`` must never delete)."""
        given = self.input if isinstance(self.input, (list, tuple)) else [self.input]
        return [os.fspath(p) for p in given if isinstance(p, (str, os.PathLike))]

    def run(self) -> Path:
        """Check, load, synthesise, write; returns ``output_dir``."""
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError("--output_format", f"must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        if self.upsample is not None:
            check_upsample(self.upsample, self.t, self.num_frames, self.start_frame, self.end_frame)
            self.cyclic = parse_cyclic(self.cyclic, "--cyclic")
        if Path(self.output_dir).exists():  # before the work, not only when writing
            if not self.overwrite:
                raise OutputExistsError(self.output_dir)
            check_replaceable(self.output_dir, OUTPUT_MARKER, keep=self._inputs())
        check_parent(self.output_dir)
        loaded = self.loader(self.input, self.start_frame, self.end_frame, series=self.series)
        series = loaded.series
        check_grid(series)
        if self.output_format != "nifti" and series.dicom_template is None:
            raise InputError("--output_format", f"{self.output_format!r} needs a DICOM input; {series.source} is not")
        if self.upsample is not None:
            self.cyclic = resolve_cyclic(self.cyclic, series)
        started = time.perf_counter()
        result = self._upsample(series) if self.upsample is not None else self._between(loaded)
        seconds = time.perf_counter() - started
        network, checkpoint = self.inferer.job(result.upsample is not None)
        check_finite(result.cine, checkpoint)
        synthesised = sum(not frame.acquired for frame in result.plan)
        logger.info("synthesised %d frames in %.2f s (%.2f s per frame)", synthesised, seconds,
                    seconds / max(synthesised, 1))
        summary = {
            "input": series.source, "start_frame": result.start, "end_frame": result.end, "t": result.times,
            "grid": list(series.array.shape[:3]), "spacing_mm": list(series.spacing),
            "device": str(self.inferer.device), "precision": self.inferer.precision, "checkpoint": checkpoint,
            "seconds": round(seconds, 3),
            "image_warp": network.image_warp, "outputs": {},
        }
        if result.upsample is not None:
            refinement = self.inferer.refines(series.num_frames)
            summary.update({"upsample": result.upsample, "cyclic": self.cyclic, "frames_in": series.num_frames,
                            "frames_out": len(result.plan), "neighbour_refinement": refinement,
                            "retiming": self.inferer.retimes(self.cyclic, series.gated)})
            if refinement:
                summary["neighbour_checkpoint"] = str(self.inferer.neighbours.checkpoint)
            del summary["start_frame"], summary["end_frame"]
        with atomic_dir(self.output_dir, overwrite=self.overwrite, marker=OUTPUT_MARKER, keep=self._inputs()) as tmp:
            names = [*_FORMAT_WRITERS[self.output_format], *(n for n in _OPTIONAL_WRITERS if n in self.writers)]
            for name in names:
                summary["outputs"][name] = self.writers[name](result, tmp)
            if result.truth is not None:
                scale, i0, i1 = result.scale, result.i0, result.i1
                summary["demo"] = demo_scores(scale.to_unit(i0), scale.to_unit(i1), result.frames_unit,
                                              scale.to_unit(result.truth), result.times)
                logger.info("demo: %s", summary["demo"])
            with atomic_file(tmp / OUTPUT_MARKER) as path:
                path.write_text(json.dumps(summary, indent=2))
        logger.info("wrote %s", self.output_dir)
        return Path(self.output_dir)

    def _between(self, loaded: LoadedInput) -> Interpolation:
        """Frames at ``t`` between the two endpoint frames, scaled by the endpoints."""
        warn_default_endpoints(loaded, self.start_frame, self.end_frame)
        series, t, truth = loaded.series, self.t, None
        if t is None and self.num_frames is None and loaded.truth_times is not None:
            t, truth = loaded.truth_times, loaded.truth  # the demo: scored against its true frames at their times
        ts = resolve_times(t, self.num_frames)
        i0, i1 = series.array[..., loaded.start], series.array[..., loaded.end]
        scale = self.scaling(i0, i1, series.source)
        frames_unit = synthesise_between(self.inferer, self.region, series, loaded.start, loaded.end, ts, scale)
        frames = scale.from_unit(frames_unit).astype(np.float32)
        plan = endpoints_plan(loaded.start, loaded.end, ts)
        by_t = dict(zip(ts, np.moveaxis(frames, -1, 0)))
        cine = np.stack([series.array[..., f.previous] if f.acquired else by_t[f.fraction] for f in plan], axis=-1)
        return Interpolation(series, loaded.start, loaded.end, ts, scale, frames_unit, frames, truth, plan,
                             cine, cine_times_ms(plan, series.times, series.cycle_ms))

    def _upsample(self, series: Series4D) -> Interpolation:
        return upsample_cine(self.inferer, self.region, series, self.upsample, self.cyclic)


def synthesise_between(inferer: SeriesInterpolator, region: MotionRegion, series: Series4D, start: int, end: int,
                       ts: Sequence[float], scale: IntensityScale) -> np.ndarray:
    """The two-endpoint job's network step: ``(X, Y, Z, N)`` float32 in [0, 1], the frames at ``ts`` between frames
    ``start`` and ``end`` of ``series``, through ``region`` (located from every frame of the series, on ``scale``)."""
    i0, i1 = series.array[..., start], series.array[..., end]
    logger.info("%s: grid %s, frames %d -> %d, t = %s on %s", series.source, i0.shape, start, end,
                [round(v, 4) for v in ts], inferer.device)
    endpoints = np.stack([scale.to_unit(i0), scale.to_unit(i1)], axis=-1)
    span = span_fraction(start, end, series.num_frames)
    return region.run(lambda f: inferer.synthesise(f[..., 0], f[..., 1], ts, span), endpoints, series.spacing,
                      [(0, 1, v) for v in ts], motion=scale.to_unit(series.array))


def resolve_cyclic(cyclic: bool | None, series: Series4D) -> bool:
    """``cyclic`` as given, or for None (auto) whether ``series`` wraps around: yes unless its input says it is not
    one cycle (:attr:`~scripts.io.series.Series4D.gated` False: a DICOM series timed by a clock, or by TriggerTimes
    over several heartbeats), which is said in the log."""
    if cyclic is not None:
        return bool(cyclic)
    if series.gated is False:
        logger.warning("%s: not one cycle, so no frames are made between its last frame and its first (--cyclic True "
                       "makes them)", series.source)
        return False
    return True


def upsample_cine(inferer: SeriesInterpolator, region: MotionRegion, series: Series4D, factor: int,
                  cyclic: bool) -> Interpolation:
    """The whole ``series`` ``factor`` times finer in time, on one intensity scale (the whole series' min-max).

    ``factor - 1`` new frames between every two consecutive acquired frames (and from the last back to the first when
    ``cyclic``), each pair's through ``region`` and ``inferer.upsample`` (the neighbour refinement where it applies).

    Raises:
        InputError: naming ``--upsample`` when ``factor`` is not a whole number >= 2 or the cine it asks for would not
            fit in the free memory, or the series when it has one frame; before any work.
    """
    factor = check_upsample(factor, None, None, None, None)
    num_frames = series.num_frames
    if num_frames < 2:
        raise InputError(series.source, "has one frame; upsampling needs at least 2")
    frames_out = num_frames * factor if cyclic else (num_frames - 1) * factor + 1
    check_cine_memory(series, factor, frames_out)
    plan = upsample_plan(num_frames, factor, cyclic)
    scale = IntensityScale.of(series.array, series.source)
    logger.info("%s: grid %s, %d frames -> %d (x%d, %s) on %s", series.source, series.array.shape[:3], num_frames,
                len(plan), factor, "cyclic" if cyclic else "not cyclic", inferer.device)
    period = cycle_period_ms(series.times, series.cycle_ms) if series.gated else None
    phases = cycle_phases(series.times, period)
    if cyclic and inferer.retiming is not None:
        if not inferer.retimes(cyclic, series.gated):
            logger.warning("%s: its frames are not one ECG-gated cardiac cycle (a real-time series, or successive "
                           "heartbeats): the motion clock is not applied", series.source)
        elif phases is not None:
            logger.info("%s: the motion clock reads the frames' trigger times over a cycle of %.0f ms", series.source,
                        period)
    unit = scale.to_unit(series.array).astype(np.float32)
    new = [m for m, frame in enumerate(plan) if not frame.acquired]
    acquired = [m for m, frame in enumerate(plan) if frame.acquired]
    new_unit = region.run(lambda f: inferer.upsample(f, plan, phases, series.gated)[..., new], unit, series.spacing,
                          [(plan[m].previous, plan[m].next, plan[m].fraction) for m in new])
    cine = np.empty((*unit.shape[:3], len(plan)), dtype=np.float32)
    cine[..., acquired] = series.array[..., [plan[m].previous for m in acquired]]  # exactly as read
    cine[..., new] = scale.from_unit(new_unit)
    first = [n for n, m in enumerate(new) if (plan[m].previous, plan[m].next) == (plan[1].previous, plan[1].next)]
    ts = [plan[new[n]].fraction for n in first]
    return Interpolation(series, plan[1].previous, plan[1].next, ts, scale, new_unit[..., first],
                         cine[..., [new[n] for n in first]], None, plan, cine,
                         cine_times_ms(plan, series.times, series.cycle_ms),
                         factor)


# float32 volumes held at once while a cine of M frames is made from T: the acquired frames in [0, 1] (T), the
# inferer's output (M), the new frames cut from it and mapped back to the input's units (2 (M - T)) and the cine (M)
CINE_COPIES = 4


def check_cine_memory(series: Series4D, factor: int, frames_out: int) -> int:
    """Refuse (``InputError`` naming ``--upsample``) a cine that would not fit in the free memory, before the plan or
    any array is made; returns the bytes it needs (float32: the acquired frames once, ``CINE_COPIES`` cines)."""
    voxels = int(np.prod(series.array.shape[:3], dtype=np.int64))
    need = 4 * voxels * (series.num_frames + CINE_COPIES * frames_out)
    free = available_bytes("cpu")
    if need > free:
        raise InputError("--upsample", f"x{factor} makes {frames_out} frames of {tuple(series.array.shape[:3])}, about "
                                       f"{size_text(need)}, but {size_text(free)} is free for this process: "
                                       "ask for a smaller factor, or crop the series first")
    return need


def check_grid(series: Series4D) -> None:
    """Refuse, before any work, a series the network cannot place or process: a NaN / degenerate affine, or a grid
    too small for the network's coarsest level (every axis at most ``DIVISOR`` voxels, e.g. 1x1x1)."""
    check_affine(series.affine, series.source)
    shape = tuple(series.array.shape[:3])
    if all(n <= DIVISOR for n in shape):
        raise InputError(series.source, f"the grid {shape} is too small: the network needs more than {DIVISOR} voxels "
                                        "along at least one axis")


def check_finite(frames: np.ndarray, checkpoint: str | os.PathLike) -> None:
    """Refuse to write synthesised ``frames`` holding NaN or infinite voxels (naming the weights that made them)."""
    bad = int(np.count_nonzero(~np.isfinite(frames)))
    if bad:
        raise InputError(checkpoint, f"the network produced {bad} NaN or infinite voxel(s) on this input; nothing was "
                                     "written (damaged weights, or an input far outside the trained range)")


def demo_scores(i0: np.ndarray, i1: np.ndarray, frames: np.ndarray, truth: np.ndarray,
                ts: Sequence[float]) -> dict[str, float]:
    """Mean PSNR (dB, data range 1) of the synthesised frames and of the linear blend against the true frames.

    Args:
        i0, i1: ``(X, Y, Z)`` endpoints in [0, 1]; frames, truth: ``(X, Y, Z, N)`` in [0, 1]; ts: the N times.
    """
    def psnr(pred, true) -> float:  # over every voxel, whatever the leading axes (the blend keeps a batch axis)
        return float(PSNRMetric(max_val=1.0)(torch.as_tensor(pred, dtype=torch.float64).reshape(1, 1, -1),
                                            torch.as_tensor(true, dtype=torch.float64).reshape(1, 1, -1)).item())

    ours = [psnr(frames[..., n], truth[..., n]) for n in range(len(ts))]
    blends = [psnr(blend(i0, i1, v), truth[..., n]) for n, v in enumerate(ts)]
    return {"psnr_student": float(np.mean(ours)), "psnr_blend": float(np.mean(blends))}
