"""Learning the cardiac motion clock (:class:`~scripts.transforms.retiming.CycleRetiming`) from training cines.

Two steps. :func:`psnr_curves` keeps every ``k``-th frame of each training cine, makes every dropped frame's pair
with the whole-cine student at a grid of times, and records the PSNR of each against the dropped frame: one curve of
PSNR over the network's time per dropped frame, with where its pair lies in the cycle. :func:`fit_speed` then finds
the speed coefficients whose retimed ``t'`` has the highest mean PSNR over all curves (read off each curve by linear
interpolation; Adam from uniform speed, deterministic). The curves are the costly part (the student at 21 times per
pair); the fit takes seconds. :func:`fit_retiming` (``configs/fit_retiming.json``) runs both and writes the clock
file the inference config reads (``models/cycle_clock.json``), with what made it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import PSNRMetric
from tqdm import tqdm

from scripts.datasets.dropped_frames import acquired_pairs
from scripts.networks.refine import warm_start
from scripts.transforms.retiming import CycleRetiming
from scripts.utils.args import parse_bool
from scripts.utils.atomic import atomic_file, check_parent
from scripts.utils.errors import InputError, OutputExistsError

__all__ = ["curve_psnr", "fit_retiming", "fit_speed", "psnr_curves"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def psnr_curves(cases: Sequence[tuple[str, Callable[[], np.ndarray]]], network: torch.nn.Module, factor: int,
                grid_size: int = 21, warp_choice: Callable[[float], str] | None = None) -> dict[str, torch.Tensor]:
    """PSNR over the network's time for every dropped frame of every cine when every ``factor``-th frame is kept.

    Args:
        cases: ``[(name, load)]``, ``load()`` giving a whole cycle ``(X, Y, Z, T)`` in [0, 1] that starts at its first
            frame (:func:`scripts.datasets.dropped_frames.series_cases`).
        network: the whole-cine student, in eval mode on the CPU.
        factor: keep frames ``0, k, 2k, ...``; the last pair wraps around to frame 0.
        grid_size: times ``linspace(0, 1, grid_size)`` at which each pair is made.
        warp_choice: the image warp for a pair spanning a share of its series
            (:class:`~scripts.inference.warp_choice.WarpBySpan`), as ``interpolate --upsample`` warps the kept frames.

    Returns:
        ``start`` (N,) phase of each frame's first acquired frame (``a / T``), ``span`` (N,) the pair's share of the
        cycle, ``t`` (N,) the frame's time in the pair, ``curves`` (N, grid_size) PSNR in dB at each grid time.
    """
    grid = torch.linspace(0, 1, grid_size)
    psnr = PSNRMetric(max_val=1.0, reduction="none")  # per grid time, peak 1
    start, span, times, curves = [], [], [], []
    for name, load in tqdm(cases, desc=f"curves x{factor}", unit="cine", disable=None):
        series = torch.from_numpy(np.ascontiguousarray(np.moveaxis(load(), -1, 0))).float()  # (T, X, Y, Z)
        num_frames = series.shape[0]
        if warp_choice is not None:
            network.image_warp = warp_choice(1 / len(range(0, num_frames, factor)))  # consecutive kept frames
        for a, c, dropped in acquired_pairs(num_frames, factor, cyclic=True):
            made = network.interpolate_series(series[a][None, None], series[c % num_frames][None, None], grid)
            made = made.clamp(0, 1)  # (grid_size, 1, X, Y, Z): I0 and I1 encoded once for every grid time
            for f in dropped:
                start.append(a / num_frames), span.append((c - a) / num_frames), times.append((f - a) / (c - a))
                curves.append(psnr(made, series[f].expand_as(made[:, 0])[:, None])[:, 0])
        logger.info("%s x%d: %d dropped frames so far", name, factor, len(curves))
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)
    return {"start": as_tensor(start), "span": as_tensor(span), "t": as_tensor(times),
            "curves": torch.stack(curves).double()}


def curve_psnr(curves: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Each ``(G,)`` curve of ``curves`` ``(N, G)`` (PSNR at ``linspace(0, 1, G)``) read at its ``ts`` ``(N,)`` in
    [0, 1], linearly between grid points; differentiable in ``ts``."""
    x = ts.clamp(0, 1) * (curves.shape[1] - 1)
    i = x.detach().floor().clamp(max=curves.shape[1] - 2).long()
    low, high = curves.gather(1, i[:, None])[:, 0], curves.gather(1, i[:, None] + 1)[:, 0]
    return low + (x - i) * (high - low)


