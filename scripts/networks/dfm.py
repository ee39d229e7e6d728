"""DFM: deformation fusion module (paper Fig. 1(d))."""

import torch
from torch import nn

from scripts.networks.warping import at_least_float32, resize_field

__all__ = ["DFM"]


class DFM(nn.Module):
    """Fuse the velocity fields of scales ``1..i`` into one field at scale ``i``.

    Every coarser field is resampled to scale ``i`` (:func:`scripts.networks.warping.resize_field`, vectors
    multiplied by the size ratio); the ``i`` fields are stacked (``3 i`` channels), a Conv3d
    (``kernel_size``^3) gives ``i`` weight maps, a softmax over them re-weights each field voxel-wise,
    and the weighted sum is the fused field. The same module serves both directions (they are stacked
    along the batch axis by the caller).

    Args:
        num_scales: ``i``, the number of fields fused (>= 2; DFM_1 would be the identity).
        kernel_size: size of the weight-map convolution (1: each voxel's weights come from the velocity
            vectors at that voxel; 3^3 costs about 25x more on CPU at full resolution).
    """

    def __init__(self, num_scales: int, kernel_size: int = 1):
        super().__init__()
        if num_scales < 2:
            raise ValueError(f"num_scales: DFM fuses at least 2 scales, got {num_scales}")
        self.num_scales = num_scales
        self.weights = nn.Conv3d(3 * num_scales, num_scales, kernel_size, padding=kernel_size // 2)

    def forward(self, velocities: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            velocities: ``num_scales`` fields coarse to fine, ``(N, 3, X_j, Y_j, Z_j)`` in voxels of their
                own scale; the last one sets the output grid.

        Returns:
            the fused field ``(N, 3, X, Y, Z)`` (at least float32, voxels of the last scale) and the softmax
            weights ``(N, num_scales, X, Y, Z)``.
        """
        size = velocities[-1].shape[2:]
        fields = torch.stack([resize_field(v, size) for v in velocities], dim=1)  # (N, i, 3, X, Y, Z)
        weights = torch.softmax(at_least_float32(self.weights(fields.flatten(1, 2))), dim=1)
        return (weights.unsqueeze(2) * fields).sum(dim=1), weights
