"""Temporal super-resolution on the native grid: whole series scored the way ``interpolate --upsample K`` makes them.

The protocol grid (:mod:`scripts.evaluation.superres`) resamples every series to one small grid and runs each method
pair by pair. Users run something else: the series at its own resolution and spacing, one min-max over all of its
frames (:class:`~scripts.transforms.intensity.IntensityScale`), the student through
:meth:`SeriesInterpolator.upsample <scripts.inference.interpolator.SeriesInterpolator.upsample>` inside the motion
region (:class:`~scripts.inference.region.MotionRegion`: the network in a box around the moving voxels, resampled in
plane to the training spacing when needed, the blend around it). Here each series is scored exactly so:

- the series is read from its file (ACDC: the patient's 4D NIfTI; ``nifti4d``: the file), not resampled, and scaled to
  [0, 1] by its own min-max over every frame;
- for each factor ``k`` the acquired frames are ``0, k, 2k, ...`` and the dropped frames, their acquired neighbours
  and their ``t`` are those of :func:`~scripts.evaluation.superres.acquired_pairs` (the protocol grid's frames);
- ``student`` (and each variant) runs as the product runs it: ``SeriesInterpolator.upsample`` on the acquired frames
  with a :class:`~scripts.inference.times.CineFrame` plan of the dropped frames, inside ``MotionRegion.run`` built
  from the ``region`` step of ``configs/inference.json`` (``motion_region`` on or off); the shipped student is built
  from that config's ``network_def``. ``blend`` is the same plan with the linear blend;
- every dropped frame is scored whole-volume (PSNR with peak 1, SSIM, NCC, NMSE) and by its PSNR over the moving
  region (:data:`MOVING_REGION`), where a full field of view's static body does not dilute the error.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from monai.metrics import PSNRMetric
from tqdm import tqdm

from scripts.baselines.linear import blend
from scripts.datasets.acdc import acdc_cases, series_file
from scripts.datasets.dropped_frames import acquired_pairs
from scripts.datasets.nifti4d import nifti4d_case, nifti4d_cases
from scripts.evaluation.methods import Blend, Method, MethodUnavailable, StudentMethod
from scripts.evaluation.metrics import image_metrics
from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.neighbour_refiner import NeighbourRefiner
from scripts.inference.region import MotionRegion
from scripts.inference.times import CineFrame
from scripts.inference.warp_choice import WarpBySpan
from scripts.io.nifti_read import nifti_4d_shape, read_nifti_4d
from scripts.transforms.intensity import IntensityScale
from scripts.transforms.motion_roi import motion_map
from scripts.transforms.retiming import CycleRetiming
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT

__all__ = ["MOVING_REGION", "ProductSteps", "dropped_plan", "moving_region", "native_methods", "native_series", "product_steps",
           "region_psnr", "score_native"]

logger = logging.getLogger(__name__)

MOVING_FRACTION, MOVING_PERCENTILE = 0.2, 99.5
MOVING_REGION = ("moving region: the voxels whose temporal standard deviation over the true full series exceeds "
                 f"{MOVING_FRACTION:.0%} of its {MOVING_PERCENTILE}th percentile")
# the methods that run on the native grid; the registration baselines are protocol-grid only
NATIVE_METHODS = ("blend", "student", "student_pairwise")


def native_series(dataset: str, dataset_dir: str | Path, split: str,
                  factors: Sequence[int]) -> list[tuple[str, Path]]:
    """``[(case name, 4D NIfTI)]`` of a dataset's split, checked from the headers before any work.

    Raises:
        InputError: naming the kind when it is not ``acdc`` or ``nifti4d``; naming a file whose frames are too few
            for a factor (``k`` needs more than ``k`` frames: at least two acquired frames); or as the dataset does.
    """
    if dataset == "acdc":
        files = [(folder.name, series_file(folder)) for folder in acdc_cases(dataset_dir, split)]
    elif dataset == "nifti4d":
        files = [(nifti4d_case(path).case_id, path) for path in nifti4d_cases(dataset_dir, split)]
    else:
        raise InputError("dataset", f"must be one of acdc, nifti4d (whole series); got {dataset!r}")
    for _, path in files:
        num_frames = nifti_4d_shape(path)[3]
        if num_frames <= max(factors):
            raise InputError(path, f"has {num_frames} frames; x{max(factors)} keeps only frame 0 of them "
                                   f"(needs more than {max(factors)} frames)")
    return files


class ProductSteps(NamedTuple):
    """The parts of the inference config a benchmark runs: the student network (``network_def``, untrained), the
    motion-region step (``region``), the image warp per pair (``warp_choice``, None where the config has none), the
    neighbour refinement (``neighbour_refiner``, its weights not yet read; None where the config runs none), the
    weights file of the whole-series job (``cine_checkpoint``, else ``checkpoint``) and the motion clock
    (``cycle_clock``, None where the config runs none)."""

    network: torch.nn.Module
    region: MotionRegion
    warp_choice: WarpBySpan | None
    neighbours: NeighbourRefiner | None = None
    cine_weights: Path | None = None
    retiming: CycleRetiming | None = None


def product_steps(motion_region: bool, config: str | Path = ROOT / "configs" / "inference.json",
                  neighbour_checkpoint: str | Path | None = None) -> ProductSteps:
    """The :class:`ProductSteps` of the inference config, with its ``motion_region`` switch set (and the neighbour
    refinement's weights file, when given, turning it on), parsed once by MONAI's ``ConfigParser`` so the benchmark
    runs what the product runs."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["motion_region"] = bool(motion_region)
    if neighbour_checkpoint is not None:
        parser.update({"neighbour_checkpoint": str(neighbour_checkpoint), "neighbour_refinement": True})
    parser["bundle_root"] = str(ROOT)  # the weights of this bundle, wherever the benchmark is run from
    warp_choice = parser.get_parsed_content("warp_choice") if "warp_choice" in parser else None
    neighbours = parser.get_parsed_content("neighbour_refiner") if "neighbour_refiner" in parser else None
    weights = parser.get_parsed_content("cine_checkpoint" if "cine_checkpoint" in parser else "checkpoint")
    retiming = parser.get_parsed_content("cycle_clock") if "cycle_clock" in parser else None
    return ProductSteps(parser.get_parsed_content("network_def"), parser.get_parsed_content("region"), warp_choice,
                        neighbours, Path(weights), retiming)


class NativeBlend:
    """The linear blend ``(1 - t) I_a + t I_b`` of each planned frame's acquired neighbours."""

    def __init__(self, name: str = "blend"):
        self.name = name

    def setup(self, device: torch.device) -> None:
        pass

    def synthesise(self, acquired: np.ndarray, plan: Sequence[CineFrame], spacing: Sequence[float],
                   phases: Sequence[float] | None = None) -> np.ndarray:
        """``(X, Y, Z, T')`` acquired frames in [0, 1] -> ``(X, Y, Z, N)`` the N frames of ``plan`` (``phases``, the
        students' motion clock input, plays no part in a blend)."""
        def frames(indices: list[int]) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(acquired[..., indices], -1, 0)))[:, None]

        out = blend(frames([p.previous for p in plan]), frames([p.next for p in plan]), [p.fraction for p in plan])
        return out[:, 0].permute(1, 2, 3, 0).numpy()


