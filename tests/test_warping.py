"""scripts/networks/warping.py against hand-computed shifts, analytic warps, Euler integration and MONAI itself;
the cubic image warp against exact polynomials and the bilinear warp's blur."""

import math

import pytest
import torch
from monai.networks.blocks import DVF2DDF, Warp
from torch.nn import functional as F

from scripts.networks.warping import integrate_velocity, resize_field, warp, warp_cubic

# grid_sample works in normalised coordinates, so voxel positions come back with float32 rounding
# (about 1e-6 at these sizes; MONAI Warp behaves the same)
ROUNDING = 1e-5


def grid(size):
    """(3, X, Y, Z) voxel coordinates."""
    return torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in size], indexing="ij"))


def smooth_field(size, amplitude, batch=1, seed=0):
    """Random smooth field (B, 3, *size) vanishing towards the border, max |component| = amplitude."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, 3, 3, 3, generator=g)
    field = F.interpolate(coarse, size=size, mode="trilinear", align_corners=True)
    bump = torch.ones(size)
    for axis, s in enumerate(size):
        profile = torch.sin(math.pi * (torch.arange(s) + 0.5) / s) ** 2
        bump = bump * profile.view([-1 if a == axis else 1 for a in range(3)])
    field = field * bump
    return field * amplitude / field.abs().amax()


@pytest.mark.parametrize("size", [(16, 16, 8), (37, 45, 19), (5, 7, 1)])
def test_zero_field_is_identity(size):
    image = torch.rand(2, 3, *size)
    zero = torch.zeros(2, 3, *size)
    assert torch.equal(integrate_velocity(zero), zero)
    torch.testing.assert_close(warp(image, zero), image, atol=ROUNDING, rtol=0)


def test_constant_integer_shift_moves_image_exactly():
    image = torch.rand(2, 1, 12, 10, 8)
    ddf = torch.tensor([2.0, -1.0, 3.0]).view(1, 3, 1, 1, 1).expand(2, 3, 12, 10, 8)
    out = warp(image, ddf)
    # out(x, y, z) = image(x + 2, y - 1, z + 3) wherever that is inside
    torch.testing.assert_close(out[:, :, :10, 1:, :5], image[:, :, 2:, :9, 3:], atol=ROUNDING, rtol=0)
    # border padding: beyond the last slice the last slice is repeated
    torch.testing.assert_close(
        out[:, :, 10:, 1:, :5], image[:, :, 11:, :9, 3:].expand(-1, -1, 2, -1, -1), atol=ROUNDING, rtol=0
    )


def test_smooth_displacement_matches_analytic_warp():
    size = (40, 36, 20)

    def f(p):
        return torch.sin(2 * math.pi * p[0] / 40) * torch.cos(2 * math.pi * p[1] / 36) + 0.5 * torch.sin(math.pi * p[2] / 20)

    x = grid(size)
    ddf = torch.stack(
        [
            3.0 * torch.sin(2 * math.pi * x[1] / 36),
            2.0 * torch.cos(2 * math.pi * x[2] / 20),
            1.0 * torch.ones(size),
        ]
    )
    out = warp(f(x)[None, None], ddf[None])[0, 0]
    expected = f(x + ddf)
    inner = (slice(4, -4), slice(3, -3), slice(2, -2))  # where x + ddf stays inside
    error = (out - expected)[inner].abs().max()
    change = (expected - f(x))[inner].abs().max()
    assert change > 0.4
    assert error < 0.01


def test_scaling_and_squaring_matches_euler_integration():
    size = (24, 20, 12)
    velocity = smooth_field(size, amplitude=2.0)
    steps = 256
    displacement = torch.zeros_like(velocity)
    for _ in range(steps):  # dx/dt = v(x), x(0) = grid point, t in [0, 1]
        displacement = displacement + warp(velocity, displacement) / steps
    phi = integrate_velocity(velocity)
    assert displacement.abs().max() > 1.5
    torch.testing.assert_close(phi, displacement, atol=0.03, rtol=0)


def test_inverse_composition_is_close_to_identity():
    velocity = smooth_field((24, 20, 12), amplitude=1.0, batch=2)
    forward, backward = integrate_velocity(velocity), integrate_velocity(-velocity)
    composed = forward + warp(backward, forward)  # x -> x + phi(x) -> then the inverse transform
    assert forward.abs().max() > 0.8
    # residual of 7-step S&S with bilinear resampling (grows with the field's gradient, here ~0.3)
    assert composed.abs().max() < 0.08
    assert composed.abs().mean() < 0.002


def test_matches_monai_warp_and_dvf2ddf():
    velocity = smooth_field((20, 23, 9), amplitude=3.0, batch=2)
    image = torch.rand(2, 2, 20, 23, 9)
    torch.testing.assert_close(warp(image, velocity), Warp("bilinear", "border")(image, velocity), atol=1e-5, rtol=0)
    torch.testing.assert_close(integrate_velocity(velocity), DVF2DDF(num_steps=7)(velocity), atol=1e-4, rtol=0)
    flat = torch.randn(1, 3, 1, 6, 5)  # a singleton axis maps to -1 in both
    torch.testing.assert_close(integrate_velocity(flat), DVF2DDF(num_steps=7)(flat), atol=1e-5, rtol=0)


def test_resize_field_rescales_vectors():
    half = torch.ones(1, 3, 8, 6, 4)
    torch.testing.assert_close(resize_field(half, (16, 12, 8)), torch.full((1, 3, 16, 12, 8), 2.0))
    anisotropic = resize_field(half, (16, 6, 12))
    assert anisotropic.shape == (1, 3, 16, 6, 12)
    torch.testing.assert_close(anisotropic[0, :, 3, 2, 5], torch.tensor([2.0, 1.0, 3.0]))
    same = torch.randn(1, 3, 8, 6, 4)
    assert torch.equal(resize_field(same, (8, 6, 4)), same)


def test_resized_coarse_field_warps_like_fine_field():
    """A linear deformation expressed on a half-resolution grid and resized warps like the full-res one."""
    fine_size, coarse_size = (32, 24, 16), (16, 12, 8)
    # displacement 0.1 * x along axis 0 in full-res voxels: in half-res voxels u(X) = 0.1 * (X + 0.25)
    xc = grid(coarse_size)
    coarse = torch.zeros(1, 3, *coarse_size)
    coarse[0, 0] = 0.1 * (xc[0] + 0.25)  # half-res voxel X has centre at full-res 2X + 0.5
    xf = grid(fine_size)
    fine = torch.zeros(1, 3, *fine_size)
    fine[0, 0] = 0.1 * xf[0]
    resized = resize_field(coarse, fine_size)
    torch.testing.assert_close(resized[:, :, 1:-1], fine[:, :, 1:-1], atol=1e-5, rtol=0)


def test_autocast_keeps_float32():
    velocity = smooth_field((16, 16, 8), amplitude=2.0)
    image = torch.rand(1, 1, 16, 16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        phi = integrate_velocity(velocity.bfloat16())
        out = warp(image.bfloat16(), phi)
    assert phi.dtype == out.dtype == torch.float32
    torch.testing.assert_close(phi, integrate_velocity(velocity.bfloat16().float()))


@pytest.mark.parametrize("size", [(16, 16, 8), (9, 7, 1)])
def test_cubic_warp_of_whole_voxels_is_exact(size):
    image = torch.rand(2, 3, *size)
    torch.testing.assert_close(warp_cubic(image, torch.zeros(2, 3, *size)), image, atol=1e-6, rtol=0)
    ddf = torch.tensor([2.0, -1.0, 0.0]).view(1, 3, 1, 1, 1).expand(2, 3, *size)
    out = warp_cubic(image, ddf)
    torch.testing.assert_close(out[:, :, : size[0] - 2, 1:], image[:, :, 2:, : size[1] - 1], atol=1e-6, rtol=0)
    # border padding: beyond the last row the last row is repeated, as in warp
    torch.testing.assert_close(out[:, :, size[0] - 2 :, 1:], warp(image, ddf)[:, :, size[0] - 2 :, 1:],
                               atol=ROUNDING, rtol=0)


def test_cubic_warp_interpolates_quadratics_in_plane_exactly_and_bilinear_does_not():
    size = (20, 18, 6)
    x = grid(size)
    image = (0.02 * (x[0] - 7.3) ** 2 - 0.03 * (x[0] - 2) * (x[1] - 9) + 0.01 * x[1] ** 2)[None, None]
    ddf = torch.stack([torch.full(size, 0.37), torch.full(size, -0.61), torch.zeros(size)])[None]
    expected = image[0, 0].clone()
    p = x + ddf[0]
    expected = 0.02 * (p[0] - 7.3) ** 2 - 0.03 * (p[0] - 2) * (p[1] - 9) + 0.01 * p[1] ** 2
    inner = (slice(2, -3), slice(3, -2))  # the 4 x 4 neighbourhood stays inside
    cubic_error = (warp_cubic(image, ddf)[0, 0] - expected)[inner].abs().max()
    bilinear_error = (warp(image, ddf)[0, 0] - expected)[inner].abs().max()
    assert cubic_error < 1e-4
    assert bilinear_error > 0.005


def test_cubic_warp_keeps_the_detail_a_half_voxel_bilinear_warp_blurs():
    """A stripe pattern of period 4 voxels shifted by half a voxel: bilinear loses 29 % of its amplitude."""
    size = (32, 8, 4)
    x = grid(size)
    image = torch.sin(2 * math.pi * x[0] / 4)[None, None]
    ddf = torch.zeros(1, 3, *size)
    ddf[:, 0] = 0.5
    expected = torch.sin(2 * math.pi * (x[0] + 0.5) / 4)
    inner = slice(2, -3)
    assert (warp(image, ddf)[0, 0] - expected)[inner].abs().max() > 0.2  # 0.5 where 0.71 is due
    assert (warp_cubic(image, ddf)[0, 0] - expected)[inner].abs().max() < 0.09


def test_cubic_warp_is_linear_through_plane():
    image = torch.rand(1, 1, 6, 5, 4)
    ddf = torch.zeros(1, 3, 6, 5, 4)
    ddf[:, 2] = 0.25
    expected = 0.75 * image[..., :3] + 0.25 * image[..., 1:]
    torch.testing.assert_close(warp_cubic(image, ddf)[..., :3], expected, atol=1e-6, rtol=0)


def test_cubic_warp_gradient_reaches_the_field():
    image = torch.rand(1, 2, 6, 5, 3, dtype=torch.float64)
    ddf = (0.2 + 0.6 * torch.rand(1, 3, 6, 5, 3, dtype=torch.float64)).requires_grad_()  # away from whole voxels
    assert torch.autograd.gradcheck(lambda d: warp_cubic(image, d), (ddf,))
