"""TMSDFLoss term by term against hand-computed values, on constant volumes where every MSE is a squared difference."""

from types import SimpleNamespace

import pytest
import torch

from scripts.training.losses import TMSDFLoss

SHAPE = (1, 1, 8, 8, 4)


def const(value: float, shape=SHAPE) -> torch.Tensor:
    return torch.full(shape, float(value))


def outputs(pred: float, warped0: list[float], warped1: list[float], phi=None) -> SimpleNamespace:
    """Intermediates of constant volumes; ``phi`` per scale (default: zero fields at 1/4, 1/2, 1 of an 8x8x4 grid)."""
    if phi is None:
        phi = [torch.zeros(1, 3, 8 // 2 ** (2 - i), 8 // 2 ** (2 - i), max(1, 4 // 2 ** (2 - i))) for i in range(3)]
    return SimpleNamespace(pred=const(pred), warped0=[const(v) for v in warped0], warped1=[const(v) for v in warped1],
                           phi0=phi, phi1=phi)


def test_recon_align_and_weights_by_hand():
    """Three scales: w = 1/4, 1/2, 1. Zero fields: no regulariser."""
    out = outputs(0.3, warped0=[0.0, 0.1, 0.2], warped1=[1.0, 0.9, 0.8])
    terms = TMSDFLoss(lambda_r=0.5)(out, const(0.5))
    assert terms["recon"].item() == pytest.approx(0.2 ** 2)
    sim = 0.25 * (0.5 ** 2 + 0.5 ** 2) + 0.5 * (0.4 ** 2 + 0.4 ** 2) + 1.0 * (0.3 ** 2 + 0.3 ** 2)
    assert terms["align_sim"].item() == pytest.approx(sim)
    assert terms["align_reg"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(0.2 ** 2 + sim)
    assert "distill" not in terms


def test_regulariser_sees_a_non_constant_field_and_lambda_r_weights_it():
    phi = [torch.zeros(1, 3, 2, 2, 1), torch.zeros(1, 3, 4, 4, 2), torch.zeros(1, 3, 8, 8, 4)]
    phi[2][:, 0] = torch.arange(8.0).view(8, 1, 1)  # d phi_x / dx = 1 at the finest scale only
    out = outputs(0.5, [0.5] * 3, [0.5] * 3, phi)
    weak, strong = TMSDFLoss(lambda_r=0.1)(out, const(0.5)), TMSDFLoss(lambda_r=0.2)(out, const(0.5))
    assert weak["align_reg"].item() > 0 and weak["align_reg"].item() == pytest.approx(strong["align_reg"].item())
    assert strong["align"].item() == pytest.approx(2 * weak["align"].item())


def test_distill_and_switches():
    out = outputs(0.3, [0.2, 0.2, 0.2], [0.6, 0.6, 0.6])
    teacher = outputs(0.4, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    terms = TMSDFLoss(lambda_d=0.1)(out, const(0.5), teacher)
    distill = 0.1 ** 2 + 3 * 0.3 ** 2 + 3 * 0.1 ** 2
    assert terms["distill"].item() == pytest.approx(distill)
    assert terms["loss"].item() == pytest.approx(terms["recon"].item() + terms["align"].item() + 0.1 * distill)
    only_recon = TMSDFLoss(use_align=False, use_distill=False)(out, const(0.5), teacher)
    assert only_recon["loss"].item() == pytest.approx(0.2 ** 2)
    assert only_recon["distill"].item() == pytest.approx(distill)  # still reported for logging
    assert TMSDFLoss(use_recon=False, use_align=False)(out, const(0.5), teacher)["loss"].item() == pytest.approx(
        0.1 * distill)


def test_engine_loss_returns_the_total_and_keeps_every_term():
    from scripts.training.adapters import EngineLoss, StepOutput

    out = outputs(0.3, [0.2, 0.2, 0.2], [0.6, 0.6, 0.6])
    step = StepOutput(out, outputs(0.4, [0.5] * 3, [0.5] * 3))
    total = EngineLoss(TMSDFLoss(use_align=False, lambda_d=0.5))(step, const(0.5))
    assert total.item() == pytest.approx(0.2 ** 2 + 0.5 * step.terms["distill"].item())
    assert set(step.terms) == {"recon", "align", "align_sim", "align_reg", "distill", "loss"}