class NativeStudent:
    """A student run as ``interpolate --upsample`` runs it: ``SeriesInterpolator.upsample`` inside ``region``.

    Args:
        name: the method's name in the results.
        network: a :class:`scripts.networks.Student`; weights: its state dict.
        region: the motion-region step (:func:`product_steps`).
        warp_choice: the image warp per pair (:class:`~scripts.inference.warp_choice.WarpBySpan`), or None for the
            network's own.
        neighbours: the neighbour refinement (:class:`~scripts.inference.neighbour_refiner.NeighbourRefiner`), or
            None (the student alone).
        retiming: the motion clock (:class:`~scripts.transforms.retiming.CycleRetiming`), or None.
    """

    def __init__(self, name: str, network: torch.nn.Module, weights: str | Path, region: MotionRegion,
                 warp_choice: WarpBySpan | None = None, neighbours: NeighbourRefiner | None = None,
                 retiming: CycleRetiming | None = None):
        self.name, self.network, self.weights, self.region = name, network, weights, region
        self.warp_choice, self.neighbours, self.retiming = warp_choice, neighbours, retiming

    def setup(self, device: torch.device) -> None:
        for path in (self.weights, *([self.neighbours.checkpoint] if self.neighbours is not None else [])):
            if path is None or not Path(path).is_file():
                raise MethodUnavailable(f"weights file {path} not found")
        self.inferer = SeriesInterpolator(self.network, self.weights, device=device, warp_choice=self.warp_choice,
                                          neighbours=self.neighbours, retiming=self.retiming)

    def synthesise(self, acquired: np.ndarray, plan: Sequence[CineFrame], spacing: Sequence[float],
                   phases: Sequence[float] | None = None) -> np.ndarray:
        """``(X, Y, Z, T')`` acquired frames in [0, 1], spacing in mm -> ``(X, Y, Z, N)`` the N frames of ``plan``;
        ``phases``: the acquired frames' places in the cycle (``SeriesInterpolator.upsample``)."""
        neighbours = [(p.previous, p.next, p.fraction) for p in plan]
        return self.region.run(lambda f: self.inferer.upsample(f, plan, phases), acquired, spacing, neighbours)


