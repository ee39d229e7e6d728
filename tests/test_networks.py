"""TMSDF teacher/student: shapes, ablation switches, time handling, series inference, tracing, overfitting."""

import math

import pytest
import torch

from scripts.networks import DFM, MSDF, Student, Teacher, TimeModulation
from scripts.networks.time_modulation import sinusoidal_embedding
from scripts.networks.tmsdf import pad_to_multiple
from scripts.networks.warping import resize_field, warp, warp_cubic

ROUNDING = 1e-5  # grid_sample's normalised coordinates: an identity warp is exact to float32 rounding
SMALL = dict(channels=(8, 16, 16, 16), def_channels=(8, 8, 16, 16), refine_channels=(8, 8, 16, 16))


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def perturb(net, scale=0.05, seed=1):
    """Move every parameter off its initial value (zero-initialised heads and modulations included)."""
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.add_(torch.randn(p.shape, generator=g) * scale)
    return net


@pytest.mark.parametrize("cls, inputs", [(Teacher, 3), (Student, 2)])
@pytest.mark.parametrize("size", [(37, 45, 19), (16, 16, 8)])
def test_shapes_any_size_and_batch(cls, inputs, size):
    net = cls().eval()
    x = torch.rand(2, inputs, *size)
    with torch.no_grad():
        assert net(x, torch.tensor([0.2, 0.7])).shape == (2, 1, *size)
        out = net.forward_intermediates(x, 0.3)
    assert out.pred.shape == (2, 1, *size)
    scales = [[math.ceil(s / 2**k) for s in size] for k in (3, 2, 1, 0)]
    for name in ("warped0", "warped1"):
        assert [tuple(w.shape) for w in getattr(out, name)] == [(2, 1, *size)] * 4
    for name in ("phi0", "phi1", "velocity0", "velocity1"):
        assert [tuple(w.shape) for w in getattr(out, name)] == [(2, 3, *s) for s in scales]
    assert out.dfm_weights[0] is None
    assert [tuple(w.shape) for w in out.dfm_weights[1:]] == [(2, 2, i, *s) for i, s in zip((2, 3, 4), scales[1:])]


