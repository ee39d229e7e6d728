"""TMSDF interpolation networks: the teacher (I0, It, I1) and the student (I0, I1, t), one class family.

Tensor conventions: volumes ``(B, C, X, Y, Z)`` with intensities in [0, 1]; fields ``(B, 3, ...)`` in
voxels of their own grid (see :mod:`scripts.networks.warping`). Scale index ``i = 1..4`` runs coarse (1/8) to fine
(full resolution); every list returned runs coarse to fine. Constructor channel tuples run the other way,
like the encoder: level 1 = full resolution ... level 4 = 1/8.

The networks compile with ``torch.jit.script`` (``forward`` and what it calls; ``forward_intermediates`` and
``interpolate_series`` stay Python): annotations are real (no postponed evaluation), results are named tuples, and
module constants are arguments or attributes.
"""

from collections.abc import Sequence
from typing import NamedTuple, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

from scripts.networks.encoder import Encoder
from scripts.networks.msdf import MSDF
from scripts.networks.refine import Refinement
from scripts.networks.warping import NUM_STEPS, integrate_velocity, resize_field, warp, warp_cubic
from scripts.utils.tensors import lerp

__all__ = ["EncodedFrame", "Intermediates", "Student", "TMSDFNet", "Teacher"]

DIVISOR = 8
"""Spatial sizes are padded to a multiple of this (three 2x down-samplings)."""

IMAGE_WARPS = ("bilinear", "cubic")
"""How the endpoints are warped to t at full resolution (``TMSDFNet(image_warp=...)``)."""


class Intermediates(NamedTuple):
    """Everything the losses and distillation need, cropped to the input's extent.

    Attributes:
        pred: ``(B, 1, X, Y, Z)`` synthesised volume.
        warped0, warped1: per scale, ``(B, 1, X, Y, Z)`` endpoints I0t_i, I1t_i warped at full resolution.
        phi0, phi1: per scale, ``(B, 3, X_i, Y_i, Z_i)`` displacement fields Phi_0t_i, Phi_1t_i in voxels of
            scale ``i`` (``X_i = ceil(X / 2**(4 - i))``).
        velocity0, velocity1: per scale, the (fused) velocities V_0t_i, V_1t_i that were integrated.
        dfm_weights: per scale, ``(B, 2, i, X_i, Y_i, Z_i)`` softmax weights of DFM_i (axis 1 = direction
            0t / 1t), or None where that scale has no DFM.
    """

    pred: torch.Tensor
    warped0: list[torch.Tensor]
    warped1: list[torch.Tensor]
    phi0: list[torch.Tensor]
    phi1: list[torch.Tensor]
    velocity0: list[torch.Tensor]
    velocity1: list[torch.Tensor]
    dfm_weights: list[Optional[torch.Tensor]]


class _Endpoints(NamedTuple):
    """What the decoder needs from the pair, computed once per pair (batch ``B``, or 1 to broadcast).

    ``i0``, ``i1``: padded volumes ``(B, 1, ...)``; ``terms``: the DFGens' endpoint terms; ``q0``, ``q1``:
    the refinement's projections of F0, F1 (None without refinement); lists coarse to fine.
    """

    i0: torch.Tensor
    i1: torch.Tensor
    terms: list[torch.Tensor]
    q0: Optional[list[torch.Tensor]]
    q1: Optional[list[torch.Tensor]]


class EncodedFrame(NamedTuple):
    """One endpoint as the student's decoder reads it (:meth:`Student.encode_frame`), the same whichever pair it ends.

    ``volume``: ``(1, 1, X', Y', Z')`` padded to a multiple of :data:`DIVISOR`; ``features``: the encoder's, coarse to
    fine; ``projected``: the refinement's projections of them (None without refinement); ``size``: ``[X, Y, Z]``
    before padding.
    """

    volume: torch.Tensor
    features: list[torch.Tensor]
    projected: Optional[list[torch.Tensor]]
    size: list[int]


def _check_times(ts: Sequence[float] | torch.Tensor, max_batch: int | None, device: torch.device) -> torch.Tensor:
    """``ts`` as a ``(N,)`` float32 tensor on ``device``, N >= 1, and ``max_batch`` None or >= 1 (ValueError)."""
    times = torch.as_tensor(ts, dtype=torch.float32, device=device).reshape(-1)
    if len(times) == 0:
        raise ValueError("ts: expected at least one time point")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch: expected at least 1, got {max_batch}")
    return times


