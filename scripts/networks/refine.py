"""Refinement network: synthesises the intermediate volume from the warped endpoints (paper 2.2)."""

import logging
import os
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from scripts.networks.encoder import conv_block
from scripts.networks.warping import at_least_float32
from scripts.utils.checkpoint import load_weights, read_state_dict

__all__ = ["Refinement", "has_blend_candidate", "param_groups", "refinement_only", "warm_start"]

logger = logging.getLogger(__name__)

BLEND_MODULES = ("blend_input", "blend_gate")
"""The modules a refinement gains with ``blend_candidate=True``; weights without them warm-start it."""


def _in_blend_module(name: str) -> bool:
    """Whether a parameter or state-dict key (``refine.blend_gate.weight``) belongs to one of :data:`BLEND_MODULES`."""
    return any(f".{module}." in f".{name}" for module in BLEND_MODULES)


_EPS = 1e-4  # keeps the mask prior logit(1 - t) finite at t = 0 and t = 1 (|logit| <= 9.2)


class Refinement(nn.Module):
    """Encoder-decoder of 8 conv units (4 down, 4 up, skip connections) with a blend head.

    Down unit ``j`` (``j = 1`` full resolution ... ``4`` at 1/8) is one conv block on
    ``concat(avgpool2(previous), P_j(F0t_j), P_j(F1t_j))``; unit 1 reads ``concat(I0t, I1t, P_1(F0t),
    P_1(F1t))``. ``P_j`` is a 1^3 conv to ``projection_channels[j]`` channels: it is linear and acts per
    voxel, so it commutes with warping and the caller applies it *before* warping (:meth:`project`),
    which moves fewer channels through the warp. Up unit ``j`` is one conv block on
    ``concat(nearest_up2(deeper), down_j)`` (the deepest up unit reads ``down_4`` alone).
    The head (Conv3d 1^3 -> 2 channels, zero-initialised) gives the mask ``m = sigmoid(h_0 + logit(1 - t))``
    and residual ``r = h_1``; the output is ``m * I0t + (1 - m) * I1t + r``, so a fresh module returns the
    time-weighted blend ``(1 - t) I0t + t I1t`` of the warped endpoints (the linear blend of the inputs while the
    fields are still near zero), and the head learns corrections to that prior. Without the prior a fresh
    network returns the plain mean, which cannot depend on t until the deformations do, so early training does
    worse than the blend baseline.

    With ``blend_candidate=True`` (off in the paper) the unwarped endpoints' blend ``B = (1 - t) I0 + t I1`` is a
    third candidate the network can choose, voxel by voxel, where warping cannot explain the change (sub-voxel
    motion that bilinear resampling only blurs, through-plane motion, a static background):

        ``W = m * I0t + (1 - m) * I1t``,  ``out = (1 - s) W + s B + r``,  ``s = clamp(g, 0, 1)``

    where ``g`` comes from its own zero-initialised 1^3 head (``blend_gate``), and ``B`` also enters down unit 1 as
    one more input channel of its first convolution (``blend_input``, a 3^3 convolution of ``B`` added to that
    convolution's output, zero-initialised). Both start at exactly zero, so a network warm-started from weights
    without them (:func:`warm_start`) returns exactly what those weights returned, and training moves ``s`` away
    from 0 only where the blend lowers the loss (``clamp`` passes the gradient at 0).

    Args:
        feature_channels: encoder channels coarse to fine (scale 1..4).
        projection_channels: ``P`` output channels coarse to fine.
        channels: unit widths coarse to fine (scale 1..4).
        blend_candidate: offer the unwarped blend as a candidate (above).
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        projection_channels: Sequence[int],
        channels: Sequence[int],
        blend_candidate: bool = False,
    ):
        super().__init__()
        if not len(feature_channels) == len(projection_channels) == len(channels):
            raise ValueError(
                f"refinement: feature, projection and unit channels need one value per scale, got "
                f"{tuple(feature_channels)}, {tuple(projection_channels)}, {tuple(channels)}"
            )
        self.project_convs = nn.ModuleList(nn.Conv3d(c, p, 1) for c, p in zip(feature_channels, projection_channels))
        down, up = [], []
        previous_down = 2  # the two warped images
        for scale in reversed(range(len(channels))):  # fine to coarse
            down.append(conv_block(previous_down + 2 * projection_channels[scale], channels[scale]))
            previous_down = channels[scale]
        previous_up = 0
        for scale in range(len(channels)):  # coarse to fine
            up.append(conv_block(previous_up + channels[scale], channels[scale]))
            previous_up = channels[scale]
        self.down = nn.ModuleList(down)
        self.up = nn.ModuleList(up)
        self.eps = _EPS
        self.head = nn.Conv3d(channels[-1], 2, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.blend_candidate = blend_candidate
        self.blend_input: Optional[nn.Conv3d] = None  # None (no parameters) without the candidate
        self.blend_gate: Optional[nn.Conv3d] = None
        if blend_candidate:
            self.blend_input = nn.Conv3d(1, channels[-1], kernel_size=3, padding=1, bias=False)
            self.blend_gate = nn.Conv3d(channels[-1], 1, kernel_size=1)
            for weight in (self.blend_input.weight, self.blend_gate.weight, self.blend_gate.bias):
                nn.init.zeros_(weight)

    def project(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """``P_j`` of each scale: features coarse to fine ``(B, C_i, ...)`` -> ``(B, p_i, ...)``."""
        projected: list[torch.Tensor] = []
        for i, conv in enumerate(self.project_convs):
            projected.append(conv(features[i]))
        return projected

    def forward(
        self,
        i0t: torch.Tensor,
        i1t: torch.Tensor,
        warped0: list[torch.Tensor],
        warped1: list[torch.Tensor],
        t: torch.Tensor,
        blend: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            i0t, i1t: ``(B, 1, X, Y, Z)`` endpoints warped to t at full resolution.
            warped0, warped1: projected then warped features coarse to fine, ``(B, p_i, X_i, Y_i, Z_i)``.
            t: ``(B,)`` time points in [0, 1], the mask's prior.
            blend: ``(B, 1, X, Y, Z)`` the unwarped endpoints' blend ``(1 - t) I0 + t I1``; required with
                ``blend_candidate``, ignored without.

        Returns:
            ``(B, 1, X, Y, Z)`` synthesised volume.
        """
        blend_input = self.blend_input
        if blend_input is not None and blend is None:
            raise ValueError("refinement with blend_candidate=True needs blend=(1 - t) I0 + t I1")
        x = torch.cat([i0t, i1t], dim=1)
        skips: list[torch.Tensor] = []
        for j, unit in enumerate(self.down):  # fine to coarse
            if j > 0:
                x = F.avg_pool3d(x, 2)
            inputs = torch.cat([x, warped0[-1 - j], warped1[-1 - j]], dim=1)
            if j == 0 and blend_input is not None and blend is not None:  # B as one more input channel
                x = unit.adn(unit.conv(inputs) + blend_input(blend))
            else:
                x = unit(inputs)
            skips.append(x)
        for j, unit in enumerate(self.up):  # coarse to fine
            skip = skips[-1 - j]
            x = unit(skip if j == 0 else torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1))
        mask, residual = at_least_float32(self.head(x)).chunk(2, dim=1)
        t = at_least_float32(t).view(-1, 1, 1, 1, 1)
        mask = torch.sigmoid(mask + torch.log((1 - t + self.eps) / (t + self.eps)))
        warped = mask * i0t + (1 - mask) * i1t
        blend_gate = self.blend_gate
        if blend_gate is not None and blend is not None:
            choice = at_least_float32(blend_gate(x)).clamp(0, 1)
            warped = (1 - choice) * warped + choice * blend  # exactly W at s = 0, exactly B at s = 1
        return warped + residual