def native_methods(chosen: Sequence[Method], region: MotionRegion) -> list[NativeBlend | NativeStudent]:
    """The native-grid form of the protocol methods ``chosen`` (:func:`~scripts.evaluation.methods.select_methods`):
    the blend and every student (same network, weights, name and image warp per pair); the registration baselines are
    refused.

    Raises:
        InputError: naming ``methods`` for a method that runs on the protocol grid only.
    """
    native = []
    for method in chosen:
        if isinstance(method, Blend):
            native.append(NativeBlend(method.name))
        elif isinstance(method, StudentMethod):
            native.append(NativeStudent(method.name, method.network, method.weights, region, method.warp_choice,
                                        method.neighbours, method.retiming))
        else:
            raise InputError("methods", f"{method.name!r} runs on the protocol grid only; grid 'native' takes "
                                        f"{', '.join(NATIVE_METHODS)} and student variants")
    return native


def dropped_plan(num_frames: int, factor: int, cyclic: bool) -> tuple[list[int], list[int], list[CineFrame]]:
    """The acquired frames, the dropped frames and their plan over the acquired frames.

    Returns:
        ``(acquired, dropped, plan)``: ``acquired`` = ``0, k, 2k, ...``; ``dropped`` the frames of
        :func:`~scripts.evaluation.superres.acquired_pairs` in order; ``plan[n]`` places ``dropped[n]`` between its
        neighbours as indices into ``acquired`` (``CineFrame(a / k, (c mod T) / k, (f - a) / (c - a))``).
    """
    dropped, plan = [], []
    for a, c, frames in acquired_pairs(num_frames, factor, cyclic):
        for f in frames:
            dropped.append(f)
            plan.append(CineFrame(a // factor, (c % num_frames) // factor, (f - a) / (c - a)))
    return list(range(0, num_frames, factor)), dropped, plan


def moving_region(unit: np.ndarray, source: str | Path) -> np.ndarray:
    """The moving region (:data:`MOVING_REGION`) of a series ``(X, Y, Z, T)``, a boolean ``(X, Y, Z)``.

    Raises:
        InputError: naming ``source`` when nothing moves (no voxel's temporal standard deviation is above zero).
    """
    deviation = motion_map(np.moveaxis(unit, -1, 0))
    mask = deviation > MOVING_FRACTION * np.percentile(deviation, MOVING_PERCENTILE)
    if not mask.any():
        raise InputError(source, "does not move (every voxel is the same in every frame): nothing to interpolate")
    return mask


def region_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 1) of ``pred`` against ``truth`` (``(X, Y, Z)`` in [0, 1]) over the voxels of ``mask``."""
    voxels = [torch.as_tensor(v[mask], dtype=torch.float64).reshape(1, 1, -1) for v in (pred, truth)]
    return float(PSNRMetric(max_val=1.0)(*voxels).item())


@torch.no_grad()
def score_native(series: Sequence[tuple[str, Path]], methods: Sequence[NativeBlend | NativeStudent],
                 factors: Sequence[int] = (2, 4), cyclic: bool = True) -> list[dict]:
    """Score ``methods`` (set up already) on every series and factor at the series' own grid (module docstring).

    Returns:
        one row per factor, method, series and dropped frame: ``factor, subject, frame, t, method``, the image
        metrics over the whole volume and ``psnr_region`` over the moving region.
    """
    rows = []
    for name, path in tqdm(series, desc="superres (native)", unit="series", disable=None):
        loaded = read_nifti_4d(path)
        unit = IntensityScale.of(loaded.array, loaded.source).to_unit(loaded.array).astype(np.float32)
        mask = moving_region(unit, loaded.source)
        logger.info("%s: grid %s, spacing %s mm, %d frames, moving region %d voxels (%.1f %%)", name,
                    unit.shape[:3], tuple(round(s, 3) for s in loaded.spacing), unit.shape[3], mask.sum(),
                    100.0 * mask.mean())
        for factor in factors:
            acquired, dropped, plan = dropped_plan(unit.shape[3], factor, cyclic)
            psnr = defaultdict(list)
            for method in methods:
                preds = method.synthesise(unit[..., acquired], plan, loaded.spacing,
                                          [a / unit.shape[3] for a in acquired])  # the kept frames' true times
                for n, frame in enumerate(dropped):
                    pred, truth = np.clip(preds[..., n], 0, 1), unit[..., frame]
                    metrics = image_metrics(pred, truth)
                    rows.append({"factor": factor, "subject": name, "frame": frame, "t": plan[n].fraction,
                                 "method": method.name, **metrics, "psnr_region": region_psnr(pred, truth, mask)})
                    psnr[method.name].append((metrics["psnr"], rows[-1]["psnr_region"]))
            logger.info("%s x%d: %s", name, factor, ", ".join(
                f"{m} {np.mean([v[0] for v in vs]):.2f} dB (region {np.mean([v[1] for v in vs]):.2f})"
                for m, vs in psnr.items()))
    return rows
