"""The registration oracles of ``python -m scripts.research ceilings`` on motions whose answer is known."""

import json

import pytest
import torch

from scripts.baselines import linear as baselines
from scripts.datasets.registry import make_dataset
from scripts.evaluation.cases import Case, eval_cases
from scripts.evaluation.metrics import psnr
from scripts.networks.warping import integrate_velocity, warp
from scripts.research.ceilings import (
    ceilings,
    register,
    registration_ceiling,
    scaled_ceiling,
    trajectory_ceiling,
)
from scripts.utils.errors import OutputExistsError


def texture() -> torch.Tensor:
    """(1, 1, 40, 40, 8) smooth random texture (noise averaged over 7^3 three times): features wide enough that a
    4-voxel shift is within reach of gradient descent."""
    noise = torch.rand(1, 1, 40, 40, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        noise = torch.nn.functional.avg_pool3d(noise, 7, stride=1, padding=3, count_include_pad=False)
    return (noise - noise.min()) / (noise.max() - noise.min())


def frame(dx: int, dy: int = 0) -> torch.Tensor:
    """(1, 1, 24, 24, 8) a window of the texture moved by (dx, dy) voxels: frame(x) = texture(x + 8 + dx, ...)."""
    return texture()[:, :, 8 + dx:32 + dx, 8 + dy:32 + dy]


def translating(ts, distance: int = 4) -> Case:
    """The texture translating ``distance`` voxels along x from I0 to I1, linearly in time (targets at the nearest
    whole voxel): the scaled oracle is exact where ``distance * t`` is whole."""
    ts = torch.tensor(ts)
    return Case(case="moving", i0=frame(0), i1=frame(distance),
                   targets=torch.cat([frame(round(distance * float(t))) for t in ts]), ts=ts,
                   frames=list(range(1, len(ts) + 1)))


def test_register_recovers_a_known_translation():
    """fixed(x) = moving(x + 2 e_x), so warp(moving, phi) = fixed needs phi = +2 e_x (away from the borders)."""
    phi = integrate_velocity(register(frame(0), frame(2), lambda_r=0.001, steps=300))
    inner = phi[0, :, 4:18, 4:20]
    assert inner[0].mean().item() == pytest.approx(2.0, abs=0.15)
    assert inner[1].abs().mean().item() < 0.15 and inner[2].abs().mean().item() < 0.15
    with torch.no_grad():
        assert psnr(warp(frame(0), phi), frame(2)).item() > psnr(frame(0), frame(2)).item() + 10


def test_oracles_beat_the_blend_on_linear_motion():
    subject = translating([0.25, 0.5, 0.75])
    t = subject.ts.view(-1, 1, 1, 1, 1)
    blend = psnr((1 - t) * subject.i0 + t * subject.i1, subject.targets)
    linear, _, fit = scaled_ceiling(subject, lambda_r=0.001, steps=150)
    registered = registration_ceiling(subject, lambda_r=0.001, steps=150)
    assert min(fit) > psnr(subject.i0, subject.i1).item() + 10  # I0 <-> I1 is a pure translation: registrable
    for k in range(3):
        assert linear[k] > blend[k].item() + 4  # linear motion: scaling the ED -> ES field is right
        assert registered[k] > blend[k].item() + 4


def test_trajectory_oracle_predicts_frames_it_did_not_see():
    """Fitted on t = 0.2 and 0.6 only, the scaled pair must place the texture right at t = 0.4 and 0.8."""
    subject = translating([0.2, 0.4, 0.6, 0.8], distance=5)
    oracle = trajectory_ceiling(subject, lambda_r=0.001, steps=150)
    t = torch.tensor([0.4, 0.8]).view(-1, 1, 1, 1, 1)
    held = subject.targets[1::2]
    baseline = psnr((1 - t) * subject.i0 + t * subject.i1, held).tolist()
    assert len(oracle) == 2 and min(o - b for o, b in zip(oracle, baseline)) > 4
    assert trajectory_ceiling(translating([0.5]), steps=1) == []  # nothing to hold out


def test_trajectory_oracle_ignores_what_only_the_endpoints_show():
    """I1 carries a bright blob no frame between shows (signal, not motion): the ED -> ES registration bends the
    field to explain it, the trajectory pair is fitted to the frames between and is not misled."""
    subject = translating([0.2, 0.4, 0.6, 0.8], distance=5)
    subject.i1 = subject.i1.clone()
    subject.i1[..., 6:18, 6:18, :] = 1.0
    linear, _, _ = scaled_ceiling(subject, lambda_r=0.001, steps=150)
    oracle = trajectory_ceiling(subject, lambda_r=0.001, steps=150)
    assert sum(oracle) / 2 > sum(linear[1::2]) / 2 + 1


def test_scaled_oracle_cannot_follow_motion_off_the_ed_es_path():
    """At t = 0.5 the texture has moved along y, off the ED -> ES line (x): only the per-frame oracle follows it."""
    subject = translating([0.5])
    subject.targets[:] = frame(2, 3)
    linear, _, _ = scaled_ceiling(subject, lambda_r=0.001, steps=150)
    registered = registration_ceiling(subject, lambda_r=0.001, steps=150)
    assert registered[0] > linear[0] + 5


def test_ceilings_writes_a_summary(tiny_acdc, tmp_path):
    out = tmp_path / "ceil"
    summary = ceilings(str(tiny_acdc), spatial_size=(24, 24, 8), steps=5, output_dir=str(out))
    assert json.loads((out / "summary.json").read_text()) == pytest.approx(summary)
    assert summary["frames"] > 0 and summary["steps"] == 5
    table = (out / "summary.md").read_text()
    names = ("blend", "registration", "scaled_linear", "scaled_profile", "ed_es_fit", "trajectory", "blend_heldout")
    for name in names:
        assert f"| {name} |" in table
    assert 0 < summary["heldout_frames"] == summary["frames"] // 2  # one series: its odd-numbered targets
    data = make_dataset("acdc", str(tiny_acdc), split="test", spatial_size=(24, 24, 8))
    (subject,) = eval_cases(data)
    held = psnr(baselines.blend(*subject.endpoints(len(subject.ts)), subject.ts), subject.targets)[1::2]
    assert summary["blend_heldout"] == pytest.approx(held.mean().item())
    with pytest.raises(OutputExistsError):
        ceilings(str(tiny_acdc), spatial_size=(24, 24, 8), steps=5, output_dir=str(out))


def test_profile_oracle_follows_motion_that_runs_ahead_of_t():
    """The texture moves 2, 3, 4 of its 4 voxels by t = 0.25, 0.5, 0.75 (fast, then at rest: not linear in t).
    Linear scaling of the ED -> ES field lags; the best fraction per frame (0.5, 0.75, 1.0, all on the grid) does
    not, and the time profile can only help: the grid holds linear scaling's own choices at t = 0.5."""
    subject = translating([0.25, 0.5, 0.75])
    subject.targets = torch.cat([frame(2), frame(3), frame(4)])
    linear, profile, _ = scaled_ceiling(subject, lambda_r=0.001, steps=150)
    assert len(profile) == 3
    assert profile[1] >= linear[1] - 0.01
    assert sum(profile) / 3 > sum(linear) / 3 + 4
    assert min(profile) > 35