def fit_speed(curves: dict[str, torch.Tensor], harmonics: int = 4, steps: int = 400, lr: float = 0.05,
              weight_decay: float = 1e-3) -> tuple[list[float], dict[str, float]]:
    """The speed coefficients (``2 * harmonics``) that maximise the mean PSNR of :func:`psnr_curves`' frames.

    Adam from zero (uniform speed) on ``-mean PSNR + weight_decay * |coefficients|^2``, keeping the coefficients of
    the highest mean PSNR met (never below uniform speed); deterministic.

    Returns:
        the coefficients, and ``{"psnr_uniform": ..., "psnr_fitted": ...}`` (mean dB over the frames, at ``t`` and at
        the fitted ``t'``).
    """
    speed = torch.zeros(2 * harmonics, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([speed], lr=lr)

    def mean_psnr(coefficients: torch.Tensor) -> torch.Tensor:
        moved = CycleRetiming(coefficients).moved(curves["start"], curves["span"], curves["t"])
        return curve_psnr(curves["curves"], moved).mean()

    best, best_psnr = speed.detach().clone(), float("-inf")
    for step in range(steps + 1):
        optimiser.zero_grad()
        psnr = mean_psnr(speed)
        if psnr.item() > best_psnr:  # the coefficients scored, before this step moves them
            best, best_psnr = speed.detach().clone(), psnr.item()
        if step == steps:
            break
        loss = -psnr + weight_decay * (speed ** 2).sum()
        loss.backward()
        optimiser.step()
        if step % 100 == 0:
            logger.info("fit step %d: mean PSNR %.4f dB", step, psnr.item())
    with torch.no_grad():
        scores = {"psnr_uniform": float(curve_psnr(curves["curves"], curves["t"]).mean()),
                  "psnr_fitted": float(mean_psnr(best))}
    return [round(float(v), 6) for v in best], scores


def fit_retiming(cases: Mapping[int, Sequence[tuple[str, Callable[[], np.ndarray]]]], network: torch.nn.Module,
                 weights: str | os.PathLike, output: str | os.PathLike, harmonics: int = 4, grid_size: int = 21,
                 warp_choice: Callable[[float], str] | None = None, overwrite: bool = False) -> Path:
    """Fit the motion clock on training cines and write it as ``output`` (``configs/fit_retiming.json``'s ``run``).

    Args:
        cases: ``{factor: [(name, load)]}``, the training cines scored at each factor (:func:`psnr_curves`).
        network: the whole-cine student (untrained); weights: its state dict (read with ``weights_only=True``).
        output: the JSON file to write (refused if it exists, unless ``overwrite``): ``speed``, and what made it.
        harmonics, grid_size, warp_choice: as :func:`fit_speed` and :func:`psnr_curves` take them.

    Returns:
        the written file.

    Raises:
        InputError: naming ``factors`` when there is nothing to score.
        OutputExistsError: ``output`` exists and ``overwrite`` is not set.
    """
    output, overwrite = Path(output), parse_bool(overwrite, "overwrite")
    if not any(len(v) for v in cases.values()):
        raise InputError("factors", "no training cine to score: give a factor and a folder of cines")
    if output.exists() and not overwrite:
        raise OutputExistsError(output)
    check_parent(output)
    network = warm_start(network, weights).eval()
    parts = [psnr_curves(series, network, int(factor), grid_size, warp_choice)
             for factor, series in cases.items() if len(series)]
    curves = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    speed, scores = fit_speed(curves, harmonics)
    logger.info("motion clock, %d harmonics, on %d dropped frames: mean PSNR %.3f -> %.3f dB", harmonics,
                len(curves["t"]), scores["psnr_uniform"], scores["psnr_fitted"])
    record = {"speed": speed, "harmonics": harmonics, "student": Path(weights).name, "grid_size": grid_size,
              "cines": {f"x{factor}": [name for name, _ in series] for factor, series in cases.items()},
              "frames": len(curves["t"]), **{key: round(value, 4) for key, value in scores.items()}}
    with atomic_file(output, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return output