@pytest.mark.parametrize("cls, inputs", [(Teacher, 3), (Student, 2)])
def test_batch_items_are_independent(cls, inputs):
    """Item b of a batch (with its own t) equals running it alone: the direction stacking keeps items apart."""
    net = perturb(cls(**SMALL)).eval()
    x, t = torch.rand(3, inputs, 13, 11, 9), torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        together = net.forward_intermediates(x, t)
        for b in range(3):
            alone = net.forward_intermediates(x[b : b + 1], t[b : b + 1])
            torch.testing.assert_close(together.pred[b : b + 1], alone.pred, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(together.phi1[3][b : b + 1], alone.phi1[3], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(together.dfm_weights[2][b : b + 1], alone.dfm_weights[2], atol=1e-5, rtol=1e-4)


def test_intermediates_warp_endpoints_at_full_size_with_resized_fields():
    """I_kt_i = I_k warped by Phi_kt_i resized to full size (vectors scaled), for every scale i."""
    net = perturb(Student(**SMALL)).eval()
    x = torch.rand(1, 2, 16, 16, 8)
    with torch.no_grad():
        out = net.forward_intermediates(x, 0.4)
    for i in range(4):
        assert out.phi0[i].abs().max() > 0.05
        for k, (warped, phi) in enumerate([(out.warped0[i], out.phi0[i]), (out.warped1[i], out.phi1[i])]):
            expected = warp(x[:, k : k + 1], resize_field(phi, (16, 16, 8)))
            torch.testing.assert_close(warped, expected, atol=1e-5, rtol=0)


def test_cubic_image_warp_changes_only_the_full_resolution_image_warp():
    """image_warp="cubic": the endpoints reach the refinement through warp_cubic; fields and features are those of the
    bilinear network with the same weights."""
    cubic = perturb(Student(**SMALL, image_warp="cubic")).eval()
    bilinear = Student(**SMALL).eval()
    bilinear.load_state_dict(cubic.state_dict())
    x = torch.rand(1, 2, 16, 16, 8)
    with torch.no_grad():
        out, reference = cubic.forward_intermediates(x, 0.4), bilinear.forward_intermediates(x, 0.4)
    torch.testing.assert_close(out.phi0[3], reference.phi0[3])
    torch.testing.assert_close(out.warped0[3], warp_cubic(x[:, :1], out.phi0[3]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.warped1[3], warp_cubic(x[:, 1:], out.phi1[3]), atol=1e-6, rtol=0)
    assert (out.pred - reference.pred).abs().max() > 1e-4
    with pytest.raises(ValueError, match="image_warp: expected one of bilinear, cubic, got 'bicubic'"):
        Student(**SMALL, image_warp="bicubic")


def test_wrong_inputs_are_refused():
    with pytest.raises(ValueError, match=r"image: expected \(B, 2"):
        Student()(torch.rand(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match=r"image: expected \(B, 3"):
        Teacher()(torch.rand(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="t: expected a number or 2 values"):
        Student()(torch.rand(2, 2, 8, 8, 8), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="multi_scale_dfm"):
        Student(use_dfm=False)
    with pytest.raises(TypeError):
        Teacher(time_modulation=True)
    student, volume = Student(**SMALL), torch.rand(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="i0, i1: expected two volumes"):
        student.interpolate_series(volume, torch.rand(1, 1, 8, 8, 9), [0.5])
    with pytest.raises(ValueError, match="ts: expected at least one"):
        student.interpolate_series(volume, volume, [])
    with pytest.raises(ValueError, match="max_batch: expected at least 1"):
        student.interpolate_series(volume, volume, [0.5], max_batch=0)


def test_student_differs_from_teacher_by_time_modulation_only():
    teacher, student = Teacher(), Student()
    modulation = sum(n_params(m) for m in student.modules() if isinstance(m, TimeModulation))
    assert modulation > 0
    assert n_params(student) - n_params(teacher) == modulation
    assert not any(isinstance(m, TimeModulation) for m in teacher.modules())


def test_pad_to_multiple_replicates_the_last_voxel():
    x = torch.rand(1, 1, 5, 9, 8)
    padded = pad_to_multiple(x)
    assert padded.shape == (1, 1, 8, 16, 8)
    assert torch.equal(padded[:, :, :5, :9], x)
    assert torch.equal(padded[:, :, 5:, :9], x[:, :, 4:5].expand(-1, -1, 3, -1, -1))
    assert torch.equal(padded[:, :, :5, 9:], x[:, :, :, 8:9].expand(-1, -1, -1, 7, -1))


# --- time modulation -------------------------------------------------------------------------------
def test_fresh_time_modulation_is_identity():
    features = torch.randn(3, 8, 6, 5, 4)
    out = TimeModulation(8)(features, torch.tensor([0.0, 0.4, 1.0]))
    assert torch.equal(out, features)


def test_time_modulation_is_spatially_constant_film():
    tm = perturb(TimeModulation(8))
    features = torch.randn(2, 8, 6, 5, 4)
    t = torch.tensor([0.25, 0.9])
    # reference: the conv blocks evaluated on the embedding broadcast over the whole grid
    embedding = tm.mlp(sinusoidal_embedding(t))[:, :, None, None, None].expand(-1, -1, 6, 5, 4)
    gamma, beta = tm.conv(embedding).chunk(2, dim=1)
    torch.testing.assert_close(tm(features, t), (1 + gamma) * features + beta)
    assert not torch.allclose(tm(features, t), features)


def test_sinusoidal_embedding_values():
    t = torch.tensor([0.0, 0.5])
    e = sinusoidal_embedding(t)
    assert e.shape == (2, 64)
    assert torch.equal(e[0], torch.cat([torch.zeros(32), torch.ones(32)]))
    torch.testing.assert_close(e[1, 0], torch.sin(torch.tensor(500.0)))  # w_0 = 1, 1000 t = 500
    torch.testing.assert_close(e[1, 63], torch.cos(torch.tensor(500.0 * 10000 ** (-31 / 32))))


def test_student_depends_on_t():
    net = perturb(Student(**SMALL)).eval()
    x = torch.rand(1, 2, 16, 16, 8)
    with torch.no_grad():
        a, b = net(x, 0.2), net(x, 0.8)
    assert (a - b).abs().mean() > 1e-3


def test_student_middle_input_is_i0_at_t0():
    net = Student(**SMALL)
    i0, i1 = torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8)
    image = torch.cat([i0, i1], dim=1)
    assert torch.equal(net.middle_input(image, torch.tensor([0.0])), i0)
    assert torch.equal(net.middle_input(image, torch.tensor([1.0])), i1)
    torch.testing.assert_close(net.middle_input(image, torch.tensor([0.25])), 0.75 * i0 + 0.25 * i1)


# --- ablation switches (paper Table 2) ---------------------------------------------------------------
LINEAR_SCALING = dict(time_modulation=False, use_dfm=False, multi_scale_dfm=False, use_refinement=False)


@pytest.mark.parametrize("flags", [LINEAR_SCALING, dict(time_modulation=False), dict(time_modulation=False, use_dfm=False, multi_scale_dfm=False)])
def test_linear_scaling_keeps_endpoints_fixed(flags):
    """Without time modulation: V0t = t V01, so I0t(t=0) = I0 and I1t(t=1) = I1 at every scale."""
    net = perturb(Student(**SMALL, **flags)).eval()
    assert net.linear_scaling
    x = torch.rand(1, 2, 16, 16, 8)
    with torch.no_grad():
        at0 = net.forward_intermediates(x, 0.0)
        at1 = net.forward_intermediates(x, 1.0)
    for k in range(4):
        assert torch.equal(at0.phi0[k], torch.zeros_like(at0.phi0[k]))
        assert torch.equal(at1.phi1[k], torch.zeros_like(at1.phi1[k]))
        torch.testing.assert_close(at0.warped0[k], x[:, :1], atol=ROUNDING, rtol=0)
        torch.testing.assert_close(at1.warped1[k], x[:, 1:], atol=ROUNDING, rtol=0)
        assert at1.phi0[k].abs().max() > 0.05  # the endpoint deformation itself is not zero
    # the endpoint velocities are scaled linearly
    with torch.no_grad():
        half = net.forward_intermediates(x, 0.5)
    torch.testing.assert_close(half.velocity0[3], 0.5 * at1.velocity0[3])
    torch.testing.assert_close(half.velocity1[3], 0.5 * at0.velocity1[3])
    if not flags.get("use_refinement", True):
        torch.testing.assert_close(at0.pred, x[:, :1], atol=ROUNDING, rtol=0)
        torch.testing.assert_close(at1.pred, x[:, 1:], atol=ROUNDING, rtol=0)


def test_use_dfm_false_has_no_dfm():
    net = Student(**SMALL, use_dfm=False, multi_scale_dfm=False)
    assert not any("dfm" in name for name, _ in net.named_parameters())
    with torch.no_grad():
        out = net.forward_intermediates(torch.rand(1, 2, 16, 16, 8))
    assert out.dfm_weights == [None] * 4


def test_single_scale_dfm_only_at_finest_scale():
    net = perturb(Student(**SMALL, multi_scale_dfm=False)).eval()
    assert list(net.msdf.dfm.keys()) == ["4"]
    with torch.no_grad():
        out = net.forward_intermediates(torch.rand(1, 2, 16, 16, 8))
    assert out.dfm_weights[:3] == [None] * 3
    torch.testing.assert_close(out.dfm_weights[3].sum(dim=2), torch.ones(1, 2, 16, 16, 8))


def test_time_modulation_flag():
    assert any(isinstance(m, TimeModulation) for m in Student(**SMALL).modules())
    plain = Student(**SMALL, time_modulation=False)
    assert not any(isinstance(m, TimeModulation) for m in plain.modules())
    assert not Student(**SMALL).linear_scaling


@pytest.mark.parametrize("cls, inputs", [(Teacher, 3), (Student, 2)])
def test_without_refinement_output_is_time_weighted_blend(cls, inputs):
    net = perturb(cls(**SMALL, use_refinement=False)).eval()
    assert net.refine is None and not any("refine" in n for n, _ in net.named_parameters())
    x = torch.rand(2, inputs, 16, 16, 8)
    t = torch.tensor([0.3, 0.8]).view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        out = net.forward_intermediates(x, t.flatten())
    torch.testing.assert_close(out.pred, (1 - t) * out.warped0[3] + t * out.warped1[3])


def test_fresh_refinement_averages_warped_endpoints():
    net = Teacher(**SMALL).eval()
    with torch.no_grad():
        out = net.forward_intermediates(torch.rand(1, 3, 16, 16, 8))
    torch.testing.assert_close(out.pred, 0.5 * (out.warped0[3] + out.warped1[3]))


def test_dfm_picks_one_scale_when_its_weight_dominates():
    dfm = DFM(3)
    velocities = [torch.randn(2, 3, 4, 4, 2), torch.randn(2, 3, 8, 8, 4), torch.randn(2, 3, 16, 16, 8)]
    with torch.no_grad():
        dfm.weights.weight.zero_()
        for j in range(3):
            dfm.weights.bias.copy_(torch.tensor([-50.0, -50.0, -50.0]).index_fill(0, torch.tensor(j), 50.0))
            fused, weights = dfm(velocities)
            torch.testing.assert_close(fused, resize_field(velocities[j], (16, 16, 8)))
            assert torch.equal(weights.argmax(dim=1), torch.full((2, 16, 16, 8), j))
        dfm.weights.bias.zero_()
        fused, _ = dfm(velocities)
    mean = sum(resize_field(v, (16, 16, 8)) for v in velocities) / 3
    torch.testing.assert_close(fused, mean)


def test_msdf_endpoint_terms_equal_one_concatenated_conv():
    """DFGen's split first conv is the conv over concat(F0, Fm, F1, up(Fdef_prev)) with a 1^3 kernel on Fdef_prev."""
    msdf = perturb(MSDF((16, 8), (8, 4)))
    dfgen = msdf.dfgen[1]
    f0, fm, f1 = (torch.randn(1, 8, 8, 8, 4) for _ in range(3))
    prev = torch.randn(1, 8, 4, 4, 2)
    weight = torch.zeros(4, 32, 3, 3, 3)
    w_end = dfgen.endpoint_conv.weight
    weight[:, :8], weight[:, 8:16], weight[:, 16:24] = w_end[:, :8], dfgen.middle_conv.weight, w_end[:, 8:]
    weight[:, 24:, 1, 1, 1] = dfgen.prev_conv.weight[:, :, 0, 0, 0]
    up = torch.nn.functional.interpolate(prev, scale_factor=2, mode="nearest")
    expected = torch.nn.functional.conv3d(torch.cat([f0, fm, f1, up], 1), weight, dfgen.middle_conv.bias, padding=1)
    got = dfgen.endpoint_term(f0, f1) + dfgen.middle_conv(fm) + torch.nn.functional.interpolate(dfgen.prev_conv(prev), scale_factor=2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# --- series inference ------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [{}, dict(time_modulation=False)])
@pytest.mark.parametrize("n, max_batch", [(3, None), (5, 2)])
def test_interpolate_series_encodes_endpoints_once(flags, n, max_batch):
    net = perturb(Student(**SMALL, **flags)).eval()
    calls = []
    net.encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    i0, i1 = torch.rand(1, 1, 13, 16, 9), torch.rand(1, 1, 13, 16, 9)
    ts = torch.linspace(0.1, 0.9, n)
    series = net.interpolate_series(i0, i1, ts, max_batch=max_batch)
    assert series.shape == (n, 1, 13, 16, 9)
    assert calls[0] == 2  # I0 and I1 together, once
    assert sum(calls[1:]) == n  # one I_b per t
    assert max(calls[1:]) <= (max_batch or 1)  # CPU default: one t per pass
    with torch.no_grad():
        separate = torch.cat([net(torch.cat([i0, i1], dim=1), float(t)) for t in ts])
    torch.testing.assert_close(series, separate, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("flags", [{}, {"time_modulation": False}, {"use_refinement": False}])
def test_interpolate_encoded_equals_interpolate_series(flags):
    """A frame encoded alone (``encode_frame``) serves any pair it ends: the decoder reads the same as from the
    pair's own encoding, in either role."""
    net = perturb(Student(**SMALL, **flags)).eval()
    a, b, c = (torch.rand(1, 1, 13, 16, 9) for _ in range(3))
    ts = [0.2, 0.7]
    with torch.no_grad():
        eb = net.encode_frame(b)
        torch.testing.assert_close(net.interpolate_encoded(net.encode_frame(a), eb, ts),
                                   net.interpolate_series(a, b, ts), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(net.interpolate_encoded(eb, net.encode_frame(c), ts),
                                   net.interpolate_series(b, c, ts), atol=1e-5, rtol=1e-4)


def test_encode_frame_refuses_a_batch_and_interpolate_encoded_frames_of_two_sizes():
    net = Student(**SMALL).eval()
    with pytest.raises(ValueError, match="volume"):
        net.encode_frame(torch.rand(2, 1, 8, 8, 8))
    e0, e1 = net.encode_frame(torch.rand(1, 1, 16, 16, 8)), net.encode_frame(torch.rand(1, 1, 16, 16, 9))
    with pytest.raises(ValueError, match="one size"):
        net.interpolate_encoded(e0, e1, [0.5])


# --- export, precision -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls, inputs", [(Teacher, 3), (Student, 2)])
def test_trace_matches_eager(cls, inputs):
    net = perturb(cls(**SMALL)).eval()
    x, y = torch.rand(2, inputs, 16, 16, 8), torch.rand(2, inputs, 16, 16, 8)
    t, u = torch.tensor([0.3, 0.6]), torch.tensor([0.9, 0.1])
    with torch.no_grad():
        traced = torch.jit.trace(net, (x, t), check_trace=False)
        torch.testing.assert_close(traced(y, u), net(y, u))
        default = torch.jit.trace(net, x, check_trace=False)
        torch.testing.assert_close(default(y), net(y))


def test_autocast_bfloat16_and_float64():
    net = perturb(Student(**SMALL)).eval()
    x = torch.rand(1, 2, 16, 16, 8)
    with torch.no_grad():
        reference = net(x, 0.4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, 0.4)
        high = net.double()(x.double(), 0.4)
    assert low.dtype == torch.float32  # fields, warps and the blend run in float32 under autocast
    error = (low - reference).abs()
    assert error.mean() < 0.02 and error.max() < 0.15  # bfloat16 convolutions: ~0.4% per layer
    assert high.dtype == torch.float64
    torch.testing.assert_close(high.float(), reference, atol=1e-4, rtol=0)


def test_every_parameter_gets_a_gradient():
    """No unused parameters (DistributedDataParallel needs this)."""
    net = perturb(Student(**SMALL))
    x = torch.rand(1, 2, 16, 16, 8)
    out = net.forward_intermediates(x, 0.3)
    loss = out.pred.mean() + sum(w.mean() for w in out.warped0 + out.warped1) + sum(p.abs().mean() for p in out.phi0)
    loss.backward()
    assert [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


# --- learning ----------------------------------------------------------------------------------------
def blob(size, centre, radius):
    x = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in size], indexing="ij"))
    d2 = sum(((x[k] - centre[k]) / radius[k]) ** 2 for k in range(3))
    return torch.exp(-d2)[None, None]


def test_teacher_overfits_nonlinear_motion():
    """A blob moving along an arc and deforming: the teacher's warps align both endpoints to It and its
    output beats the linear blend by far, within a few seconds of training."""
    size = (24, 24, 16)

    def frame(t):  # nonlinear in t: the centre moves on an arc, the blob stretches
        centre = (7.5 + 9 * t, 12 + 6 * math.sin(math.pi * t), 8)
        return blob(size, centre, (3 + 1.5 * t, 3.75 - 1.1 * t, 3))

    i0, it, i1 = frame(0.0), frame(0.5), frame(1.0)
    image = torch.cat([i0, it, i1], dim=1)
    net = Teacher(**SMALL)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(60):  # L_recon + the similarity part of L_align
        out = net.forward_intermediates(image, 0.5)
        align = sum(
            2.0 ** (i - 3) * (((w0 - it) ** 2).mean() + ((w1 - it) ** 2).mean())
            for i, (w0, w1) in enumerate(zip(out.warped0, out.warped1))
        )
        loss = ((out.pred - it) ** 2).mean() + align
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        out = net.forward_intermediates(image, 0.5)

    def mse(a, b):
        return ((a - b) ** 2).mean()

    assert mse(out.pred, it) < 0.05 * mse(0.5 * (i0 + i1), it)
    assert mse(out.warped0[3], it) < 0.1 * mse(i0, it)
    assert mse(out.warped1[3], it) < 0.1 * mse(i1, it)
    assert mse(out.warped0[0], it) < 0.2 * mse(i0, it)  # the coarsest scale aligns too


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_fresh_student_returns_the_linear_blend(t):
    """The refinement mask's prior logit(1 - t) makes a fresh network (near-zero fields) the linear blend."""
    torch.manual_seed(0)
    net = Student(channels=(4, 8, 8, 8)).eval()
    image = torch.rand(1, 2, 16, 16, 8)
    with torch.no_grad():
        pred = net(image, torch.tensor([t]))
    blend = (1 - t) * image[:, :1] + t * image[:, 1:]
    assert torch.allclose(pred, blend, atol=2e-3)
    assert not torch.allclose(pred, 0.5 * (image[:, :1] + image[:, 1:]), atol=2e-3) or t == 0.5
