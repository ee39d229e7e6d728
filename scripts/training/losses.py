"""The objectives of the paper (section 2.4), one term at a time so ablations are config switches.

    L_align   = sum_k sum_i w_i (MSE(I_t, I_kt_i) + lambda_r Diffusion(Phi_kt_i)),  w_i = 2^(i - N), i = 1 (coarsest)..N
    L_recon   = MSE(I~_t, I_t)
    L_distill = MSE(I~_t^stu, I~_t^tch) + sum_i (MSE(I_0t^stu_i, I_0t^tch_i) + MSE(I_1t^stu_i, I_1t^tch_i))
    stage 1 (teacher): L_recon + L_align;  stage 2 (student): L_align + L_recon + lambda_d L_distill

Table 3 of the paper (recon / +align / +distill) is the three settings of ``use_align`` and ``use_distill``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiffusionLoss
from torch import nn
from torch.nn import functional as F


def _pad_thin_axes(field: torch.Tensor) -> torch.Tensor:
    """Replicate-pad spatial axes thinner than 3 voxels by one on each side, so MONAI's central differences (which
    need > 2 voxels) apply at coarse scales of thin stacks (e.g. 1/8 of an 8-slice cine is 1 slice thick). The padded
    axis contributes a zero derivative; the interior the other derivatives are taken over is the original field."""
    pad = []
    for size in reversed(field.shape[2:]):
        pad += [1, 1] if size < 3 else [0, 0]
    return F.pad(field, pad, mode="replicate") if any(pad) else field


class TMSDFLoss(nn.Module):
    """Weighted sum of L_recon, L_align and L_distill, returning every term for logging.

    Args:
        lambda_r: weight of the diffusion regulariser inside L_align (paper: 0.1; the training configs use 0.01 because
            Phi is in voxels here, see docs/design_decisions.md).
        lambda_d: weight of L_distill (paper: 0.1).
        use_recon, use_align, use_distill: switch each term on or off in the total (Table 3). Every term is still
            reported (detached, for logging) so runs stay comparable; L_distill only when a teacher is given.
        scale_weights: w_i per scale, coarsest first; default 2^(i - N).

    ``forward(out, target, teacher_out=None)`` takes the network's intermediates (an object with ``pred``
    (B, 1, X, Y, Z), ``warped0``/``warped1`` lists of full-resolution warped endpoints and ``phi0``/``phi1`` lists of
    displacement fields, coarsest first), the true intermediate volume ``target`` (B, 1, X, Y, Z) in [0, 1] and, in
    stage 2, the frozen teacher's intermediates. Returns a dict of scalar tensors: ``loss`` (the total to
    back-propagate) and the detached terms ``recon``, ``align``, ``align_sim``, ``align_reg`` (not when ``out`` has no
    fields: a prediction-only step) and, with a teacher, ``distill``.
    """

    def __init__(
        self,
        lambda_r: float = 0.1,
        lambda_d: float = 0.1,
        use_recon: bool = True,
        use_align: bool = True,
        use_distill: bool = True,
        scale_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        self.lambda_r = lambda_r
        self.lambda_d = lambda_d
        self.use_recon = use_recon
        self.use_align = use_align
        self.use_distill = use_distill
        self.scale_weights = None if scale_weights is None else tuple(scale_weights)
        self.diffusion = DiffusionLoss()

    def _weights(self, num_scales: int) -> tuple[float, ...]:
        if self.scale_weights is None:
            return tuple(2.0 ** (i - num_scales) for i in range(1, num_scales + 1))
        if len(self.scale_weights) != num_scales:
            raise ValueError(f"scale_weights has {len(self.scale_weights)} entries for {num_scales} scales")
        return self.scale_weights

    def align(self, out, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarity part, regulariser part) of L_align, each already weighted by w_i; L_align = sim + lambda_r reg."""
        weights = self._weights(len(out.phi0))
        sim = target.new_zeros(())
        reg = target.new_zeros(())
        for warped, phis in ((out.warped0, out.phi0), (out.warped1, out.phi1)):
            for w, image, phi in zip(weights, warped, phis):
                sim = sim + w * F.mse_loss(image, target)
                reg = reg + w * self.diffusion(_pad_thin_axes(phi))
        return sim, reg

    @staticmethod
    def distill(out, teacher_out) -> torch.Tensor:
        """L_distill: the student's output and warped endpoints at every scale against the teacher's."""
        loss = F.mse_loss(out.pred, teacher_out.pred)
        for stu, tch in zip((*out.warped0, *out.warped1), (*teacher_out.warped0, *teacher_out.warped1)):
            loss = loss + F.mse_loss(stu, tch)
        return loss

    def forward(self, out, target: torch.Tensor, teacher_out=None) -> dict[str, torch.Tensor]:
        if self.use_align and not out.phi0:
            raise ValueError("L_align needs the network's fields: run it with intermediates (or use_align=False)")
        terms = {"recon": F.mse_loss(out.pred, target)}
        if out.phi0:  # not reported for a prediction-only step (refinement stage), where it is not computed
            terms["align_sim"], terms["align_reg"] = self.align(out, target)
            terms["align"] = terms["align_sim"] + self.lambda_r * terms["align_reg"]
        total = target.new_zeros(())
        if self.use_recon:
            total = total + terms["recon"]
        if self.use_align:
            total = total + terms["align"]
        if teacher_out is not None:
            terms["distill"] = self.distill(out, teacher_out)
            if self.use_distill:
                total = total + self.lambda_d * terms["distill"]
        terms = {name: value.detach() for name, value in terms.items()}
        terms["loss"] = total
        return terms


class NegativePSNR(nn.Module):
    """``-PSNR`` of each item (peak 1), averaged over the batch: ``mean_n 10 log10(MSE_n + eps)`` (dB).

    Every item weighs alike whatever its error, as in the benchmarks (PSNR averaged over frames); under the plain MSE
    the items of large gaps, with errors ten times those of small gaps, own the gradient (research log, "Choosing the
    warp").

    Args:
        eps: added to each item's MSE (a perfect prediction scores 10 log10(eps) instead of minus infinity).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = float(eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = ((pred - target) ** 2).flatten(1).mean(1)
        return 10.0 * torch.log10(mse + self.eps).mean()



class RefinedAndStudentPSNR(nn.Module):
    """``-PSNR`` of the refined frame plus ``student_weight`` times ``-PSNR`` of the student's own frame (each per item,
    averaged over the batch, as :class:`NegativePSNR`), for :class:`~scripts.networks.cine.StudentWithNeighbours`'s
    training output ``(N, 2, X, Y, Z)`` (refined, student). The second term keeps the student's frame good where the
    product runs it alone (pairs without an acquired frame on both sides, series whose pairs span more than the
    refinement's limit).
    """

    def __init__(self, student_weight: float = 0.5, eps: float = 1e-8):
        super().__init__()
        self.student_weight = float(student_weight)
        self.psnr = NegativePSNR(eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.dim() < 2 or pred.shape[1] != 2:
            raise ValueError(f"expected (N, 2, ...) predictions (refined, student), got {tuple(pred.shape)}")
        return self.psnr(pred[:, :1], target) + self.student_weight * self.psnr(pred[:, 1:], target)