"""The network step of the inference: the student, its weights and device, turning endpoints into frames.

:class:`SeriesInterpolator` is ``configs/inference.json``'s ``inferer``: I0 and I1 (in [0, 1]) in, the student run on the
whole volume at its native grid (I0 and I1 encoded once, every t batched: ``Student.interpolate_series``), the
synthesised frames in [0, 1] out; or a whole series, pair after pair of consecutive frames (:meth:`upsample`), each
pair's frames then corrected with the acquired frames around the pair (the neighbour refinement,
:mod:`scripts.networks.neighbours`), where the config gives one. The two jobs may run different weights of the same
network: ``checkpoint`` for frames between two endpoints, ``cine_checkpoint`` for whole series (the shipped cardiac
student trained on each job: ``configs/inference.json``). The rest of the program (loading, intensity
scaling, writers) is :mod:`scripts.inference.workflow`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from scripts.inference.neighbour_refiner import NeighbourRefiner
from scripts.inference.times import CineFrame
from scripts.inference.warp_choice import WarpBySpan, span_fraction
from scripts.networks.neighbours import neighbour_indices
from scripts.networks.refine import warm_start
from scripts.networks.tmsdf import EncodedFrame
from scripts.transforms.retiming import CycleRetiming
from scripts.utils.args import parse_bool, parse_device
from scripts.utils.memory import available_bytes, check_memory, estimate_bytes

logger = logging.getLogger(__name__)


class SeriesInterpolator:
    """The student, its weights and device, ready to interpolate series.

    Args:
        network: a :class:`scripts.networks.Student` (any ablation), moved to ``device`` here.
        checkpoint: its weights (a state dict, read with ``weights_only=True``) for frames between two endpoints
            (:meth:`synthesise`); weights saved without the refinement's blend candidate load into a network that has
            it with its gate at zero, so they run exactly as saved (:func:`scripts.networks.refine.warm_start`: the
            shipped lung student).
        cine_checkpoint: the weights :meth:`upsample` runs (whole series), loaded into a copy of ``network`` as
            ``checkpoint`` is; None or the same file: ``checkpoint``'s network serves both jobs.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or ``"auto"`` (CUDA when available).
        amp: autocast: float16 on CUDA; bfloat16 on a CPU whose oneDNN has bfloat16 kernels (AVX512-BF16 or AMX: about
            a third faster, the frames within 0.001 dB of float32 on real cines), else float32 with a warning. A
            frame that comes out non-finite in reduced precision is made again in float32.
        max_batch: how many t values go through the decoder at once (memory vs speed); None lets the network choose
            (one at a time on CPU, where that is fastest; all at once on a GPU).
        warp_choice: the image warp for each pair from the share of the series it spans
            (:class:`~scripts.inference.warp_choice.WarpBySpan`); None keeps the network's own.
        neighbours: the neighbour refinement (:class:`~scripts.inference.neighbour_refiner.NeighbourRefiner`, loaded
            onto ``device`` here) that :meth:`upsample` applies to every pair with an acquired frame on either side
            in series whose consecutive frames it refines (:meth:`refines`), or None (the student alone).
        retiming: the cardiac motion clock (:class:`~scripts.transforms.retiming.CycleRetiming`) that turns each new
            frame's time in its pair into the network's time, for series that wrap around (one cycle from its first
            frame); None gives the network the frames' own times.
    """

    def __init__(self, network: torch.nn.Module, checkpoint: str | os.PathLike, device="auto", amp: bool = False,
                 max_batch: int | None = None, warp_choice: WarpBySpan | None = None,
                 neighbours: NeighbourRefiner | None = None, cine_checkpoint: str | os.PathLike | None = None,
                 retiming: CycleRetiming | None = None):
        if not isinstance(device, torch.device):
            device = parse_device(device, "--device")  # gpu0, or cuda without a GPU: one line, not a traceback
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.network = warm_start(network, checkpoint).to(self.device).eval()
        self.checkpoint = str(checkpoint)
        self.cine_checkpoint = self.checkpoint if cine_checkpoint is None else str(cine_checkpoint)
        self.cine_network = (self.network if self.cine_checkpoint == self.checkpoint else
                             warm_start(copy.deepcopy(network), self.cine_checkpoint).to(self.device).eval())
        self.amp = parse_bool(amp, "amp") and reduced_precision_available(self.device)
        self.max_batch = max_batch
        self.warp_choice = warp_choice
        self.neighbours = None if neighbours is None else neighbours.load(self.device)
        self.retiming = retiming

    @property
    def precision(self) -> str:
        """What the networks compute in: ``float16`` (``amp`` on CUDA), ``bfloat16`` (``amp`` on a CPU with its kernels)
        or ``float32``."""
        if not self.amp:
            return "float32"
        return "float16" if self.device.type == "cuda" else "bfloat16"

    def refines(self, num_frames: int) -> bool:
        """Whether :meth:`upsample` refines the new frames of a series of ``num_frames`` acquired frames."""
        return self.neighbours is not None and self.neighbours.applies(span_fraction(0, 1, num_frames))

    def retimes(self, cyclic: bool, gated: bool | None = None) -> bool:
        """Whether :meth:`upsample` makes a series' new frames at the motion clock's times: with ``retiming``, for a
        series that wraps around (``cyclic``: one cycle from its first frame) unless its input says it is not one
        ECG-gated cycle (``gated`` False: :attr:`~scripts.io.series.Series4D.gated`, a real-time series or successive
        heartbeats)."""
        return self.retiming is not None and bool(cyclic) and gated is not False

    def job(self, upsample: bool) -> tuple[torch.nn.Module, str]:
        """The network and weights file of a job: whole series (``upsample``) or frames between two endpoints."""
        return (self.cine_network, self.cine_checkpoint) if upsample else (self.network, self.checkpoint)

    def choose_warp(self, network: torch.nn.Module, fraction: float | None) -> None:
        """Set ``network``'s image warp (one of :meth:`job`'s) for pairs spanning ``fraction`` of their series (None:
        leave it)."""
        if self.warp_choice is None or fraction is None:
            return
        name = self.warp_choice(fraction)
        if name != network.image_warp:
            logger.info("image warp %s for pairs spanning %.3g of the series (%s)", name, fraction, self.warp_choice)
            network.image_warp = name

    @torch.no_grad()
    def synthesise(self, i0: np.ndarray, i1: np.ndarray, ts: Sequence[float], span: float | None = None) -> np.ndarray:
        """(X, Y, Z) endpoints in [0, 1] and N time points -> (X, Y, Z, N) synthesised volumes in [0, 1]; ``span``:
        the share of their series the endpoints span (:func:`~scripts.inference.warp_choice.span_fraction`), which
        chooses the image warp (``warp_choice``)."""
        check_memory(i0.shape, len(ts), self.max_batch, self.device)
        self.choose_warp(self.network, span)
        i0_t, i1_t = (torch.as_tensor(v, dtype=torch.float32, device=self.device)[None, None] for v in (i0, i1))
        times = torch.as_tensor(ts, dtype=torch.float32, device=self.device)
        frames = self._finite(lambda: self.network.interpolate_series(i0_t, i1_t, times, max_batch=self.max_batch))
        return frames[:, 0].float().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()

    def pairs_per_batch(self, shape: Sequence[int], num_pairs: int) -> int:
        """How many pairs (one t each) go through the network at once: 1 on CPU (larger batches are slower there),
        as many as fit in half the free memory of an accelerator."""
        if self.device.type == "cpu":
            return 1
        fits = available_bytes(self.device) // 2 // estimate_bytes(shape, 1, 1)
        return int(max(1, min(num_pairs, fits, self.max_batch or num_pairs)))

    @torch.no_grad()
    def upsample(self, frames: np.ndarray, plan: Sequence[CineFrame],
                 phases: Sequence[float] | None = None, gated: bool | None = None) -> np.ndarray:
        """Synthesise the new frames of ``plan`` from a whole series.

        The whole-series job: the network with ``cine_checkpoint``'s weights. Each acquired frame is encoded once for
        the two pairs it ends (:class:`_FrameEncodings`), each pair's time points batched (``max_batch``); with one
        time point per pair (``--upsample 2``) several pairs share a batch on an accelerator (:meth:`pairs_per_batch`). A progress bar and the log count the
        pairs. Every pair is two consecutive frames, ``1 / T`` of the series, which chooses the image warp
        (``warp_choice``). With ``neighbours`` (where it
        refines pairs spanning ``1 / T``: :meth:`refines`), the frames of every pair that has an acquired frame before
        and after it (every pair of a periodic series of 4 or more frames, whose plan wraps from the last frame to the
        first; the inner pairs of an open one) are refined with them (:meth:`refine`). With ``retiming``, the new
        frames of a series that wraps around are made at the motion clock's times (:meth:`network_times`), which the
        refinement is also given.

        Args:
            frames: ``(X, Y, Z, T)`` acquired frames in [0, 1].
            plan: the output frames (:func:`scripts.inference.times.upsample_plan`).
            phases: where each acquired frame lies in the cycle, shares in [0, 1) increasing, for the motion clock
                (``retiming``; :func:`~scripts.inference.times.cycle_phases` of a gated series' trigger times); None:
                evenly spaced (``k / T``), as a cine's frames are.
            gated: whether the frames are one ECG-gated cycle (:attr:`~scripts.io.series.Series4D.gated`); False
                (a real-time series, successive heartbeats) leaves the clock out (:meth:`retimes`).

        Returns:
            ``(X, Y, Z, M)`` in [0, 1], ``M = len(plan)``: the acquired frames as given, the others synthesised.
        """
        shape = frames.shape[:3]
        self.choose_warp(self.cine_network, span_fraction(0, 1, frames.shape[-1]))  # every pair: consecutive frames
        pairs: dict[tuple[int, int], list[int]] = {}
        for m, frame in enumerate(plan):
            if not frame.acquired:
                pairs.setdefault((frame.previous, frame.next), []).append(m)
        per_pair = max((len(ms) for ms in pairs.values()), default=1)
        check_memory(shape, per_pair, self.max_batch, self.device)
        batch = self.pairs_per_batch(shape, len(pairs)) if per_pair == 1 else 1
        out = np.empty((*shape, len(plan)), dtype=np.float32)
        for m, frame in enumerate(plan):
            if frame.acquired:
                out[..., m] = frames[..., frame.previous]
        keys = list(pairs)
        cyclic = any(frame.next < frame.previous for frame in plan)
        refine = self.refines(frames.shape[-1])
        phases = np.arange(frames.shape[-1]) / frames.shape[-1] if phases is None else np.asarray(phases, float)
        retime = self.retimes(cyclic, gated)
        times = {key: self.network_times(phases, key, [plan[m].fraction for m in pairs[key]], retime) for key in keys}
        logger.info("%d pairs of frames, %d new frames each, %d pair(s) per pass on %s%s%s", len(keys), per_pair,
                    batch, self.device, ", refined with their neighbours" if refine else "",
                    ", retimed by the motion clock" if retime else "")
        encoded = _FrameEncodings(self.cine_network, frames, keys, self.device)
        with tqdm(total=len(keys), desc="pairs", unit="pair", disable=None) as bar:
            for first in range(0, len(keys), batch):
                chunk = keys[first:first + batch]
                synthesised = self._pairs(frames, chunk, [times[k] for k in chunk], encoded)
                encoded.release(first + len(chunk) - 1)
                for key, volumes in zip(chunk, synthesised):
                    if refine:
                        volumes = self.refine(frames, key, times[key], volumes, cyclic)
                    for m, volume in zip(pairs[key], volumes):
                        out[..., m] = volume
                bar.update(len(chunk))
                logger.info("pairs %d/%d", first + len(chunk), len(keys))
        return out

    def network_times(self, phases: np.ndarray, pair: tuple[int, int], ts: Sequence[float],
                      retime: bool) -> list[float]:
        """The network's times for new frames at ``ts`` between acquired frames ``pair`` ``(a, b)`` whose places in
        the cycle are ``phases[a]``, ``phases[b]`` (shares in [0, 1); ``b``'s counts on by one cycle where the pair
        wraps around): retimed by the motion clock where ``retime`` (:meth:`retimes`), else ``ts``."""
        if not retime:
            return [float(t) for t in ts]
        start, end = float(phases[pair[0]]), float(phases[pair[1]])
        if end <= start:
            end += 1.0
        return self.retiming(start, end - start, ts).tolist()

    @torch.no_grad()
    def refine(self, frames: np.ndarray, pair: tuple[int, int], ts: Sequence[float], volumes: np.ndarray,
               cyclic: bool) -> np.ndarray:
        """The student's frames ``volumes`` ``(N, X, Y, Z)`` of ``pair`` at ``ts``, refined with the acquired frames
        around the pair (``frames`` ``(X, Y, Z, T)`` in [0, 1]); returned as they are without ``neighbours`` or where
        the pair has no frame on one side (:func:`~scripts.networks.neighbours.neighbour_indices`)."""
        if self.neighbours is None:
            return volumes
        around = neighbour_indices(*pair, frames.shape[-1], cyclic)
        if around is None:
            return volumes
        context = [torch.as_tensor(frames[..., k], dtype=torch.float32, device=self.device)[None, None]
                   for k in (around[0], *pair, around[1])]
        student = torch.as_tensor(volumes, dtype=torch.float32, device=self.device)[:, None]
        times = torch.as_tensor(ts, dtype=torch.float32, device=self.device)
        refined = self._finite(lambda: self.neighbours(student, context, times))
        return refined[:, 0].cpu().numpy()

    def _pairs(self, frames: np.ndarray, pairs: list[tuple[int, int]], ts: list[list[float]],
               encoded: _FrameEncodings) -> list[np.ndarray]:
        """For each pair ``(a, b)`` its volumes ``(N, X, Y, Z)`` at its N ``ts`` (in [0, 1]), by the whole-series job's
        network; a pair alone reads its frames' encodings from ``encoded``."""
        network = self.cine_network
        if len(pairs) == 1:
            (a, b), = pairs
            preds = [self._finite(
                lambda: network.interpolate_encoded(encoded(a), encoded(b), ts[0], max_batch=self.max_batch),
                # in float32: fresh encodings, not the reduced-precision ones held for the other pairs
                again=lambda: network.interpolate_series(encoded.volume(a), encoded.volume(b), ts[0],
                                                         max_batch=self.max_batch))]
        else:  # one t per pair: a batch of pairs, each encoded once
            image = torch.cat([torch.cat([encoded.volume(a), encoded.volume(b)], dim=1) for a, b in pairs])
            t = torch.as_tensor([v[0] for v in ts], dtype=torch.float32, device=self.device)
            preds = list(self._finite(lambda: network(image, t))[:, None])
        return [p[:, 0].float().clamp(0, 1).cpu().numpy() for p in preds]

    def _finite(self, run: Callable[[], torch.Tensor], again: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """``run()`` under autocast where ``amp``; where that result is not finite, ``again()`` (default ``run()``)
        in float32, logged."""
        with torch.autocast(self.device.type, enabled=self.amp):
            out = run()
        if self.amp and not torch.isfinite(out).all():
            logger.warning("non-finite values in reduced precision on %s: made again in float32", self.device)
            with torch.autocast(self.device.type, enabled=False):
                out = (again or run)()
        return out


def reduced_precision_available(device: torch.device) -> bool:
    """Whether autocast runs faster kernels on ``device``: any CUDA device (float16), a CPU whose oneDNN has bfloat16
    kernels (AVX512-BF16 or AMX); warns and returns False for another CPU, where bfloat16 would only be emulated."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        if cpu_bfloat16_kernels():
            return True
        logger.warning("amp: this CPU has no bfloat16 kernels; the networks run in float32")
    return False


def cpu_bfloat16_kernels() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class _FrameEncodings:
    """The acquired frames of one :meth:`SeriesInterpolator.upsample`, each encoded once by ``network``
    (:meth:`~scripts.networks.Student.encode_frame`) where a pair first needs it and dropped after the last pair that
    uses it: every frame of a series ends two pairs, so a pair's encoder runs once for its new frame's middle input
    and once for its next acquired frame instead of three times.

    Args:
        network: the whole-series job's student.
        frames: ``(X, Y, Z, T)`` acquired frames in [0, 1].
        pairs: the pairs ``(a, b)`` in the order they are synthesised.
        device: where the encodings live.
    """

    def __init__(self, network: torch.nn.Module, frames: np.ndarray, pairs: Sequence[tuple[int, int]],
                 device: torch.device):
        self.network, self.frames, self.device = network, frames, device
        self.last_use = {index: position for position, pair in enumerate(pairs) for index in pair}
        self.held: dict[int, EncodedFrame] = {}

    def volume(self, index: int) -> torch.Tensor:
        """Frame ``index`` as ``(1, 1, X, Y, Z)`` float32 on the device."""
        return torch.as_tensor(self.frames[..., index], dtype=torch.float32, device=self.device)[None, None]

    def __call__(self, index: int) -> EncodedFrame:
        """The :class:`~scripts.networks.tmsdf.EncodedFrame` of frame ``index``."""
        if index not in self.held:
            self.held[index] = self.network.encode_frame(self.volume(index))
        return self.held[index]

    def release(self, position: int) -> None:
        """Drop the frames no pair after the ``position``-th uses."""
        for index in [k for k in self.held if self.last_use[k] <= position]:
            del self.held[index]
