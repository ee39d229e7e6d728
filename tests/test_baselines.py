"""Baselines: blend endpoints, linear scaling against exact shifted images, elastix on a known shift."""

import sys

import numpy as np
import pytest
import torch

from scripts.baselines import elastix, linear
from scripts.utils.errors import InputError


def textured_volume(shape=(16, 8, 6), shift=0.0):
    """A smooth textured volume f(x0 + shift, x1, x2), (1, 1, *shape), values in [0, 1]."""
    x, y, z = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    x = x + shift
    return (0.5 + 0.25 * torch.sin(0.7 * x) * torch.cos(0.5 * y) + 0.2 * torch.sin(0.3 * x + 0.9 * z))[None, None]


def constant_field(vector, like):
    return torch.tensor(vector, dtype=like.dtype).reshape(1, 3, 1, 1, 1).expand(like.shape[0], 3, *like.shape[2:])


def test_blend_returns_endpoints_exactly_and_weighs_per_item():
    i0, i1 = torch.rand(2, 1, 4, 3, 2), torch.rand(2, 1, 4, 3, 2)
    assert torch.equal(linear.blend(i0, i1, 0.0), i0)
    assert torch.equal(linear.blend(i0, i1, 1.0), i1)
    out = linear.blend(i0, i1, torch.tensor([0.25, 0.5]))
    assert torch.allclose(out[0], 0.75 * i0[0] + 0.25 * i1[0])
    assert torch.allclose(out[1], 0.5 * (i0[1] + i1[1]))


def test_t_must_be_in_unit_interval_and_match_batch():
    i0 = torch.rand(2, 1, 4, 3, 2)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        linear.blend(i0, i0, 1.5)
    with pytest.raises(InputError, match="one per batch item"):
        linear.blend(i0, i0, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("velocity", [False, True])
def test_linear_scaling_with_zero_fields_is_blend(velocity):
    i0, i1 = torch.rand(1, 1, 6, 5, 4), torch.rand(1, 1, 6, 5, 4)
    zero = torch.zeros(1, 3, 6, 5, 4)
    out = linear.linear_scaling(i0, i1, zero, zero, 0.3, velocity=velocity)
    assert torch.allclose(out, linear.blend(i0, i1, 0.3), atol=1e-6)


@pytest.mark.parametrize("velocity", [False, True])
def test_linear_scaling_of_constant_shift_gives_the_shifted_image(velocity):
    # I1(x) = I0(x + 4 e0): ddf_01 = +4 e0, ddf_10 = -4 e0; at t = 0.25 both warped endpoints are I0(x + e0)
    # (integer shifts, so bilinear sampling is exact away from the border); swapping the roles of t and 1 - t
    # would give I0(x + 3 e0)
    i0, i1 = textured_volume(), textured_volume(shift=4.0)
    ddf_01, ddf_10 = constant_field([4.0, 0, 0], i0), constant_field([-4.0, 0, 0], i0)
    out = linear.linear_scaling(i0, i1, ddf_01, ddf_10, 0.25, velocity=velocity)
    expected = textured_volume(shift=1.0)
    # the zero-padded scaling and squaring loses the constant field within a few voxels of the x0 border
    interior = slice(6, 11) if velocity else slice(3, 15)
    assert torch.allclose(out[:, :, interior], expected[:, :, interior], atol=1e-5)
    assert not torch.allclose(out[:, :, interior], textured_volume(shift=3.0)[:, :, interior], atol=1e-2)


def test_linear_scaling_checks_field_shapes():
    i0 = torch.rand(1, 1, 6, 5, 4)
    with pytest.raises(InputError, match="field_10"):
        linear.linear_scaling(i0, i0, torch.zeros(1, 3, 6, 5, 4), torch.zeros(1, 3, 6, 5, 3), 0.5)


def test_missing_elastix_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "itk", None)  # makes `import itk` raise ImportError
    with pytest.raises(ImportError, match=r"pip install itk-elastix==0\.25\.4"):
        elastix.elastix_ddf(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)))


def blob(shift_z, shape=(28, 24, 16)):
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    z = z - shift_z
    texture = 0.5 + 0.5 * np.sin(0.9 * x) * np.sin(0.8 * y) * np.sin(0.7 * z)
    return (np.exp(-((x - 14) ** 2 / 40 + (y - 12) ** 2 / 30 + (z - 8) ** 2 / 10)) * texture).astype(np.float32)


def test_elastix_recovers_a_known_shift_in_voxels_and_our_axis_order():
    itk = pytest.importorskip("itk")
    if not hasattr(itk, "ElastixRegistrationMethod"):
        pytest.skip("itk-elastix is not installed")
    # I1 is I0 moved by +2 voxels along axis 2 (2 mm voxels there): I1(x) = I0(x - 2 e2), so ddf_01 = -2 e2 voxels
    # (a wrong axis order puts it in channel 0, a missing mm -> voxel conversion makes it -4). Mean squares: the
    # volumes differ by a shift only and are small, where mutual information is less precise.
    i0, i1 = (torch.from_numpy(blob(s))[None, None] for s in (0.0, 2.0))
    ddf_01, ddf_10 = elastix.elastix_fields(i0, i1, spacing=(1.0, 1.0, 2.0), metric="AdvancedMeanSquares")
    centre = (slice(None), slice(None), slice(10, 18), slice(8, 16), slice(5, 11))
    for ddf, expected in ((ddf_01, -2.0), (ddf_10, 2.0)):
        target = torch.tensor([0.0, 0.0, expected]).reshape(1, 3, 1, 1, 1)
        assert (ddf[centre] - target).abs().max() < 0.5
    mid = linear.linear_scaling(i0, i1, ddf_01, ddf_10, 0.5)
    truth = torch.from_numpy(blob(1.0))[None, None]
    assert (mid - truth)[centre].abs().mean() < 0.25 * (linear.blend(i0, i1, 0.5) - truth)[centre].abs().mean()
