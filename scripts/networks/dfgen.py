"""DFGen: deformation feature generator of one scale (paper Fig. 1(c))."""

import torch
from monai.networks.blocks import ADN
from torch import nn
from torch.nn import functional as F

from scripts.networks.encoder import LEAKY_RELU, conv_block
from scripts.networks.time_modulation import TimeModulation

__all__ = ["DFGen"]

HEAD_INIT_STD = 1e-5


class DFGen(nn.Module):
    """Deformation features and bidirectional velocity fields at one scale.

    ``concat(F0, Fm, F1[, up(Fdef_prev)])`` -> 2 conv blocks -> ``Fdef`` -> (optional) time modulation
    -> two heads (Conv3d 3^3, weights ~ N(0, 1e-5), bias 0), kept as one conv with 6 output channels
    (channels 0-2: ``V0t``, 3-5: ``V1t``; the two heads are independent output channels).
    ``Fdef_prev`` (the previous, coarser scale) is up-sampled 2x by nearest neighbour.

    The first conv is linear in its input, so it is computed as a sum of three terms, which is the
    same layer as one conv over the concatenation:

    - a 3^3 conv over the endpoint features ``(F0, F1)`` (:meth:`endpoint_term`), computed once when a
      series of ``t`` shares one pair;
    - a 3^3 conv over ``Fm``;
    - over ``up(Fdef_prev)`` the kernel is 1^3 (centre tap), which commutes with nearest up-sampling,
      so it runs at the coarser scale before up-sampling (8x fewer voxels, fewer channels up-sampled).

    Args:
        feature_channels: channels of each of F0, Fm, F1 at this scale.
        prev_channels: channels of the previous scale's Fdef (0 at the coarsest scale).
        channels: channels of this scale's Fdef.
        time_modulation: add a :class:`TimeModulation` of Fdef (student).
    """

    def __init__(self, feature_channels: int, prev_channels: int, channels: int, time_modulation: bool = False):
        super().__init__()
        self.endpoint_conv = nn.Conv3d(2 * feature_channels, channels, 3, padding=1, bias=False)
        self.middle_conv = nn.Conv3d(feature_channels, channels, 3, padding=1)
        self.prev_conv = nn.Conv3d(prev_channels, channels, 1, bias=False) if prev_channels else None
        self.norm_act = ADN(ordering="NA", in_channels=channels, act=LEAKY_RELU, norm="instance", norm_dim=3)
        self.block = conv_block(channels, channels)
        self.modulation = TimeModulation(channels) if time_modulation else None
        self.head = nn.Conv3d(channels, 6, kernel_size=3, padding=1)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    def endpoint_term(self, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        """The first conv's response to ``(F0, F1)``: ``(B, C, ...)`` each -> ``(B, channels, ...)``."""
        return self.endpoint_conv(torch.cat([f0, f1], dim=1))

    def forward(
        self, endpoint_term: torch.Tensor, fm: torch.Tensor, previous: torch.Tensor | None, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            endpoint_term: :meth:`endpoint_term` of the pair, batch ``B`` or 1 (broadcast).
            fm: ``(B, feature_channels, X, Y, Z)`` features of the middle input.
            previous: ``(B, prev_channels, X/2, Y/2, Z/2)`` or None at the coarsest scale.
            t: ``(B,)`` timestamps (used by the time modulation only).

        Returns:
            ``Fdef`` ``(B, channels, X, Y, Z)`` (modulated when time modulation is on) and the
            velocities ``(B, 6, X, Y, Z)`` in voxels of this scale (``V0t`` then ``V1t``).
        """
        x = endpoint_term + self.middle_conv(fm)
        if self.prev_conv is not None:
            assert previous is not None, "previous: DFGen of a finer scale needs the coarser scale's Fdef"
            x = x + F.interpolate(self.prev_conv(previous), scale_factor=2.0, mode="nearest")
        fdef = self.block(self.norm_act(x))
        if self.modulation is not None:
            fdef = self.modulation(fdef, t)
        return fdef, self.head(fdef)