def _expand_endpoints(ends: _Endpoints, batch: int) -> _Endpoints:
    """Broadcast a batch-1 pair to ``batch`` copies without copying memory (terms broadcast anyway)."""

    def grow(x):
        return x.expand(batch, *x.shape[1:])

    q0 = None if ends.q0 is None else [grow(q) for q in ends.q0]
    q1 = None if ends.q1 is None else [grow(q) for q in ends.q1]
    return _Endpoints(grow(ends.i0), grow(ends.i1), ends.terms, q0, q1)


def _ceil_div(size: int, factor: int) -> int:
    """``ceil(size / factor)`` for positive ints."""
    return -(-size // factor)


def _split_directions(
    fields: list[torch.Tensor], sizes: list[list[int]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Crop each ``(2B, ...)`` field to its size and split it into the 0t half ``[:B]`` and the 1t half ``[B:]``."""
    first: list[torch.Tensor] = []
    second: list[torch.Tensor] = []
    for field, size in zip(fields, sizes):
        halves = crop(field, size).chunk(2)
        first.append(halves[0])
        second.append(halves[1])
    return first, second


def pad_to_multiple(x: torch.Tensor, divisor: int = DIVISOR) -> torch.Tensor:
    """Replicate-pad the high end of each spatial axis of ``(B, C, X, Y, Z)`` to a multiple of ``divisor``."""
    pads = [(-s) % divisor for s in x.shape[2:]]
    if pads == [0, 0, 0]:
        return x
    return F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")


def crop(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """``x[..., :size[0], :size[1], :size[2]]``."""
    return x[..., : size[0], : size[1], : size[2]]


class TMSDFNet(nn.Module):
    """Encoder + MSDF + refinement; subclasses choose the middle input (:class:`Teacher`, :class:`Student`).

    Args:
        channels: encoder channels, full resolution to 1/8.
        def_channels: Fdef channels of DFGen_4..DFGen_1 (full resolution to 1/8).
        refine_channels: refinement unit widths, full resolution to 1/8.
        projection_channels: channels each warped feature map is projected to for the refinement.
        use_dfm: fuse the velocity fields of several scales with DFMs (paper Table 2 "DFM").
        multi_scale_dfm: DFM at every scale 2..4, else at the finest only (Table 2 "MsDFM").
        dfm_kernel_size: kernel size of the DFM weight-map convolution.
        time_modulation: time-modulated DFGens (student only, Table 2 "TM_DFGen").
        use_refinement: refinement network (Table 2 "Ref."); without it the output is
            ``(1 - t) * I0t_4 + t * I1t_4``.
        num_steps: scaling-and-squaring steps.
        blend_candidate: the refinement may choose the unwarped endpoints' blend, voxel by voxel
            (:class:`~scripts.networks.refine.Refinement`; not in the paper, off by default).
        image_warp: how the endpoints are warped to t at full resolution: ``"bilinear"`` (the paper, MONAI ``Warp``)
            or ``"cubic"`` (cubic convolution in plane, :func:`~scripts.networks.warping.warp_cubic`: a sub-voxel
            warp no longer blurs the image). Fields and features are warped bilinearly either way.
    """

    __constants__ = ["num_inputs", "linear_scaling"]  # class attributes that torch.jit.script reads
    __jit_unused_properties__ = ["image_warp"]  # Python only; scripted code reads cubic_image_warp
    num_inputs: int = 0
    linear_scaling: bool = False

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64, 64),
        def_channels: Sequence[int] = (8, 16, 32, 64),
        refine_channels: Sequence[int] = (8, 8, 32, 64),
        projection_channels: Sequence[int] = (4, 8, 16, 16),
        use_dfm: bool = True,
        multi_scale_dfm: bool = True,
        dfm_kernel_size: int = 1,
        time_modulation: bool = False,
        use_refinement: bool = True,
        num_steps: int = NUM_STEPS,
        blend_candidate: bool = False,
        image_warp: str = "bilinear",
    ):
        super().__init__()
        self.cubic_image_warp = False
        self.image_warp = image_warp
        coarse_first = tuple(channels)[::-1]
        self.num_steps = num_steps
        self.encoder = Encoder(1, channels)
        self.msdf = MSDF(
            coarse_first, tuple(def_channels)[::-1], time_modulation, use_dfm, multi_scale_dfm, dfm_kernel_size
        )
        self.refine = (
            Refinement(coarse_first, tuple(projection_channels)[::-1], tuple(refine_channels)[::-1], blend_candidate)
            if use_refinement
            else None
        )

    @property
    def image_warp(self) -> str:
        """How the endpoints are warped to t at full resolution, one of :data:`IMAGE_WARPS`; settable (the weights do
        not depend on it), e.g. by the inference's choice per pair (:class:`~scripts.inference.warp_choice.WarpBySpan`)."""
        return "cubic" if self.cubic_image_warp else "bilinear"

    @image_warp.setter
    def image_warp(self, name: str) -> None:
        if name not in IMAGE_WARPS:
            raise ValueError(f"image_warp: expected one of {', '.join(IMAGE_WARPS)}, got {name!r}")
        self.cubic_image_warp = name == "cubic"

    # --- inputs -------------------------------------------------------------------------------------
    def middle_input(self, image: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The volume encoded beside I0 and I1: the teacher's It, the student's I_b."""
        raise NotImplementedError

    def _timestamps(self, t: Union[float, torch.Tensor], batch: int, device: torch.device) -> torch.Tensor:
        if not torch.jit.is_scripting():  # any array-like in Python
            times = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
        elif isinstance(t, torch.Tensor):
            times = t.to(dtype=torch.float32, device=device).reshape(-1)
        else:
            times = torch.full((1,), t, dtype=torch.float32, device=device)
        if times.shape[0] != 1 and times.shape[0] != batch:
            raise ValueError(f"t: expected a number or {batch} values (one per batch item), got {times.shape[0]}")
        return times.expand(batch)

    def _check(self, image: torch.Tensor) -> None:
        if image.ndim != 5 or image.shape[1] != self.num_inputs:
            if torch.jit.is_scripting():
                raise ValueError(f"image: expected (B, {self.num_inputs}, X, Y, Z), got {image.shape}")
            raise ValueError(
                f"image: expected (B, {self.num_inputs}, X, Y, Z) for {type(self).__name__}, got {tuple(image.shape)}"
            )

    # --- public API ---------------------------------------------------------------------------------
    def forward(
        self, image: torch.Tensor, t: Union[float, torch.Tensor] = 0.5, intermediates: bool = False
    ) -> Union[torch.Tensor, Intermediates]:
        """Synthesise the volume at ``t``; ``(B, num_inputs, X, Y, Z)`` -> ``(B, 1, X, Y, Z)``.

        With ``intermediates=True`` it returns the :class:`Intermediates` (all per-scale fields and volumes) that the
        losses need; training calls it that way through ``forward`` so wrappers such as ``DistributedDataParallel``
        (which synchronise gradients only for calls of ``forward``) see every training step.
        """
        out = self._run(image, t, intermediates)
        if intermediates:
            return out
        return out.pred

    def forward_intermediates(self, image: torch.Tensor, t: Union[float, torch.Tensor] = 0.5) -> Intermediates:
        """Same inputs as :meth:`forward`; returns the prediction with all per-scale fields and volumes."""
        return self(image, t, intermediates=True)

    # --- pipeline -----------------------------------------------------------------------------------
    def _run(self, image: torch.Tensor, t: Union[float, torch.Tensor], intermediates: bool) -> Intermediates:
        self._check(image)
        batch, size = image.shape[0], image.shape[2:]
        times = self._timestamps(t, batch, image.device)
        image = pad_to_multiple(image)
        i0, i1 = image[:, :1], image[:, -1:]
        features = self.encoder(torch.cat([i0, self.middle_input(image, times), i1], dim=0))
        f0: list[torch.Tensor] = []
        fm: list[torch.Tensor] = []
        f1: list[torch.Tensor] = []
        for f in features:
            parts = f.chunk(3)
            f0.append(parts[0])
            fm.append(parts[1])
            f1.append(parts[2])
        return self._decode(self.endpoint_batch(i0, i1, f0, f1), fm, times, size, intermediates)

    def endpoint_batch(
        self, i0: torch.Tensor, i1: torch.Tensor, f0: list[torch.Tensor], f1: list[torch.Tensor]
    ) -> _Endpoints:
        """What the decoder needs from the pair: volumes ``(B, 1, ...)``, features per scale coarse to fine."""
        terms = self.msdf.endpoint_terms(f0, f1)
        refine = self.refine
        if refine is None:
            return _Endpoints(i0, i1, terms, None, None)
        return _Endpoints(i0, i1, terms, refine.project(f0), refine.project(f1))

    def _decode(
        self, ends: _Endpoints, fm: list[torch.Tensor], t: torch.Tensor, size: list[int], intermediates: bool
    ) -> Intermediates:
        """Everything after the encoder, on a batch of ``B`` time points (``ends`` has batch ``B``).

        Without ``intermediates`` only ``pred`` is computed (the other fields are empty lists): the
        full-size warps of the coarser scales are needed by the losses only.
        """
        batch = fm[0].shape[0]
        msdf = self.msdf(ends.terms, fm, t)
        velocities = msdf.velocities
        if self.linear_scaling:  # endpoint velocities V01, V10 -> V0t = t V01, V1t = (1 - t) V10
            factor = torch.cat([t, 1 - t]).view(-1, 1, 1, 1, 1)
            velocities = [v * factor for v in velocities]
        phis = [integrate_velocity(v, self.num_steps) for v in velocities]  # (2B, 3, ...) per scale
        images = torch.cat([ends.i0, ends.i1], dim=0)

        refine = self.refine
        q0, q1 = ends.q0, ends.q1
        warped: list[torch.Tensor] = []
        if refine is None or q0 is None or q1 is None:
            warped_full = warp_cubic(images, phis[-1]) if self.cubic_image_warp else warp(images, phis[-1])
        elif self.cubic_image_warp:
            warped = [warp(torch.cat([a, b], dim=0), phi) for a, b, phi in zip(q0, q1, phis)]
            warped_full = warp_cubic(images, phis[-1])
        else:  # the finest scale warps the image and its projected features in one pass
            moving = [torch.cat([a, b], dim=0) for a, b in zip(q0, q1)]
            moving[-1] = torch.cat([images, moving[-1]], dim=1)
            warped = [warp(m, phi) for m, phi in zip(moving, phis)]
            finest = warped[-1]
            warped_full = finest[:, :1]
            warped[-1] = finest[:, 1:]
        i0t, i1t = warped_full[:batch], warped_full[batch:]
        if refine is None:
            pred = lerp(i0t, i1t, t)
        else:
            unwarped: Optional[torch.Tensor] = None
            if refine.blend_candidate:
                unwarped = lerp(ends.i0, ends.i1, t)
            pred = refine(i0t, i1t, [w[:batch] for w in warped], [w[batch:] for w in warped], t, unwarped)
        pred = crop(pred, size)
        if not intermediates:
            no_weights: list[Optional[torch.Tensor]] = []
            return Intermediates(pred, [], [], [], [], [], [], no_weights)

        full = images.shape[2:]
        warped_images = [warp(images, resize_field(phi, full)) for phi in phis[:-1]] + [warped_full]
        scales = len(phis)
        crops = [[_ceil_div(s, 1 << (scales - 1 - i)) for s in size] for i in range(scales)]

        warped0, warped1 = _split_directions(warped_images, [size] * scales)
        phi0, phi1 = _split_directions(phis, crops)
        velocity0, velocity1 = _split_directions(velocities, crops)
        weights: list[Optional[torch.Tensor]] = []
        for w, s in zip(msdf.dfm_weights, crops):
            weights.append(None if w is None else crop(w, s).unflatten(0, (2, batch)).transpose(0, 1))
        return Intermediates(pred, warped0, warped1, phi0, phi1, velocity0, velocity1, weights)


class Teacher(TMSDFNet):
    """Teacher: ``forward(image, t=0.5)`` with ``image`` ``(B, 3, X, Y, Z)`` = (I0, It, I1) in [0, 1].

    ``t`` (a number or ``(B,)``, the time of It; training passes the sample's t) weights the warped endpoints:
    ``(1 - t) * I0t + t * I1t`` without refinement, and as the prior of the refinement's mask with it.
    Accepts every :class:`TMSDFNet` argument except ``time_modulation`` (never used by the teacher).
    """

    num_inputs = 3

    def __init__(self, **kwargs):
        super().__init__(time_modulation=False, **kwargs)

    def middle_input(self, image: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return image[:, 1:2]


class Student(TMSDFNet):
    """Student: ``forward(image, t=0.5)`` with ``image`` ``(B, 2, X, Y, Z)`` = (I0, I1) in [0, 1], ``t`` a
    number or ``(B,)`` in [0, 1]; returns the volume at ``t`` ``(B, 1, X, Y, Z)``.

    The middle input is ``I_b = (1 - t) I0 + t I1`` (so ``I_b(0) = I0``; the paper prints
    ``t I0 + (1 - t) I1``, inconsistent with ``I_t(0) = I0``). Without time modulation (paper Table 2,
    rows 1-2) the student uses linear scaling: the MSDF predicts the endpoint velocities V01, V10 from
    (I0, I_b(1/2), I1), and ``V0t = t V01``, ``V1t = (1 - t) V10``. The default ``t = 0.5`` lets MONAI
    tools that call ``network(image)`` run it.
    """

    num_inputs = 2

    def __init__(self, time_modulation: bool = True, **kwargs):
        super().__init__(time_modulation=time_modulation, **kwargs)
        self.linear_scaling = not time_modulation

    def middle_input(self, image: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return lerp(image[:, :1], image[:, -1:], torch.full_like(t, 0.5) if self.linear_scaling else t)

    @torch.no_grad()
    def encode_frame(self, volume: torch.Tensor) -> EncodedFrame:
        """``(1, 1, X, Y, Z)`` in [0, 1] -> its :class:`EncodedFrame`: what :meth:`interpolate_encoded` reads of an
        endpoint. The encoder's instance norms see one volume at a time, so a frame encoded once serves every pair
        it ends (a whole series: each acquired frame ends two pairs)."""
        if volume.ndim != 5 or volume.shape[:2] != (1, 1):
            raise ValueError(f"volume: expected (1, 1, X, Y, Z), got {tuple(volume.shape)}")
        return self._encode_frames(volume)[0]

    def _encode_frames(self, volumes: torch.Tensor) -> list[EncodedFrame]:
        """``(B, 1, X, Y, Z)`` -> one :class:`EncodedFrame` per volume, the B volumes in one encoder pass."""
        padded = pad_to_multiple(volumes)
        features = self.encoder(padded)
        refine = self.refine
        frames = []
        for k in range(volumes.shape[0]):
            own = [f[k : k + 1] for f in features]
            projected = None if refine is None else refine.project(own)
            frames.append(EncodedFrame(padded[k : k + 1], own, projected, list(volumes.shape[2:])))
        return frames

    @torch.no_grad()
    def interpolate_series(
        self, i0: torch.Tensor, i1: torch.Tensor, ts: Sequence[float] | torch.Tensor, max_batch: int | None = None
    ) -> torch.Tensor:
        """Volumes at several ``t`` between one pair, encoding I0 and I1 once.

        Args:
            i0, i1: ``(1, 1, X, Y, Z)`` in [0, 1].
            ts: ``(N,)`` times in [0, 1].
            max_batch: at most this many ``t`` per decoder pass. None: all at once on an accelerator,
                one at a time on CPU (larger batches are slower there: the full-resolution tensors of
                several t overflow the caches).

        Returns:
            ``(N, 1, X, Y, Z)``, equal to ``forward(cat([i0, i1], 1), t)`` for each ``t``.
        """
        if i0.ndim != 5 or i0.shape[:2] != (1, 1) or i0.shape != i1.shape:
            raise ValueError(
                f"i0, i1: expected two volumes (1, 1, X, Y, Z) of one size, got {tuple(i0.shape)}, {tuple(i1.shape)}"
            )
        _check_times(ts, max_batch, i0.device)  # before the encoder runs
        e0, e1 = self._encode_frames(torch.cat([i0, i1], dim=0))  # I0 and I1 in one pass
        return self.interpolate_encoded(e0, e1, ts, max_batch)

    @torch.no_grad()
    def interpolate_encoded(
        self, e0: EncodedFrame, e1: EncodedFrame, ts: Sequence[float] | torch.Tensor, max_batch: int | None = None
    ) -> torch.Tensor:
        """:meth:`interpolate_series` from endpoints already encoded (:meth:`encode_frame`): ``(N, 1, X, Y, Z)``."""
        if e0.size != e1.size:
            raise ValueError(f"e0, e1: expected two frames of one size, got {e0.size}, {e1.size}")
        ts = _check_times(ts, max_batch, e0.volume.device)
        i0, i1 = e0.volume, e1.volume
        terms = self.msdf.endpoint_terms(e0.features, e1.features)
        ends = _Endpoints(i0, i1, terms, e0.projected, e1.projected)
        preds = []
        if max_batch is None:
            max_batch = 1 if i0.device.type == "cpu" else len(ts)
        for chunk in ts.split(max_batch):
            middle = self.middle_input(torch.cat([i0, i1], dim=1).expand(len(chunk), -1, -1, -1, -1), chunk)
            batch = _expand_endpoints(ends, len(chunk))
            preds.append(self._decode(batch, self.encoder(middle), chunk, e0.size, False).pred)
        return torch.cat(preds, dim=0)