def warm_start(network: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights into a network whose refinement has ``blend_candidate=True``, from a file saved with or without
    it: the blend modules (:data:`BLEND_MODULES`) the file lacks keep their zero initialisation, so the network
    starts out returning exactly what the file's network returned. Any other mismatch is refused as
    :func:`~scripts.utils.checkpoint.load_weights` refuses it (an :class:`InputError` naming the file).

    Returns:
        ``network``, loaded.
    """
    state = {k.removeprefix("module."): v for k, v in read_state_dict(path).items()}
    own = network.state_dict()
    fresh = {k: v for k, v in own.items() if k not in state and _in_blend_module(k)}
    if set(own) != set(state) | set(fresh) or any(state[k].shape != own[k].shape for k in state if k in own):
        return load_weights(network, path)  # raises, naming what does not fit
    network.load_state_dict({**state, **fresh})
    logger.info("warm-started %s from %s (%d new blend-candidate tensors at zero)", type(network).__name__, path,
                len(fresh))
    return network


def has_blend_candidate(path: str | os.PathLike) -> bool:
    """Whether the weights in ``path`` were saved from a network with ``blend_candidate=True`` (they hold the
    :data:`BLEND_MODULES`): fine-tuning builds the network the weights came from (``configs/finetune.yaml``)."""
    return any(_in_blend_module(key) for key in read_state_dict(path))


def refinement_only(network: nn.Module) -> nn.Module:
    """Freeze everything but the refinement's units and heads (``requires_grad=False``): the encoder, the deformation
    fields and the refinement's feature projections (``project_convs``, applied before the warps) stay as they are.

    A refinement stage trains what the motion cannot explain (the mask, the residual, the blend candidate's gate)
    at a third of the cost of a full student step: the frozen part runs forward only, and only L_recon depends on
    what is trained (train it with ``use_align`` and ``use_distill`` off and ``IntermediatesInferer(fields=False)``).

    Returns:
        ``network``, its trainable parameters those of ``network.refine`` but ``project_convs``.

    Raises:
        ValueError: the network has no refinement.
    """
    if getattr(network, "refine", None) is None:
        raise ValueError(f"{type(network).__name__} has no refinement to train (use_refinement=False)")
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(name.startswith("refine.") and not name.startswith("refine.project_convs."))
    logger.info("refinement only: %d of %d parameters trainable",
                sum(p.numel() for p in network.parameters() if p.requires_grad),
                sum(p.numel() for p in network.parameters()))
    return network


def param_groups(network: nn.Module, lr: float, blend_lr_factor: float = 1.0) -> list[dict]:
    """Optimizer parameter groups: the blend-candidate modules (:data:`BLEND_MODULES`) at ``lr * blend_lr_factor``,
    every other trainable parameter at ``lr`` (a warm-started network's new gate starts at zero and has the most to
    learn); frozen parameters (:func:`refinement_only`) are left out."""
    new, old = [], []
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        (new if _in_blend_module(name) else old).append(parameter)
    groups = [{"params": old, "lr": lr}]
    if new:
        groups.append({"params": new, "lr": lr * blend_lr_factor})
    return groups
