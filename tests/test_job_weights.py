"""Weights per job: frames between two endpoints run ``checkpoint`` (the paper protocol's student), whole series
(``--upsample``) run ``cine_checkpoint``; a user's own weights serve both jobs."""

import json
from pathlib import Path

import numpy as np
import pytest

from scripts.evaluation.superres_native import product_steps
from scripts.inference.cli import interpolate
from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.times import upsample_plan
from scripts.inference.warp_choice import WarpBySpan
from scripts.networks import Student
from scripts.utils.paths import ROOT
from tests.small_bundle import NETWORK_ARGS, save_random_weights

SHAPE = (16, 16, 8)


@pytest.fixture(scope="module")
def two_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return save_random_weights(folder / "pair.pt", seed=1), save_random_weights(folder / "cine.pt", seed=2)


def series(frames=5, seed=0):
    return np.random.default_rng(seed).random((*SHAPE, frames)).astype(np.float32)


def inferer(checkpoint, cine_checkpoint=None):
    return SeriesInterpolator(Student(**NETWORK_ARGS), checkpoint, device="cpu", cine_checkpoint=cine_checkpoint)


def test_each_job_runs_its_own_weights(two_weights):
    pair, cine = two_weights
    both = inferer(pair, cine)
    frames, plan = series(), upsample_plan(5, 2, cyclic=True)
    between = both.synthesise(frames[..., 0], frames[..., 2], [0.25, 0.5])
    np.testing.assert_array_equal(between, inferer(pair).synthesise(frames[..., 0], frames[..., 2], [0.25, 0.5]))
    upsampled = both.upsample(frames, plan)
    np.testing.assert_array_equal(upsampled, inferer(cine).upsample(frames, plan))
    assert np.abs(upsampled - inferer(pair).upsample(frames, plan)).max() > 1e-5  # the other weights differ
    assert both.job(upsample=False) == (both.network, str(pair))
    assert both.job(upsample=True) == (both.cine_network, str(cine))
    assert both.cine_network is not both.network


def test_each_job_warps_its_own_network(two_weights):
    """The warp choice of a job is set on that job's network: a 4-frame series' pairs span a quarter of the cycle
    (bilinear) in the whole-series network, and the two-endpoint network keeps the warp of its own last job."""
    pair, cine = two_weights
    both = SeriesInterpolator(Student(**NETWORK_ARGS, image_warp="cubic"), pair, device="cpu", cine_checkpoint=cine,
                              warp_choice=WarpBySpan(near="cubic", wide="bilinear", wide_above=1 / 6))
    frames = series(frames=4)
    both.upsample(frames, upsample_plan(4, 2, cyclic=True))
    assert (both.cine_network.image_warp, both.network.image_warp) == ("bilinear", "cubic")
    both.synthesise(frames[..., 0], frames[..., 1], [0.5], span=0.5)
    assert (both.cine_network.image_warp, both.network.image_warp) == ("bilinear", "bilinear")
    both.upsample(series(frames=8), upsample_plan(8, 2, cyclic=True))
    assert (both.cine_network.image_warp, both.network.image_warp) == ("cubic", "bilinear")


def test_one_weights_file_serves_both_jobs(two_weights):
    pair, _ = two_weights
    for given in (None, pair):
        one = inferer(pair, given)
        assert one.cine_network is one.network and one.cine_checkpoint == str(pair)


def _parsed(**overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(ROOT / "configs" / "inference.json")
    parser.update({"bundle_root": str(ROOT), **overrides})
    return {k: Path(parser.get_parsed_content(k)) for k in ("checkpoint", "cine_checkpoint")}


def test_config_names_the_weights_of_each_job(tmp_path):
    assert _parsed() == {"checkpoint": ROOT / "models" / "model.pt",
                         "cine_checkpoint": ROOT / "models" / "cine_model.pt"}
    assert _parsed(anatomy="lung") == {"checkpoint": ROOT / "models" / "lung_model.pt",
                                       "cine_checkpoint": ROOT / "models" / "lung_model.pt"}  # no whole-series student
    own = str(tmp_path / "mine.pt")
    assert _parsed(checkpoint=own) == {"checkpoint": Path(own), "cine_checkpoint": Path(own)}  # overriding one: both
    assert _parsed(cine_checkpoint=own)["checkpoint"] == ROOT / "models" / "model.pt"
    assert product_steps(True).cine_weights == ROOT / "models" / "cine_model.pt"  # what superres scores


@pytest.mark.skipif(not (ROOT / "models" / "cine_model.pt").exists(), reason="models/cine_model.pt not present")
def test_the_command_runs_each_jobs_weights(tmp_path):
    """``interpolate`` on the embedded demo: the two-endpoint job reports models/model.pt, ``--upsample`` the
    whole-series student, and ``--model`` (the same file as the shipped pair student) both jobs."""
    def checkpoint(**kwargs):
        out = interpolate(output_dir=str(tmp_path / f"out{len(list(tmp_path.iterdir()))}"), device="cpu", **kwargs)
        return Path(json.loads((Path(out) / "summary.json").read_text())["checkpoint"]).resolve()

    assert checkpoint(t=0.5) == ROOT / "models" / "model.pt"
    assert checkpoint(upsample=2) == ROOT / "models" / "cine_model.pt"
    assert checkpoint(upsample=2, model=str(ROOT / "models" / "model.pt")) == ROOT / "models" / "model.pt"
