"""How far deformation-based interpolation can go on a dataset: oracles that see the true frames.

None is a method (each uses I_t); they bound what the student can hope for and tell apart "the network is
under-trained" from "the data do not allow more". All fit stationary velocity fields by direct optimisation (Adam,
scaling and squaring as in the networks, loss MSE + ``lambda_r`` x MONAI ``DiffusionLoss`` of the displacement, the
objective of L_align at the finest scale):

- ``registration``: each endpoint registered to the true frame; the prediction is (1 - t) I_0t + t I_1t. The
  ceiling of any method that warps the endpoints (the teacher's regime).
- ``scaled_linear``: I_0 registered to I_1 and I_1 to I_0, the prediction warps I_0 by exp(t V_01) and I_1 by
  exp((1 - t) V_10) and mixes them with weight t: linear scaling with an oracle ED <-> ES registration, what
  ``vm_linear`` and ``elastix_linear`` approximate. ``ed_es_fit`` is the PSNR of that registration itself (warped
  I_0 against I_1 and the reverse): where it is low, the endpoints differ by more than a deformation (through-plane
  motion, signal change) and scaling their registration is a poor guide to the frames between.
- ``scaled_profile``: the same ED <-> ES registration with any time profile: per target, the best of a grid of
  fractions (a, b) of V_01, V_10 (0 to 1.5 in steps of 0.25) and mixing weights w (0 to 1 in steps of 0.1) for
  (1 - w) Warp(I_0, exp(a V_01)) + w Warp(I_1, exp(b V_10)). The ceiling of every method that scales the endpoint
  registration, however it learns to time it.
- ``trajectory``: the same linearly scaled synthesis, but with the one pair (V_01, V_10) per series fitted to the
  frames between instead of to the endpoints; fitted on the even-numbered targets and scored on the odd-numbered
  ones (``blend_heldout`` is the blend on those same frames). What a student of the "predict one deformation from
  (I_0, I_1), scale it by t" family could reach if it guessed that pair from the endpoints alone.

    python -m scripts.research ceilings --dataset_dir ACDC/training --spatial_size "[96,96,8]" --output_dir ceilings_acdc

writes ``summary.json`` (mean PSNR per oracle, equal weight per frame) and ``summary.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from monai.losses import DiffusionLoss

from scripts.baselines.linear import blend, linear_scaling
from scripts.datasets.registry import make_dataset
from scripts.evaluation.cases import Case, eval_cases
from scripts.evaluation.metrics import psnr
from scripts.evaluation.reports import write_summary
from scripts.networks.warping import integrate_velocity, warp
from scripts.utils.atomic import atomic_dir
from scripts.utils.tensors import lerp

__all__ = [
    "fit_velocity", "register", "registration_ceiling", "profile_oracle", "scaled_ceiling", "trajectory_ceiling",
    "ceilings",
]

logger = logging.getLogger(__name__)

Synthesis = Callable[[torch.Tensor], torch.Tensor]
"""velocity ``(B, 3, X, Y, Z)`` -> predicted volumes, differentiable."""


def fit_velocity(synthesise: Synthesis, target: torch.Tensor, shape: Sequence[int], lambda_r: float = 0.01,
                 steps: int = 100, lr: float = 0.1) -> torch.Tensor:
    """Velocities V of ``shape`` minimising MSE(synthesise(V), target) + lambda_r Diffusion(exp(V)), by Adam from 0.

    Args:
        synthesise: the prediction as a function of V.
        target: what the prediction should match, same shape as it, in [0, 1].
        shape: ``(B, 3, X, Y, Z)``, velocities in voxels.
        lambda_r: weight of the diffusion regulariser of the displacements exp(V) (voxels).
        steps, lr: Adam iterations and step size (voxels per step, roughly).

    Returns:
        ``shape`` velocity in voxels (detached).
    """
    velocity = torch.zeros(*shape, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([velocity], lr=lr)
    diffusion = DiffusionLoss()
    for _ in range(steps):
        loss = torch.mean((synthesise(velocity) - target) ** 2) + lambda_r * diffusion(integrate_velocity(velocity))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return velocity.detach()


def register(moving: torch.Tensor, fixed: torch.Tensor, **kwargs) -> torch.Tensor:
    """Stationary velocities V (one per item) with warp(moving, exp(V)) ~ fixed (``kwargs``: :func:`fit_velocity`).

    Args:
        moving, fixed: ``(B, 1, X, Y, Z)`` in [0, 1].

    Returns:
        ``(B, 3, X, Y, Z)`` velocity in voxels (detached).
    """
    return fit_velocity(lambda v: warp(moving, integrate_velocity(v)), fixed,
                        (moving.shape[0], 3, *moving.shape[2:]), **kwargs)


def registration_ceiling(subject: Case, **kwargs) -> list[float]:
    """PSNR per target of the t-weighted mix of both endpoints registered to it (``kwargs`` go to :func:`register`)."""
    n = len(subject.ts)
    i0, i1 = subject.endpoints(n)
    velocity = register(torch.cat([i0, i1]), torch.cat([subject.targets, subject.targets]), **kwargs)
    with torch.no_grad():
        warped = warp(torch.cat([i0, i1]), integrate_velocity(velocity))
        return psnr(blend(warped[:n], warped[n:], subject.ts).clamp(0, 1), subject.targets).tolist()


def _scaled(subject: Case, velocity: torch.Tensor, frames: slice) -> torch.Tensor:
    """Linear scaling of the pair ``velocity`` ``(2, 3, X, Y, Z)`` (V_01, V_10) to the targets ``frames`` selects."""
    ts = subject.ts[frames]
    m = len(ts)
    return linear_scaling(*subject.endpoints(m), velocity[:1].expand(m, -1, -1, -1, -1),
                          velocity[1:].expand(m, -1, -1, -1, -1), ts, velocity=True)


FITTED, HELD_OUT = slice(0, None, 2), slice(1, None, 2)
"""The targets the ``trajectory`` oracle is fitted to (even-numbered) and scored on (odd-numbered)."""


FRACTIONS = torch.linspace(0.0, 1.5, 7)
"""Fractions a, b of the ED <-> ES velocities the ``scaled_profile`` oracle tries."""
MIX_WEIGHTS = torch.linspace(0.0, 1.0, 11)
"""Weights w of the warped I_1 the ``scaled_profile`` oracle tries."""


def profile_oracle(subject: Case, velocity: torch.Tensor) -> list[float]:
    """PSNR per target of the best ``(1 - w) Warp(I_0, exp(a V_01)) + w Warp(I_1, exp(b V_10))`` over the grids
    ``FRACTIONS`` (a, b) and ``MIX_WEIGHTS`` (w), chosen for each target separately.

    Args:
        subject: the series.
        velocity: ``(2, 3, X, Y, Z)`` the pair (V_01, V_10) in voxels.
    """
    with torch.no_grad():
        w0 = torch.cat([warp(subject.i0, integrate_velocity(a * velocity[:1])) for a in FRACTIONS])
        w1 = torch.cat([warp(subject.i1, integrate_velocity(b * velocity[1:])) for b in FRACTIONS])
        w = MIX_WEIGHTS.view(-1, 1, 1, 1, 1)
        candidates = torch.cat([lerp(x, y, w) for x in w0 for y in w1])  # (a, b, w) flattened, 1, X, Y, Z
        best = [candidates[((candidates - target) ** 2).flatten(1).mean(1).argmin()] for target in subject.targets]
        return psnr(torch.stack(best), subject.targets).tolist()


def scaled_ceiling(subject: Case, **kwargs) -> tuple[list[float], list[float], list[float]]:
    """Scores of the ED <-> ES registration (``kwargs``: :func:`register`): PSNR per target scaled linearly, PSNR per
    target with the best time profile (:func:`profile_oracle`), PSNR of the registration itself (I_0 -> I_1,
    I_1 -> I_0)."""
    velocity = register(torch.cat([subject.i0, subject.i1]), torch.cat([subject.i1, subject.i0]), **kwargs)
    with torch.no_grad():
        fit = psnr(warp(torch.cat([subject.i0, subject.i1]), integrate_velocity(velocity)),
                   torch.cat([subject.i1, subject.i0]))
        linear = psnr(_scaled(subject, velocity, slice(None)).clamp(0, 1), subject.targets)
    return linear.tolist(), profile_oracle(subject, velocity), fit.tolist()


def trajectory_ceiling(subject: Case, **kwargs) -> list[float]:
    """PSNR of the trajectory oracle on the odd-numbered targets (``HELD_OUT``), its pair fitted on the even.

    A series with a single target has nothing held out and gives an empty list. ``kwargs`` go to
    :func:`fit_velocity`.
    """
    if len(subject.ts) < 2:
        return []
    velocity = fit_velocity(lambda v: _scaled(subject, v, FITTED), subject.targets[FITTED],
                            (2, 3, *subject.i0.shape[2:]), **kwargs)
    with torch.no_grad():
        return psnr(_scaled(subject, velocity, HELD_OUT).clamp(0, 1), subject.targets[HELD_OUT]).tolist()


def ceilings(dataset_dir: str, dataset: str = "acdc", split: str = "test", spatial_size: Sequence[int] = (96, 96, 8),
             lambda_r: float = 0.01, steps: int = 100, output_dir: str = "ceilings", overwrite: bool = False) -> dict:
    """The oracles and the blend on a dataset's split (module docstring); returns and writes the mean PSNRs."""
    data = make_dataset(dataset, dataset_dir, split=split, spatial_size=spatial_size)
    names = ("blend", "registration", "scaled_linear", "scaled_profile", "ed_es_fit", "trajectory", "blend_heldout")
    scores: dict[str, list[float]] = {name: [] for name in names}
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        for subject in eval_cases(data):
            n = len(subject.ts)
            blended = psnr(blend(*subject.endpoints(n), subject.ts), subject.targets).tolist()
            scores["blend"] += blended
            scores["blend_heldout"] += blended[HELD_OUT]
            scores["registration"] += registration_ceiling(subject, lambda_r=lambda_r, steps=steps)
            linear, profile, fit = scaled_ceiling(subject, lambda_r=lambda_r, steps=steps)
            scores["scaled_linear"] += linear
            scores["scaled_profile"] += profile
            scores["ed_es_fit"] += fit
            scores["trajectory"] += trajectory_ceiling(subject, lambda_r=lambda_r, steps=steps)
            logger.info("%s: %d frames done", subject.case, n)
        summary = {name: sum(values) / len(values) for name, values in scores.items() if values}
        summary.update(frames=len(scores["blend"]), heldout_frames=len(scores["trajectory"]), lambda_r=lambda_r,
                       steps=steps)
        write_summary(tmp, summary, "| oracle | PSNR (dB) |\n|---|---|\n" + "".join(
            f"| {name} | {summary[name]:.2f} |\n" for name in names if name in summary))
    logger.info("ceilings (lambda_r %g, %d steps, %d frames, %d held out): %s", lambda_r, steps, summary["frames"],
                summary["heldout_frames"], {name: round(summary[name], 2) for name in names if name in summary})
    return summary
