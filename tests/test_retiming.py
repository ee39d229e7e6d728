"""The cardiac motion clock: its times, the file it is read from, its fit, and where the product applies it."""

import json
import math

import numpy as np
import pytest
import torch

from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.times import upsample_plan
from scripts.networks import Student
from scripts.training.retiming import curve_psnr, fit_retiming, fit_speed
from scripts.transforms.retiming import CycleRetiming
from scripts.utils.checkpoint import save_weights
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.paths import ROOT

SPEED = [0.4, -0.6, 0.3, 0.2]  # two harmonics: a clearly uneven speed over the cycle


def reference_clock(speed, phase, samples=200_000):
    """tau(phase) by a fine numpy trapezoid of exp(Fourier series), independent of the class's grid."""
    grid = np.linspace(0, 1, samples + 1)
    log_speed = sum(a * np.cos(2 * np.pi * (k + 1) * grid) + b * np.sin(2 * np.pi * (k + 1) * grid)
                    for k, (a, b) in enumerate(zip(speed[0::2], speed[1::2])))
    s = np.exp(log_speed)
    tau = np.concatenate([[0], np.cumsum((s[1:] + s[:-1]) / 2)])
    tau /= tau[-1]
    whole = np.floor(phase)
    return whole + np.interp(phase - whole, grid, tau)


def test_no_coefficients_keep_the_frames_times():
    ts = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    assert torch.equal(CycleRetiming()(0.3, 0.25, ts), ts)


def test_the_clock_is_the_integral_of_its_speed_and_runs_on_across_cycles():
    clock = CycleRetiming(SPEED)
    phases = np.array([0.0, 0.1, 0.37, 0.5, 0.93, 1.2, 2.75, -0.4])
    np.testing.assert_allclose(clock.clock(torch.tensor(phases)).numpy(), reference_clock(SPEED, phases), atol=2e-5)


@pytest.mark.parametrize("start, span", [(0.0, 0.25), (0.6, 0.125), (0.9, 0.2), (0.95, 1.0)])
def test_retimed_times_keep_the_acquired_frames_and_their_order(start, span):
    """0 -> 0 and 1 -> 1, increasing in between, the pair's share of the clock (wrapping past the cycle's end)."""
    ts = torch.linspace(0, 1, 41)
    moved = CycleRetiming(SPEED)(start, span, ts)
    assert moved.dtype == torch.float32
    assert moved[0] == 0 and moved[-1] == pytest.approx(1.0, abs=1e-6)
    assert bool((moved[1:] > moved[:-1]).all())
    tau = reference_clock(SPEED, start + span * ts.double().numpy())
    np.testing.assert_allclose(moved.numpy(), (tau - tau[0]) / (tau[-1] - tau[0]), atol=1e-4)
    assert float((moved - ts).abs().max()) > 2e-3  # the uneven speed does move them


@pytest.mark.parametrize("span", [0.0, -0.25, 1.5])
def test_a_pair_that_spans_no_share_of_the_cycle_is_refused_not_divided_by(span):
    with pytest.raises(InputError, match="span: expected the pair's share of the cycle in"):
        CycleRetiming(SPEED)(0.5, span, [0.5])


def test_where_the_heart_moves_fast_early_in_a_pair_its_frames_come_early():
    """Speed high at phase 0 (log speed cos 2 pi phi): a pair starting there has done most of its motion by mid-time,
    so mid-time is made later along its motion; a pair ending there, earlier."""
    clock = CycleRetiming([1.0, 0.0])
    assert float(clock(0.0, 0.25, [0.5])) > 0.5
    assert float(clock(0.75, 0.25, [0.5])) < 0.5


