"""The image warp per pair (``scripts.inference.warp_choice``): cubic between near frames, bilinear between frames more
than a sixth of the series apart, chosen by the inference for each job and recorded in ``summary.json``."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from scripts.inference.cli import interpolate
from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.times import upsample_plan
from scripts.inference.warp_choice import WarpBySpan, span_fraction
from scripts.networks import Student
from scripts.utils.checkpoint import save_weights
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = Student(channels=(4, 8, 8, 8), blend_candidate=True)
    with torch.no_grad():  # fields far from zero, so the two warps differ
        for dfgen in net.msdf.dfgen:
            dfgen.head.bias.normal_(0.0, 0.5)
    return str(save_weights(net, tmp_path_factory.mktemp("w") / "student.pt"))


def _student(weights, warp="cubic"):
    return SeriesInterpolator(Student(channels=(4, 8, 8, 8), blend_candidate=True, image_warp=warp), weights,
                              device="cpu", warp_choice=WarpBySpan())


def test_span_fraction_and_the_rule():
    assert span_fraction(3, 1, 8) == 0.25 and span_fraction(0, 1, 2) == 0.5 and span_fraction(4, 5, 24) == 1 / 24
    choose = WarpBySpan("cubic", "bilinear", 1 / 6)
    assert choose(1 / 24) == choose(1 / 7) == choose(1 / 6) == choose(5 / 30) == "cubic"  # up to a sixth
    assert choose(1 / 5) == choose(6 / 35) == choose(0.5) == "bilinear"
    assert WarpBySpan("bilinear", "bilinear")(0.01) == "bilinear"  # the lung student: bilinear throughout


@pytest.mark.parametrize("kwargs, name", [({"near": "nearest"}, "near"), ({"wide": "bicubic"}, "wide"),
                                          ({"wide_above": 0}, "wide_above"), ({"wide_above": 1.0}, "wide_above"),
                                          ({"wide_above": True}, "wide_above")])
def test_bad_settings_are_named(kwargs, name):
    with pytest.raises(InputError, match=f"warp_choice {name}"):
        WarpBySpan(**kwargs)


def test_network_image_warp_is_settable_and_checked():
    net = Student(channels=(4, 8, 8, 8), image_warp="cubic")
    net.image_warp = "bilinear"
    assert net.image_warp == "bilinear" and not net.cubic_image_warp
    with pytest.raises(ValueError, match="image_warp"):
        net.image_warp = "bicubic"
    torch.jit.script(net)  # the property is Python only


def test_pair_far_apart_is_warped_bilinearly_and_near_pairs_cubically(weights):
    rng = np.random.default_rng(1)
    i0, i1 = (rng.random((16, 16, 8)).astype(np.float32) for _ in range(2))
    ts = [0.3, 0.6]
    wide, near = _student(weights).synthesise(i0, i1, ts, span=0.4), _student(weights).synthesise(i0, i1, ts, span=0.1)
    bilinear = SeriesInterpolator(Student(channels=(4, 8, 8, 8), blend_candidate=True, image_warp="bilinear"),
                                  weights, device="cpu").synthesise(i0, i1, ts)
    cubic = SeriesInterpolator(Student(channels=(4, 8, 8, 8), blend_candidate=True, image_warp="cubic"),
                               weights, device="cpu").synthesise(i0, i1, ts)
    assert not np.allclose(bilinear, cubic, atol=1e-4)  # the two warps differ on these weights
    np.testing.assert_array_equal(wide, bilinear)
    np.testing.assert_array_equal(near, cubic)
    kept = _student(weights, "bilinear")
    kept.synthesise(i0, i1, ts)  # no span: the network's own warp
    assert kept.network.image_warp == "bilinear"


@pytest.mark.parametrize("num_frames, warp", [(4, "bilinear"), (5, "bilinear"), (6, "cubic"), (12, "cubic")])
def test_upsample_pairs_are_consecutive_frames(weights, num_frames, warp):
    inferer = _student(weights, "bilinear" if warp == "cubic" else "cubic")  # starts on the other warp
    frames = np.random.default_rng(2).random((16, 16, 8, num_frames)).astype(np.float32)
    inferer.upsample(frames, upsample_plan(num_frames, 2, True)[:3])
    assert inferer.network.image_warp == warp


def test_interpolate_records_the_warp_of_each_job(tmp_path):
    torch.manual_seed(0)
    weights = str(save_weights(Student(blend_candidate=True), tmp_path / "student.pt"))  # the deployed channels
    data = np.random.default_rng(3).random((20, 18, 6, 12)).astype(np.float32) * 500
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0])), path)

    def warp(**job):
        out = interpolate(input=str(path), output_dir=str(tmp_path / f"out{len(list(tmp_path.iterdir()))}"),
                          model=weights, motion_region=False, **job)
        return json.loads((Path(out) / "summary.json").read_text())["image_warp"]

    assert warp(start_frame=1, end_frame=5, t=[0.5]) == "bilinear"  # ED -> ES-like: a third of the cycle
    assert warp(start_frame=1, end_frame=2, t=[0.5]) == "cubic"
    assert warp(upsample=2) == "cubic"  # 12 frames: each pair a twelfth


def test_evaluation_of_the_paper_protocol_warps_as_the_product_does():
    """Every protocol pair (ED -> ES, lung phases 0 -> 5) spans more than a sixth of the cycle: evaluate.json runs the
    product's warp for such pairs."""
    def parsed(config, key):
        parser = ConfigParser()
        parser.read_config(ROOT / "configs" / config)
        parser["bundle_root"] = str(ROOT)
        return parser.get_parsed_content(key)

    assert parsed("evaluate.json", "network_def").image_warp == parsed("inference.json", "warp_choice").wide
    assert parsed("inference.json", "warp_choice").near == parsed("inference.json", "network_def").image_warp
