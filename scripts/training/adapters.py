"""The pieces that let MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` train and validate TMSDF-KD unchanged.

The engines call ``prepare_batch(batch)`` -> ``(inputs, target, args, kwargs)``, then
``inferer(inputs, network, *args, **kwargs)`` and ``loss_function(pred, target)``. Here:

- :class:`TripletBatch` turns a sample batch ``{"image": (B, 2, X, Y, Z) = (I0, I1), "target": (B, 1, X, Y, Z) = It,
  "t": (B,)}`` into the network's inputs: (I0, It, I1) for the teacher, (I0, I1) and t for the student; in stage 2 it
  also hands the frozen teacher its inputs.
- :class:`IntermediatesInferer` runs the network with ``intermediates=True`` (every scale's fields and warped images, which the
  losses need) and, in stage 2, the frozen teacher without gradient, returning a :class:`StepOutput`.
- :class:`EngineLoss` adapts :class:`scripts.training.losses.TMSDFLoss` to the engine's ``loss(pred, target)`` call and keeps
  every term in ``StepOutput.terms`` for the loggers (``loss_terms`` is their ``output_transform``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from monai.inferers import Inferer
from monai.utils import CommonKeys as Keys
from torch import nn

from scripts.networks.tmsdf import Intermediates
from scripts.training.losses import TMSDFLoss


def teacher_inputs(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 2, ...) = (I0, I1) and (B, 1, ...) = It -> (B, 3, ...) = (I0, It, I1), the teacher's input."""
    return torch.cat([image[:, :1], target, image[:, 1:]], dim=1)


class TripletBatch:
    """``prepare_batch`` for the engines.

    Args:
        stage: ``"teacher"`` (inputs (I0, It, I1)) or ``"student"`` (inputs (I0, I1), ``t`` as the first argument).
        with_teacher: in stage 2 training, also pass the teacher's inputs (``teacher_inputs`` keyword) so the
            inferer can run the frozen teacher.
    """

    def __init__(self, stage: str = "student", with_teacher: bool = False):
        if stage not in ("teacher", "student"):
            raise ValueError(f"stage must be 'teacher' or 'student', got {stage!r}")
        self.stage = stage
        self.with_teacher = with_teacher

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
        target = batchdata["target"].to(device=device, non_blocking=non_blocking, **kwargs)
        t = torch.as_tensor(batchdata["t"], dtype=image.dtype).reshape(-1).to(image.device)
        if self.stage == "teacher":
            return teacher_inputs(image, target), target, (t,), {}
        extra = {"teacher_inputs": teacher_inputs(image, target)} if self.with_teacher else {}
        return image, target, (t,), extra


@dataclasses.dataclass
class StepOutput:
    """What one training iteration produced: the trained network's intermediates, the frozen teacher's (stage 2),
    and the loss terms filled in by :class:`EngineLoss`."""

    student: Any
    teacher: Any = None
    terms: dict = dataclasses.field(default_factory=dict)


class IntermediatesInferer(Inferer):
    """Run ``network(inputs, t, intermediates=True)``; with a ``teacher``, also the frozen teacher (eval, no grad).

    The network is called through ``forward`` (not ``forward_intermediates``) so a ``DistributedDataParallel``
    wrapper synchronises its gradients.

    Args:
        teacher: the frozen teacher of stage 2 (its intermediates go to L_distill), or None.
        fields: compute every scale's fields and warped endpoints (L_align, L_distill need them); False runs the
            network for its prediction only (a quarter cheaper), for a loss of L_recon alone (refinement stage).
    """

    def __init__(self, teacher: nn.Module | None = None, fields: bool = True):
        super().__init__()
        if teacher is not None and not fields:
            raise ValueError("distillation from a teacher needs the student's fields: fields=True")
        self.fields = bool(fields)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, t: torch.Tensor, teacher_inputs=None) -> StepOutput:
        if not self.fields:
            return StepOutput(Intermediates(network(inputs, t), [], [], [], [], [], [], []))
        out = network(inputs, t, intermediates=True)
        if self.teacher is None:
            return StepOutput(out)
        if teacher_inputs is None:
            raise ValueError("stage 2 needs the teacher's inputs: use TripletBatch(stage='student', with_teacher=True)")
        self.teacher.eval()  # stays frozen whatever the trainer does to the modules it owns
        with torch.no_grad():
            tch = self.teacher.forward_intermediates(teacher_inputs, t)
        return StepOutput(out, tch)


class EngineLoss(nn.Module):
    """``loss(pred: StepOutput, target)`` -> the total of :class:`TMSDFLoss`; the terms go to ``pred.terms``."""

    def __init__(self, loss: TMSDFLoss):
        super().__init__()
        self.loss = loss

    def forward(self, pred: StepOutput, target: torch.Tensor) -> torch.Tensor:
        pred.terms = self.loss(pred.student, target, pred.teacher)
        return pred.terms["loss"]


def loss_terms(output: dict) -> dict[str, float]:
    """``output_transform`` for stats/TensorBoard handlers: every loss term of the iteration as a float."""
    return {name: float(value) for name, value in output[Keys.PRED].terms.items()}


def total_loss(output: dict) -> float:
    """``output_transform`` for stats/TensorBoard handlers of an engine whose loss is one tensor (the neighbour
    refinement's): the iteration's loss as a float."""
    return float(output[Keys.LOSS])


def prediction(output: dict) -> torch.Tensor:
    """``output_transform`` picking the synthesised volume (B, 1, X, Y, Z) from a training iteration's output."""
    return output[Keys.PRED].student.pred.detach()


def tensorboard_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_transform`` of ``TensorBoardImageHandler``: ((I0, I1) as 2 channels, It) of a training batch."""
    return batch["image"], batch["target"]


def tensorboard_outputs(output: dict) -> torch.Tensor:
    """``output_transform`` of ``TensorBoardImageHandler``: (prediction, |prediction - It|) as 2 channels."""
    pred = prediction(output)
    return torch.cat([pred, (pred - output[Keys.LABEL]).abs()], dim=1)
