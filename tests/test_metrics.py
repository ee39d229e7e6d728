"""Metrics against hand-computed values and direct (loop) references on tiny volumes."""

import itertools
import math

import numpy as np
import pytest
import torch

from scripts.evaluation import metrics as M
from scripts.utils.errors import InputError


def textured(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def ncc_reference(p: np.ndarray, g: np.ndarray, win=9, eps=1e-5) -> np.ndarray:
    """UVI-Net's local squared NCC written from its definition, one voxel at a time."""
    r = win // 2
    pp, gp = np.pad(p, r), np.pad(g, r)
    out = np.zeros(p.shape)
    for x, y, z in itertools.product(*map(range, p.shape)):
        wp, wg = pp[x : x + win, y : y + win, z : z + win], gp[x : x + win, y : y + win, z : z + win]
        dp, dg = wp - wp.mean(), wg - wg.mean()
        out[x, y, z] = (dp * dg).sum() ** 2 / ((dp**2).sum() * (dg**2).sum() + eps)
    return out


def ssim_reference(p: np.ndarray, g: np.ndarray, win=11, sigma=1.5, c1=1e-4, c2=9e-4) -> np.ndarray:
    """SSIM map with Gaussian-weighted local statistics over the zero-padded volumes, one voxel at a time."""
    r = win // 2
    k = np.exp(-((np.arange(win) - r) ** 2) / (2 * sigma**2))
    w = np.einsum("i,j,k->ijk", k, k, k)
    w /= w.sum()
    pp, gp = np.pad(p, r), np.pad(g, r)
    out = np.zeros(p.shape)
    for x, y, z in itertools.product(*map(range, p.shape)):
        wp, wg = pp[x : x + win, y : y + win, z : z + win], gp[x : x + win, y : y + win, z : z + win]
        mp, mg = (w * wp).sum(), (w * wg).sum()
        vp, vg, cov = (w * wp * wp).sum() - mp**2, (w * wg * wg).sum() - mg**2, (w * wp * wg).sum() - mp * mg
        out[x, y, z] = (2 * mp * mg + c1) * (2 * cov + c2) / ((mp**2 + mg**2 + c1) * (vp + vg + c2))
    return out


def test_psnr_of_constant_error_is_20_db():
    gt = torch.full((2, 1, 5, 4, 3), 0.5)
    assert torch.allclose(M.psnr(gt + 0.1, gt), torch.tensor([20.0, 20.0], dtype=torch.float64), atol=1e-5)


def test_psnr_per_batch_item():
    gt = torch.zeros(2, 1, 4, 4, 4)
    pred = gt.clone()
    pred[0] += 0.1
    pred[1] += 0.01
    assert torch.allclose(M.psnr(pred, gt), torch.tensor([20.0, 40.0], dtype=torch.float64), atol=1e-4)


def test_nmse_hand_example():
    gt = torch.full((1, 1, 3, 3, 2), 0.5)
    pred = gt.clone()
    pred[0, 0, 0, 0, 0] = 0.8  # one voxel off by 0.3: 100 * 0.09 / (18 * 0.25) = 2
    assert M.nmse(pred, gt).item() == pytest.approx(2.0)


def test_ncc_matches_loop_reference():
    g = textured((6, 5, 7))
    p = 0.7 * g + 0.3 * textured((6, 5, 7), seed=1)
    expected = ncc_reference(p.numpy(), g.numpy())
    got = M.local_ncc_map(p[None, None], g[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert M.ncc(p[None, None], g[None, None]).item() == pytest.approx(expected.mean())


def test_ncc_of_identical_and_scaled_textured_images_is_one():
    g = textured((1, 1, 12, 12, 10))
    assert M.ncc(g, g).item() == pytest.approx(1.0, abs=1e-6)
    assert M.ncc(0.5 * g, g).item() == pytest.approx(1.0, abs=1e-6)


def test_ncc_of_affine_intensity_transform_is_one_where_windows_avoid_padding():
    g = textured((1, 1, 12, 12, 10))
    interior = M.local_ncc_map(0.5 * g + 0.2, g)[..., 4:-4, 4:-4, 4:-4]
    assert torch.allclose(interior, torch.ones_like(interior), atol=1e-6)


def test_ncc_eps_is_added_to_the_variance_product():
    # the centre voxel's window is the whole 9^3 volume: value = var^2 / (var^2 + 1e-5) for identical volumes;
    # a low-contrast texture gives ~0.05 (MONAI's LNCC, which clamps each variance at 1e-5 instead, gives 1)
    g = 0.5 + 1e-3 * (2 * textured((9, 9, 9)) - 1)
    var = float(((g - g.mean()) ** 2).sum())
    centre = M.local_ncc_map(g[None, None], g[None, None])[0, 0, 4, 4, 4].item()
    assert centre == pytest.approx(var**2 / (var**2 + 1e-5), rel=1e-9)
    assert centre < 0.1


def test_ssim_of_identical_images_is_one():
    g = textured((1, 1, 9, 8, 6)).float()
    assert M.ssim(g, g).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_zero_padded_reference_on_volume_thinner_than_window():
    g = textured((6, 7, 5))
    p = (g + 0.2 * (textured((6, 7, 5), seed=2) - 0.5)).clamp(0, 1)
    expected = ssim_reference(p.numpy(), g.numpy())
    got = M.ssim_map(p[None, None], g[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert M.ssim(p[None, None], g[None, None]).item() == pytest.approx(expected.mean(), abs=2e-6)


def test_image_metrics_takes_arrays_and_one_volume():
    g = textured((1, 1, 8, 8, 6))
    p = (g + 0.05).clamp(0, 1)
    out = M.image_metrics(p[0, 0].numpy(), g[0, 0].numpy())
    assert set(out) == set(M.IMAGE_METRICS)
    assert out["psnr"] == pytest.approx(M.psnr(p, g).item())
    assert out["nmse"] == pytest.approx(M.nmse(p, g).item())
    assert out["ssim"] == pytest.approx(M.ssim(p, g).item())
    assert out["ncc"] == pytest.approx(M.ncc(p, g).item())
    with pytest.raises(InputError, match="one single-channel volume"):
        M.image_metrics(torch.cat([p, p]), torch.cat([g, g]))
    with pytest.raises(InputError, match="differs from gt"):
        M.image_metrics(p, g[..., :-1])


def test_endpoint_error_of_constant_offset():
    truth = torch.randn(2, 3, 4, 5, 3)
    offset = torch.tensor([3.0, 4.0, 0.0]).reshape(1, 3, 1, 1, 1)
    assert torch.allclose(M.endpoint_error(truth + offset, truth), torch.full((2,), 5.0, dtype=torch.float64))
    in_mm = M.endpoint_error(truth + offset, truth, spacing=(2.0, 1.0, 1.0))
    assert torch.allclose(in_mm, torch.full((2,), math.sqrt(52.0), dtype=torch.float64))


def test_jacobian_of_identity_is_one():
    det = M.jacobian_determinant(torch.zeros(1, 3, 4, 3, 2))
    assert torch.equal(det, torch.ones(1, 4, 3, 2, dtype=torch.float64))
    assert M.folding_fraction(torch.zeros(1, 3, 4, 3, 2)).item() == 0.0


def test_jacobian_of_linear_field_is_det_of_identity_plus_matrix():
    a = torch.tensor([[0.2, -0.1, 0.3], [0.05, -0.4, 0.1], [0.3, 0.2, 0.1]], dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in (5, 4, 3)], indexing="ij"))
    ddf = torch.einsum("ij,jxyz->ixyz", a, grid)[None]  # u(x) = A x, exact under any finite difference
    det = M.jacobian_determinant(ddf)
    assert torch.allclose(det, torch.linalg.det(torch.eye(3, dtype=torch.float64) + a).expand(1, 5, 4, 3))


def test_folding_fraction_counts_planes_with_nonpositive_det():
    # u_0 = -x0^2 / 4 along 8 voxels: det = 1 - x0 / 2 inside (central differences), one-sided at the ends:
    # x0 = 0: 0.75, 1: 0.5, 2: 0 (folded), 3..6: < 0, 7: 1 + (u(7) - u(6)) = -2.25  -> 6 of 8 planes
    x0 = torch.arange(8, dtype=torch.float64)
    ddf = torch.zeros(1, 3, 8, 3, 2, dtype=torch.float64)
    ddf[0, 0] = (-(x0**2) / 4).reshape(8, 1, 1)
    det = M.jacobian_determinant(ddf)[0, :, 0, 0]
    assert torch.allclose(det, torch.tensor([0.75, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.25], dtype=torch.float64))
    assert M.folding_fraction(ddf).item() == pytest.approx(0.75)


def test_summarise_weighs_each_subject_frame_equally():
    rows = [{"method": "ours", "subject": "A", "frame": f, "psnr": 30.0, "ncc": 0.5, "ssim": 0.9, "nmse": 1.0} for f in (1, 2, 3)]
    rows.append({"method": "ours", "subject": "B", "frame": 1, "psnr": "10", "ncc": 0.1, "ssim": 0.5, "nmse": 5.0})
    rows.append({"method": "blend", "subject": "A", "frame": 1, "psnr": 20.0, "ncc": 0.4, "ssim": 0.8, "nmse": 2.0})
    summary = M.summarise(rows)
    assert summary["ours"]["psnr"] == pytest.approx(25.0)  # per-subject means first would give 20
    assert summary["ours"]["psnr_std"] == pytest.approx(np.std([30, 30, 30, 10]))
    assert summary["ours"]["nmse"] == pytest.approx(2.0)
    assert summary["ours"]["n"] == 4
    assert summary["blend"] == {
        "psnr": 20.0, "psnr_std": 0.0, "ncc": 0.4, "ncc_std": 0.0, "ssim": 0.8, "ssim_std": 0.0,
        "nmse": 2.0, "nmse_std": 0.0, "n": 1,
    }  # fmt: skip


def test_summarise_rejects_duplicate_and_incomplete_rows():
    row = {"method": "ours", "subject": "A", "frame": 1, "psnr": 30.0, "ncc": 0.5, "ssim": 0.9, "nmse": 1.0}
    with pytest.raises(InputError, match="appears twice"):
        M.summarise([row, dict(row)])
    with pytest.raises(InputError, match="missing epe"):
        M.summarise([row], metrics=(*M.IMAGE_METRICS, "epe"))


def test_paper_ssim_accumulates_mean_over_items():
    from scripts.evaluation.metrics import PaperSSIM, ssim

    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(3, 1, 12, 12, 6, generator=g), torch.rand(3, 1, 12, 12, 6, generator=g)
    metric = PaperSSIM()
    metric(a[:2], b[:2])
    metric(a[2:], b[2:])
    assert float(metric.aggregate()) == pytest.approx(float(ssim(a, b).mean()), rel=1e-6)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-6)
