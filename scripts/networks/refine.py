"""Refinement network: synthesises the intermediate volume from the warped endpoints (paper 2.2)."""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from scripts.networks.encoder import conv_block
from scripts.networks.warping import at_least_float32

__all__ = ["Refinement"]

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

    Args:
        feature_channels: encoder channels coarse to fine (scale 1..4).
        projection_channels: ``P`` output channels coarse to fine.
        channels: unit widths coarse to fine (scale 1..4).
    """

    def __init__(self, feature_channels: Sequence[int], projection_channels: Sequence[int], channels: Sequence[int]):
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
    ) -> torch.Tensor:
        """
        Args:
            i0t, i1t: ``(B, 1, X, Y, Z)`` endpoints warped to t at full resolution.
            warped0, warped1: projected then warped features coarse to fine, ``(B, p_i, X_i, Y_i, Z_i)``.
            t: ``(B,)`` time points in [0, 1], the mask's prior.

        Returns:
            ``(B, 1, X, Y, Z)`` synthesised volume.
        """
        x = torch.cat([i0t, i1t], dim=1)
        skips: list[torch.Tensor] = []
        for j, unit in enumerate(self.down):  # fine to coarse
            if j > 0:
                x = F.avg_pool3d(x, 2)
            x = unit(torch.cat([x, warped0[-1 - j], warped1[-1 - j]], dim=1))
            skips.append(x)
        for j, unit in enumerate(self.up):  # coarse to fine
            skip = skips[-1 - j]
            x = unit(skip if j == 0 else torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1))
        mask, residual = at_least_float32(self.head(x)).chunk(2, dim=1)
        t = at_least_float32(t).view(-1, 1, 1, 1, 1)
        mask = torch.sigmoid(mask + torch.log((1 - t + self.eps) / (t + self.eps)))
        return mask * i0t + (1 - mask) * i1t + residual
