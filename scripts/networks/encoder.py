"""Feature-extraction encoder shared by the three input volumes (paper section 2.2)."""

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["conv_block", "Encoder"]

LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})


def conv_block(in_channels: int, out_channels: int, strides: int = 1) -> Convolution:
    """The paper's "3D Conv Block": Conv3d 3^3 (same padding) -> InstanceNorm3d -> LeakyReLU(0.2).

    With ``strides=2`` the output size is ``ceil(size / 2)``.
    """
    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        strides=strides,
        kernel_size=3,
        act=LEAKY_RELU,
        norm="instance",
    )


class Encoder(nn.Module):
    """Four convolution units of two conv blocks; unit 1 keeps the size, units 2-4 halve it.

    Args:
        in_channels: channels of one input volume (1 for an intensity volume).
        channels: output channels of units 1..4 (full, 1/2, 1/4, 1/8 resolution).

    ``forward(x)`` takes ``(B, in_channels, X, Y, Z)`` with ``X, Y, Z`` multiples of 8 and returns
    the features coarse to fine, the paper's scale index ``i = 1..4``:
    ``[(B, channels[3], X/8, ..), (B, channels[2], X/4, ..), (B, channels[1], X/2, ..), (B, channels[0], X, ..)]``.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 64)):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels: expected 4 values (full, 1/2, 1/4, 1/8 resolution), got {tuple(channels)}")
        self.channels = tuple(int(c) for c in channels)
        units = []
        previous = in_channels
        for level, width in enumerate(self.channels):
            units.append(nn.Sequential(conv_block(previous, width, strides=1 if level == 0 else 2), conv_block(width, width)))
            previous = width
        self.units = nn.ModuleList(units)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for unit in self.units:
            x = unit(x)
            features.append(x)
        return features[::-1]
