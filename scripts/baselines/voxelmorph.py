"""The VoxelMorph baseline (the paper's VM row): MONAI ``VoxelMorph`` trained I0 -> I1, interpolated by linear scaling.

Training (``configs/train_voxelmorph.json``) registers the endpoints of each training case with MONAI's
``SupervisedTrainer``; the pieces here adapt it without a custom trainer:

- :func:`endpoint_pairs` keeps one item per case of an (I0, I1, It, t) dataset (the datasets give one item per target
  frame, all with the same endpoints), so an epoch is one pass over the training pairs. With the dataset's
  augmentation on, each pass flips the axes at random and swaps the endpoints with probability 1/2, so the network
  learns both directions (I0 -> I1 and I1 -> I0), which the linear scaling needs.
- :class:`RegistrationBatch` turns ``{"image": (B, 2, X, Y, Z) = (I0, I1)}`` into ``VoxelMorph(moving=I0, fixed=I1)``.
- :class:`RegistrationLoss` is VoxelMorph's unsupervised objective, MSE(warped I0, I1) + ``lambda_reg``
  ``DiffusionLoss(ddf)`` (VoxelMorph's lambda for MSE is 0.01; MONAI's ``DiffusionLoss`` is the same squared-gradient
  penalty as VoxelMorph's ``Grad('l2')``, applied here to the integrated displacement).

Interpolation (``vm_linear`` in the evaluation, as UVI-Net's VM baseline): :func:`velocities` runs the backbone twice,
(moving I0, fixed I1) and (moving I1, fixed I0), and keeps the stationary velocities before ``DVF2DDF``;
``scripts.baselines.linear.linear_scaling(..., velocity=True)`` then integrates ``t v01`` and ``(1 - t) v10``.

Fields follow MONAI ``Warp`` semantics: (B, 3, X, Y, Z) in voxels, ``Warp()(i0, DVF2DDF(v01)) ~ i1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiffusionLoss
from monai.networks.nets import VoxelMorph, VoxelMorphUNet
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset

__all__ = ["voxelmorph_net", "velocities", "endpoint_pairs", "RegistrationBatch", "RegistrationLoss"]


def voxelmorph_net(
    channels: Sequence[int] = (16, 32, 32, 32, 32, 32),
    unet_out_channels: int = 32,
    final_conv_channels: Sequence[int] = (16, 16),
    integration_steps: int = 7,
    flow_init_std: float = 1e-5,
) -> VoxelMorph:
    """MONAI's 3D ``VoxelMorph`` (diffeomorphic: ``integration_steps`` scaling-and-squaring steps) on a
    ``VoxelMorphUNet`` backbone (``channels``: pairs of down/up widths; the defaults are MONAI's, VoxelMorph's paper).

    As in VoxelMorph's own code, the velocity head starts near zero (weights ~ N(0, ``flow_init_std``), bias 0), so a
    fresh network starts at the identity map. Inputs need every spatial size divisible by
    ``2 ** (len(channels) // 2)`` (8 by default); :func:`velocities` pads other sizes.
    """
    backbone = VoxelMorphUNet(
        spatial_dims=3,
        in_channels=2,
        unet_out_channels=unet_out_channels,
        channels=tuple(channels),
        final_conv_channels=tuple(final_conv_channels),
    )
    head = backbone.net[-1].final_conv_out.conv
    nn.init.normal_(head.weight, std=flow_init_std)
    nn.init.zeros_(head.bias)
    return VoxelMorph(backbone=backbone, integration_steps=integration_steps)


def _divisor(network: VoxelMorph) -> int:
    """The factor every spatial size must divide: 2 per max-pooling of the backbone."""
    pools = sum(isinstance(m, (nn.MaxPool3d, nn.MaxPool2d)) for m in network.backbone.modules())
    return 2**pools


def velocities(network: VoxelMorph, i0: torch.Tensor, i1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The stationary velocities ``(v01, v10)`` VoxelMorph predicts before integration, each (B, 3, X, Y, Z) in voxels.

    ``v01`` registers I0 (moving) onto I1 (fixed): ``Warp()(i0, DVF2DDF(v01)) ~ i1``; ``v10`` the reverse. Volumes whose
    sizes the backbone cannot take are replicate-padded at the high end and the velocities cropped back.

    Args:
        network: a ``VoxelMorph`` without ``half_res``.
        i0, i1: (B, 1, X, Y, Z) in [0, 1].
    """
    if network.half_res:
        raise ValueError("velocities: half_res VoxelMorph integrates at half resolution; use half_res=False")
    size = i0.shape[2:]
    divisor = _divisor(network)
    pads = [(-s) % divisor for s in size]
    pair = torch.cat([torch.cat([i0, i1], 1), torch.cat([i1, i0], 1)], 0)  # both directions in one pass
    if any(pads):
        pair = F.pad(pair, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")
    v = network.backbone(pair)[..., : size[0], : size[1], : size[2]]
    return v[: i0.shape[0]], v[i0.shape[0] :]


def endpoint_pairs(dataset: Dataset) -> Subset:
    """One item per case of an (I0, I1, It, t) dataset (the first target frame's), with the dataset's transforms.

    Relies on the dataset's index (``dataset.data``, a list of ``{"case", ...}`` as in
    :class:`scripts.datasets.triplets.TripletDataset`).
    """
    first: dict[str, int] = {}
    for index, item in enumerate(dataset.data):
        first.setdefault(item["case"], index)
    return Subset(dataset, list(first.values()))


class RegistrationBatch:
    """``prepare_batch`` for the engines: ``image`` (B, 2, ...) = (I0, I1) -> inputs I0 (moving), target I1 (fixed),
    and I1 again as the network's second argument (``VoxelMorph.forward(moving, fixed)``)."""

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
        moving, fixed = image[:, :1], image[:, 1:2]
        return moving, fixed, (fixed,), {}


class RegistrationLoss(nn.Module):
    """``loss((warped, ddf), fixed)`` = MSE(warped, fixed) + ``lambda_reg`` * ``DiffusionLoss``(ddf).

    ``(warped, ddf)`` is ``VoxelMorph``'s output: the moving volume warped (B, 1, X, Y, Z) and the displacement
    (B, 3, X, Y, Z) in voxels.
    """

    def __init__(self, lambda_reg: float = 0.01):
        super().__init__()
        self.lambda_reg = lambda_reg
        self.smoothness = DiffusionLoss()

    def forward(self, pred: tuple[torch.Tensor, torch.Tensor], fixed: torch.Tensor) -> torch.Tensor:
        warped, ddf = pred
        return F.mse_loss(warped, fixed) + self.lambda_reg * self.smoothness(ddf)
