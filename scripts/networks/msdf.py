"""MSDF: multi-scale deformation fusion decoder (paper Fig. 1(b))."""

from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch
from torch import nn

from scripts.networks.dfgen import DFGen
from scripts.networks.dfm import DFM
from scripts.networks.warping import at_least_float32

__all__ = ["MSDF", "MSDFOutput"]


class MSDFOutput(NamedTuple):
    """Velocities per scale, coarse to fine.

    ``velocities[i]``: ``(2B, 3, ...)`` at scale ``i`` in voxels of that scale (at least float32), the two
    directions stacked along the batch axis (``[:B]`` = ``V0t``, ``[B:]`` = ``V1t``), after fusion where a
    DFM exists.
    ``dfm_weights[i]``: ``(2B, i + 1, ...)`` softmax weights of the DFM of that scale, or None.
    """

    velocities: list[torch.Tensor]
    dfm_weights: list[Optional[torch.Tensor]]


class MSDF(nn.Module):
    """DFGen_1..4 coarse to fine, each followed by DFM_i.

    Args:
        feature_channels: encoder channels coarse to fine (scale 1..4).
        channels: Fdef channels coarse to fine.
        time_modulation: time-modulated DFGens (student).
        use_dfm: fuse velocity fields with DFMs (otherwise each scale keeps its own field).
        multi_scale_dfm: a DFM at every scale 2..4 (True) or at the finest scale only (False).
        dfm_kernel_size: kernel size of the DFMs' weight-map convolution.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        channels: Sequence[int],
        time_modulation: bool = False,
        use_dfm: bool = True,
        multi_scale_dfm: bool = True,
        dfm_kernel_size: int = 1,
    ):
        super().__init__()
        if len(feature_channels) != len(channels):
            raise ValueError(f"channels: expected {len(feature_channels)} values, got {tuple(channels)}")
        if multi_scale_dfm and not use_dfm:
            raise ValueError("multi_scale_dfm: requires use_dfm=True")
        num_scales = len(channels)
        previous = [0, *channels[:-1]]
        self.dfgen = nn.ModuleList(
            DFGen(f, p, c, time_modulation) for f, p, c in zip(feature_channels, previous, channels)
        )
        fused = range(2, num_scales + 1) if multi_scale_dfm else [num_scales] if use_dfm else []
        self.dfm = nn.ModuleDict({str(i): DFM(i, dfm_kernel_size) for i in fused})

    def endpoint_terms(self, f0: list[torch.Tensor], f1: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per scale, DFGen_i's response to the endpoint features (see :meth:`DFGen.endpoint_term`)."""
        terms: list[torch.Tensor] = []
        for i, dfgen in enumerate(self.dfgen):
            terms.append(dfgen.endpoint_term(f0[i], f1[i]))
        return terms

    def forward(self, endpoint_terms: list[torch.Tensor], fm: list[torch.Tensor], t: torch.Tensor) -> MSDFOutput:
        """
        Args:
            endpoint_terms: :meth:`endpoint_terms` of the pair, batch ``B`` or 1 (broadcast).
            fm: per scale coarse to fine, ``(B, C_i, X_i, Y_i, Z_i)`` features of the middle input.
            t: ``(B,)`` timestamps for the time modulation.
        """
        fdef: Optional[torch.Tensor] = None
        own: list[torch.Tensor] = []
        velocities: list[torch.Tensor] = []
        weights: list[Optional[torch.Tensor]] = []
        for i, dfgen in enumerate(self.dfgen):
            scale = i + 1
            fdef, heads = dfgen(endpoint_terms[i], fm[i], fdef, t)
            own.append(at_least_float32(torch.cat([heads[:, :3], heads[:, 3:]], dim=0)))
            velocity = own[-1]
            weight: Optional[torch.Tensor] = None
            for key, dfm in self.dfm.items():  # DFM_i, if this scale has one (ModuleDict keys are "i")
                if key == str(scale):
                    velocity, weight = dfm(own)
            velocities.append(velocity)
            weights.append(weight)
        return MSDFOutput(velocities, weights)
