"""VoxelMorph baseline: velocities are its pre-integration fields; the loss, the training config, vm_linear."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run
from monai.losses import DiffusionLoss
from monai.networks.blocks import DVF2DDF, Warp

from scripts.baselines.linear import linear_scaling
from scripts.baselines.voxelmorph import (
    RegistrationBatch,
    RegistrationLoss,
    endpoint_pairs,
    velocities,
    voxelmorph_net,
)
from scripts.datasets.registry import make_dataset
from scripts.evaluation.cases import Case
from scripts.evaluation.methods import VoxelMorphLinear
from scripts.training.handlers import latest_checkpoint
from scripts.utils.checkpoint import load_weights
from scripts.utils.paths import ROOT

SIZE = (24, 24, 8)


def write_shifting_cases(root: Path, patients, frames: int = 6, es: int = 4) -> Path:
    """ACDC-layout cases whose frames are one smooth textured blob moving along axis 0 (2 voxels by ES, nonlinear
    in time); ED = frame 1, ES = frame ``es + 1`` (1-based)."""
    x, y, _ = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in SIZE], indexing="ij")
    for p in patients:
        phase = 0.7 * p
        series = []
        for f in range(frames):
            xx = x + 2.0 * np.sin(np.pi / 2 * f / es)
            series.append(100 + 30 * np.sin(0.3 * xx + phase) * np.cos(0.3 * y)
                          + 80 * np.exp(-((xx - 12) ** 2 + (y - 12) ** 2) / 18))
        case = root / f"patient{p:03d}"
        case.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.stack(series, -1).astype(np.float32), np.eye(4)), case / f"{case.name}_4d.nii.gz")
        (case / "Info.cfg").write_text(f"ED: 1\nES: {es + 1}\nNbFrame: {frames}\n")
    return root


@pytest.fixture(scope="module")
def shifting(tmp_path_factory) -> Path:
    return write_shifting_cases(tmp_path_factory.mktemp("acdc"), [1, 2, 3, 4, 91])


def test_fresh_network_starts_at_identity():
    net = voxelmorph_net()
    i0, i1 = torch.rand(1, 1, *SIZE), torch.rand(1, 1, *SIZE)
    warped, ddf = net(i0, i1)
    assert ddf.abs().max() < 1e-3
    assert torch.allclose(warped, i0, atol=1e-3)


@pytest.mark.parametrize("size", [SIZE, (20, 18, 7)])
def test_velocities_are_the_fields_voxelmorph_integrates(size):
    net = voxelmorph_net(flow_init_std=0.05).eval()  # a non-trivial velocity head
    i0, i1 = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    with torch.no_grad():
        v01, v10 = velocities(net, i0, i1)
        assert v01.shape == v10.shape == (2, 3, *size)
        assert v01.abs().max() > 0.05
        if size == SIZE:  # sizes the backbone takes: exactly VoxelMorph's own fields, both directions
            assert torch.allclose(net.dvf2ddf(v01), net(i0, i1)[1], atol=1e-6)
            assert torch.allclose(net.dvf2ddf(v10), net(i1, i0)[1], atol=1e-6)
        else:  # other sizes: the backbone on the replicate-padded pair, cropped back
            padded = torch.nn.functional.pad(torch.cat([i0, i1], 1), (0, 1, 0, 6, 0, 4), mode="replicate")
            assert torch.allclose(v01, net.backbone(padded)[..., :20, :18, :7], atol=1e-6)


def test_registration_loss_is_mse_plus_weighted_diffusion():
    fixed, warped = torch.rand(1, 1, *SIZE), torch.rand(1, 1, *SIZE)
    x = torch.arange(SIZE[0], dtype=torch.float32).reshape(1, 1, -1, 1, 1)
    ddf = torch.cat([(0.1 * x**2).expand(1, 1, *SIZE), torch.zeros(1, 2, *SIZE)], 1)  # curved: diffusion > 0
    mse = float(((warped - fixed) ** 2).mean())
    smooth = float(DiffusionLoss()(ddf))
    assert smooth > 0
    assert float(RegistrationLoss(0.0)((warped, ddf), fixed)) == pytest.approx(mse, rel=1e-6)
    assert float(RegistrationLoss(0.5)((warped, ddf), fixed)) == pytest.approx(mse + 0.5 * smooth, rel=1e-6)


def test_batch_registers_i0_onto_i1():
    image = torch.rand(2, 2, *SIZE)
    moving, fixed, args, kwargs = RegistrationBatch()({"image": image, "target": image[:, :1]})
    assert torch.equal(moving, image[:, :1]) and torch.equal(fixed, image[:, 1:])
    assert len(args) == 1 and torch.equal(args[0], fixed) and kwargs == {}


def test_endpoint_pairs_keeps_one_item_per_case(shifting):
    dataset = make_dataset("acdc", shifting, "train", spatial_size=SIZE)
    assert len(dataset) == 4 * 3  # 4 cases, frames 2..4 between ED and ES
    pairs = endpoint_pairs(dataset)
    assert [item["case"] for item in pairs] == [f"patient{p:03d}" for p in (1, 2, 3, 4)]
    assert [item["frame"] for item in pairs] == [1, 1, 1, 1]


def _mean_loss(network, pairs) -> float:
    loss = RegistrationLoss(0.01)
    with torch.no_grad():
        return float(np.mean([float(loss(network(p["image"][None, :1], p["image"][None, 1:]), p["image"][None, 1:]))
                              for p in pairs]))


def test_training_config_reduces_the_loss_and_writes_weights(shifting, tmp_path):
    out = tmp_path / "vm"
    overrides = {"bundle_root": str(ROOT), "dataset_dir": str(shifting), "output_dir": str(out),
                 "spatial_size": list(SIZE), "num_epochs": 2, "learning_rate": 1e-3, "augment": False,
                 "device": "$torch.device('cpu')"}
    run(config_file=str(ROOT / "configs" / "train_voxelmorph.json"), **overrides)
    assert (out / "voxelmorph.pt").is_file() and list(out.glob("last_checkpoint_*.pt"))
    pairs = endpoint_pairs(make_dataset("acdc", shifting, "train", spatial_size=SIZE))
    before = _mean_loss(voxelmorph_net(), pairs)  # a fresh network is the identity map: loss = MSE(I0, I1)
    after = _mean_loss(load_weights(voxelmorph_net(), out / "voxelmorph.pt"), pairs)
    assert after < 0.7 * before

    # resuming: one more epoch continues from the checkpoint (8 iterations so far, 4 more)
    run(config_file=str(ROOT / "configs" / "train_voxelmorph.json"), **{**overrides, "num_epochs": 3})
    assert latest_checkpoint(out).name == "last_checkpoint_12.pt"


def _subject(i0, i1, ts) -> Case:
    n = len(ts)
    return Case("case", i0, i1, torch.zeros(n, 1, *i0.shape[2:]), torch.tensor(ts), list(range(n)))


def test_vm_linear_scales_the_model_velocities(tmp_path):
    net = voxelmorph_net(flow_init_std=0.05)
    torch.save(net.state_dict(), tmp_path / "vm.pt")
    method = VoxelMorphLinear(voxelmorph_net(), tmp_path / "vm.pt", max_batch=2)
    method.setup(torch.device("cpu"))
    i0, i1 = torch.rand(1, 1, *SIZE), torch.rand(1, 1, *SIZE)
    subject = _subject(i0, i1, [0.0, 0.3, 0.8])
    state = method.prepare(subject)
    pred = method.predict(subject, state)
    with torch.no_grad():
        v01, v10 = velocities(net.eval(), i0, i1)
        grow = lambda x: x.expand(3, -1, -1, -1, -1)  # noqa: E731
        ts = torch.tensor([0.0, 0.3, 0.8])
        expected = linear_scaling(grow(i0), grow(i1), grow(v01), grow(v10), ts, velocity=True)
        assert torch.allclose(pred, expected, atol=1e-6)
        assert torch.allclose(pred[0], i0[0], atol=1e-6)  # t = 0: I0 itself
        assert not torch.allclose(pred[1], (0.7 * i0 + 0.3 * i1)[0], atol=1e-3)  # the fields matter
        # the displacement I0 -> I_t is exp(t v01): at t = 1 it would be VoxelMorph's own ddf
        phi = method.displacement(_subject(i0, i1, [0.3, 1.0]), state)
        assert torch.allclose(phi[0:1], DVF2DDF(7, "bilinear", "zeros")(0.3 * v01), atol=1e-6)
        assert torch.allclose(Warp(padding_mode="zeros")(i0, phi[1:2]), net(i0, i1)[0], atol=1e-5)


def test_vm_linear_is_unavailable_without_weights(tmp_path):
    from scripts.evaluation.methods import MethodUnavailable

    with pytest.raises(MethodUnavailable, match="not found"):
        VoxelMorphLinear(voxelmorph_net(), tmp_path / "missing.pt").setup(torch.device("cpu"))
