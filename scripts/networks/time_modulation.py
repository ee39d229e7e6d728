"""Time modulation of deformation features by the surrogate timestamp t (paper section 2.3)."""

import math

import torch
from torch import nn

__all__ = ["sinusoidal_embedding", "TimeModulation"]

EMBED_DIM = 64
TIME_SCALE = 1000.0
"""t in [0, 1] is embedded like a diffusion step in [0, 1000]."""


def sinusoidal_embedding(
    t: torch.Tensor, dim: int = EMBED_DIM, max_period: float = 10000.0, time_scale: float = TIME_SCALE
) -> torch.Tensor:
    """Transformer/DDPM sinusoidal encoding of ``time_scale * t``.

    Args:
        t: ``(B,)`` timestamps, nominally in [0, 1].
        dim: even embedding size.
        max_period: the longest period of the encoding, in units of ``time_scale * t``.
        time_scale: factor applied to ``t`` first (1000: t in [0, 1] becomes a diffusion-like step).

    Returns:
        ``(B, dim)``: ``[sin(1000 t w_k), cos(1000 t w_k)]`` with ``w_k = max_period**(-k / (dim/2))``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = time_scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeModulation(nn.Module):
    """FiLM of a feature map by t: ``F~ = (1 + gamma(t)) * F + beta(t)``.

    Embedding (dim 64) -> 2 x [Linear, LeakyReLU(0.2)] -> broadcast to the feature size ->
    2 Conv3d blocks -> (gamma, beta). The broadcast map is spatially constant, so the conv blocks use
    1^3 kernels (a 3^3 kernel could only add zero-padding border artefacts) and are evaluated on a
    single voxel, then broadcast: identical to evaluating them on the full grid, at no spatial cost.
    No normalisation in the conv blocks (instance norm of a constant map is zero). The last conv is
    zero-initialised, so a fresh module is exactly the identity.

    Args:
        channels: channels of the modulated feature map.
        hidden: width of the linear and conv blocks.
    """

    def __init__(self, channels: int, hidden: int = EMBED_DIM):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(EMBED_DIM, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
        )
        self.conv = nn.Sequential(nn.Conv3d(hidden, hidden, 1), nn.LeakyReLU(0.2), nn.Conv3d(hidden, 2 * channels, 1))
        nn.init.zeros_(self.conv[-1].weight)
        nn.init.zeros_(self.conv[-1].bias)

    def forward(self, features: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, C, X, Y, Z)``, ``t`` ``(B,)`` -> modulated ``(B, C, X, Y, Z)``."""
        embedding = self.mlp(sinusoidal_embedding(t).to(features.dtype))
        gamma, beta = self.conv(embedding[:, :, None, None, None]).chunk(2, dim=1)
        return (1 + gamma) * features + beta