def test_the_clock_file_is_read_and_bad_ones_are_named(tmp_path):
    good = tmp_path / "clock.json"
    good.write_text(json.dumps({"speed": SPEED, "harmonics": 2}))
    assert torch.equal(CycleRetiming.load(good).speed, torch.tensor(SPEED, dtype=torch.float64))
    with pytest.raises(InputError, match="missing.json: the motion clock file was not found"):
        CycleRetiming.load(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("speed = 1")
    with pytest.raises(InputError, match="text.json: not a readable JSON file"):
        CycleRetiming.load(tmp_path / "text.json")
    (tmp_path / "odd.json").write_text(json.dumps({"speed": [0.1, 0.2, 0.3]}))
    with pytest.raises(InputError, match="speed: expected pairs of finite Fourier coefficients"):
        CycleRetiming.load(tmp_path / "odd.json")
    (tmp_path / "nan.json").write_text('{"speed": [0.1, NaN]}')
    with pytest.raises(InputError, match="speed: expected pairs"):
        CycleRetiming.load(tmp_path / "nan.json")


def test_the_shipped_clock_is_read_by_the_inference_config_and_turned_off_by_its_switches():
    from monai.bundle import ConfigParser

    def clock(**overrides):
        parser = ConfigParser()
        parser.read_config(str(ROOT / "configs" / "inference.json"))
        parser.update({"bundle_root": str(ROOT), **overrides})
        return parser.get_parsed_content("cycle_clock"), parser.get_parsed_content("inferer#retiming")

    shipped, handed = clock()
    assert isinstance(shipped, CycleRetiming) and shipped.speed.abs().sum() > 0
    assert isinstance(handed, CycleRetiming)
    assert shipped.speed.tolist() == json.loads((ROOT / "models" / "cycle_clock.json").read_text())["speed"]
    assert clock(retiming="false") == (None, None)  # a word from the command line is a boolean
    assert clock(anatomy="lung") == (None, None)


# --- the fit ---------------------------------------------------------------------------------------------------------

def test_curves_are_read_linearly_between_their_grid_points():
    curves = torch.tensor([[0.0, 10.0, 30.0], [5.0, 5.0, 1.0]], dtype=torch.float64)
    read = curve_psnr(curves, torch.tensor([0.25, 1.0], dtype=torch.float64))
    np.testing.assert_allclose(read.numpy(), [5.0, 1.0])


def test_the_fit_finds_the_clock_that_made_the_curves():
    """Curves whose PSNR peaks where a known clock puts each frame: the fit (one harmonic) finds that clock's times
    and scores above the uniform clock."""
    truth = CycleRetiming([0.5, -0.3])
    rng = np.random.default_rng(0)
    start = torch.tensor(rng.integers(0, 16, 300) / 16, dtype=torch.float64)
    span = torch.full_like(start, 4 / 16)
    t = torch.tensor(rng.integers(1, 4, 300) / 4, dtype=torch.float64)
    best = torch.stack([truth(float(s), float(w), [float(v)])[0] for s, w, v in zip(start, span, t)]).double()
    grid = torch.linspace(0, 1, 41, dtype=torch.float64)
    curves = 40 - 60 * (grid[None] - best[:, None]) ** 2
    speed, scores = fit_speed({"start": start, "span": span, "t": t, "curves": curves}, harmonics=1, steps=600,
                              weight_decay=0.0)
    fitted = CycleRetiming(speed)
    moved = torch.stack([fitted(float(s), float(w), [float(v)])[0] for s, w, v in zip(start, span, t)]).double()
    assert float((moved - best).abs().max()) < 0.02
    assert scores["psnr_fitted"] > scores["psnr_uniform"] + 0.1


def test_fit_retiming_writes_the_clock_and_what_made_it(tmp_path):
    torch.manual_seed(0)
    weights = save_weights(Student(), tmp_path / "student.pt")
    rng = np.random.default_rng(1)
    cines = [(f"cine{k}", lambda k=k: rng.random((16, 16, 8, 6)).astype(np.float32)) for k in range(2)]
    out = fit_retiming({2: cines}, Student(), weights, tmp_path / "clock.json", harmonics=1, grid_size=5)
    record = json.loads(out.read_text())
    assert len(record["speed"]) == 2 and record["harmonics"] == 1 and record["student"] == "student.pt"
    assert record["cines"] == {"x2": ["cine0", "cine1"]} and record["frames"] == 2 * 3  # 3 dropped frames per cine
    assert record["psnr_fitted"] >= record["psnr_uniform"]
    assert torch.equal(CycleRetiming.load(out).speed, torch.tensor(record["speed"], dtype=torch.float64))


def test_fit_retiming_refuses_an_existing_clock_before_any_work(tmp_path):
    existing = tmp_path / "clock.json"
    existing.write_text("{}")

    def never():
        raise AssertionError("a cine was read")

    with pytest.raises(OutputExistsError):
        fit_retiming({2: [("cine", never)]}, Student(), tmp_path / "w.pt", existing)
    with pytest.raises(InputError, match="factors: no training cine to score"):
        fit_retiming({2: []}, Student(), tmp_path / "w.pt", tmp_path / "new.json")
    assert existing.read_text() == "{}"


def test_the_fitting_config_scores_as_the_product_warps():
    """configs/fit_retiming.json makes its curves with the inference config's image warp per pair."""
    fit = json.loads((ROOT / "configs" / "fit_retiming.json").read_text())
    inference = json.loads((ROOT / "configs" / "inference.json").read_text())
    assert fit["warp_choice"]["wide_above"] == inference["warp_choice"]["wide_above"]
    assert fit["warp_choice"]["wide"] == inference["warp_choice"]["wide"] == "bilinear"
    assert fit["channels"] == inference["channels"]


# --- where the product applies it ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(Student(), tmp_path_factory.mktemp("w") / "student.pt")


@pytest.mark.parametrize("cyclic", [True, False])
def test_upsample_gives_the_network_the_clocks_times_for_a_cycle_only(student_weights, monkeypatch, cyclic):
    clock = CycleRetiming(SPEED)
    inferer = SeriesInterpolator(Student(), student_weights, device="cpu", retiming=clock)
    seen = {}
    original = inferer.cine_network.interpolate_encoded

    def spy(e0, e1, ts, **kwargs):
        seen[len(seen)] = torch.as_tensor(ts).tolist()
        return original(e0, e1, ts, **kwargs)

    monkeypatch.setattr(inferer.cine_network, "interpolate_encoded", spy)
    frames = np.random.default_rng(0).random((16, 16, 8, 4)).astype(np.float32)
    inferer.upsample(frames, upsample_plan(4, 3, cyclic))
    pairs = [(a, a + 1) for a in range(4 if cyclic else 3)]
    assert len(seen) == len(pairs)
    for k, (a, _) in enumerate(pairs):
        expected = clock(a / 4, 1 / 4, [1 / 3, 2 / 3]).tolist() if cyclic else [1 / 3, 2 / 3]
        np.testing.assert_allclose(seen[k], expected, atol=1e-6)
    if cyclic:
        assert not math.isclose(seen[0][0], 1 / 3, abs_tol=1e-3)


def test_the_fitting_config_runs_end_to_end_on_an_acdc_folder(tiny_acdc, tmp_path):
    """``monai.bundle run --config_file configs/fit_retiming.json``: the training patients of the folder (001-080),
    every ``every``-th per factor, scored by the shipped whole-cine student, the clock written with what made it."""
    from monai.bundle import run

    out = tmp_path / "clock.json"
    run(config_file=str(ROOT / "configs" / "fit_retiming.json"), bundle_root=str(ROOT), dataset_dir=str(tiny_acdc),
        every=[1, 2], grid_size=3, harmonics=1, output=str(out), threads=1, logging_file=False)
    record = json.loads(out.read_text())
    assert record["cines"] == {"x4": ["patient001", "patient002"], "x2": ["patient001"]}  # 091 is not training
    assert record["student"] == "cine_model.pt" and len(record["speed"]) == 2
    assert record["frames"] == 2 * 7 + 5  # 10 frames: x4 keeps 0, 4, 8 (3 + 3 + 1 dropped), x2 keeps 5 (5 dropped)


def test_the_neighbour_refinement_is_given_the_network_times(student_weights, monkeypatch):
    """The refinement corrects the student's frame made at t', so it reads t' (the time of the frame it is given)."""
    import types

    clock = CycleRetiming(SPEED)
    inferer = SeriesInterpolator(Student(), student_weights, device="cpu", retiming=clock)
    inferer.neighbours = types.SimpleNamespace(applies=lambda span: True)  # refines every pair; refine is the spy
    given = []
    monkeypatch.setattr(inferer, "refine", lambda frames, pair, ts, volumes, cyclic: given.append((pair, ts)) or volumes)
    frames = np.random.default_rng(0).random((16, 16, 8, 4)).astype(np.float32)
    inferer.upsample(frames, upsample_plan(4, 2, True))
    assert [pair for pair, _ in given] == [(0, 1), (1, 2), (2, 3), (3, 0)]
    for (a, _), ts in given:
        np.testing.assert_allclose(ts, clock(a / 4, 1 / 4, [0.5]).tolist(), atol=1e-6)
        assert abs(ts[0] - 0.5) > 1e-3
