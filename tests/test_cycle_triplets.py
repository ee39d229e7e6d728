"""Whole-cycle triplets: validity, wrap-around, gap range, the mix, and the switch back to the paper's protocol."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from scripts.datasets.acdc import acdc_dataset
from scripts.datasets.cycle_triplets import CycleSpec, Triplet, cycle_triplets, draw_triplets, triplet_gap
from scripts.datasets.nifti4d import nifti4d_dataset
from scripts.datasets.protocol import load_protocol_series
from scripts.datasets.registry import make_dataset
from scripts.utils.errors import InputError

SIZE = (8, 8, 4)


def reference(num_frames, cyclic, min_gap, max_gap):
    """Every (start, end, frame, t) by brute force over all frame triples, both directions."""
    expected = set()
    for start in range(num_frames):
        for end in range(num_frames):
            for frame in range(num_frames):
                if cyclic:
                    for sign in (1, -1):  # forward, backward in time
                        gap, k = (sign * (end - start)) % num_frames, (sign * (frame - start)) % num_frames
                        if min_gap <= gap <= max_gap and 0 < k < gap:
                            expected.add((start, end, frame, k / gap))
                else:
                    gap, k = abs(end - start), abs(frame - start)
                    between = min(start, end) < frame < max(start, end)
                    if min_gap <= gap <= max_gap and between:
                        expected.add((start, end, frame, k / gap))
    return expected


@pytest.mark.parametrize("num_frames, cyclic, min_gap, max_gap", [
    (7, True, 2, None), (8, True, 2, None), (8, True, 3, 5), (30, True, 2, None), (9, False, 2, None),
    (6, False, 2, 5),
])
def test_every_triplet_is_valid_and_every_valid_triplet_is_drawn(num_frames, cyclic, min_gap, max_gap):
    triplets = cycle_triplets(num_frames, cyclic, min_gap, max_gap)
    assert len(triplets) == len(set(triplets))
    gap_limit = num_frames // 2 if max_gap is None else max_gap
    assert {tuple(tr) for tr in triplets} == reference(num_frames, cyclic, min_gap, gap_limit)
    assert all(0 < tr.t < 1 and tr.start != tr.end for tr in triplets)


def test_the_cycle_wraps_around_and_a_finite_series_does_not():
    cyclic = set(cycle_triplets(6, cyclic=True))
    assert Triplet(4, 1, 5, 1 / 3) in cyclic and Triplet(4, 1, 0, 2 / 3) in cyclic  # 4 -> 5 -> 0 -> 1
    assert Triplet(1, 4, 0, 1 / 3) in cyclic  # backward in time: 1 -> 0 -> 5 -> 4
    assert Triplet(4, 1, 2, 2 / 3) in cyclic  # the same pair the other way round: 4 -> 3 -> 2 -> 1
    finite = set(cycle_triplets(6, cyclic=False))
    assert not any(tr.frame not in range(min(tr.start, tr.end) + 1, max(tr.start, tr.end)) for tr in finite)
    assert Triplet(4, 1, 2, 2 / 3) in finite and Triplet(4, 1, 5, 1 / 3) not in finite


def test_gaps_run_from_two_frames_to_half_a_cycle_in_both_directions():
    triplets = cycle_triplets(30)
    forward = {(tr.end - tr.start) % 30 for tr in triplets if (tr.frame - tr.start) % 30 < (tr.end - tr.start) % 30}
    backward = {(tr.start - tr.end) % 30 for tr in triplets if (tr.start - tr.frame) % 30 < (tr.start - tr.end) % 30}
    assert forward == backward == set(range(2, 16))
    assert {round(tr.t, 6) for tr in triplets if (tr.end - tr.start) % 30 == 2} == {0.5}
    assert set(cycle_triplets(30, both_directions=False)) < set(triplets)
    assert cycle_triplets(3, cyclic=False, min_gap=3) == []


def test_the_mix_takes_the_anchor_share_from_the_protocol_pool():
    anchor = [Triplet(0, 5, f, f / 5) for f in range(1, 5)]
    cycle = cycle_triplets(10)
    drawn = draw_triplets(anchor, cycle, CycleSpec(per_case=20, anchor_fraction=0.25), np.random.default_rng(0))
    assert len(drawn) == 20 and sum(tr in anchor for tr in drawn[:5]) == 5
    assert set(drawn[5:]) <= set(cycle) and len(set(drawn[5:])) == 15  # no repeats while the pool lasts
    again = draw_triplets(anchor, cycle, CycleSpec(per_case=20, anchor_fraction=0.25), np.random.default_rng(0))
    assert again == drawn
    many = draw_triplets(anchor, cycle, CycleSpec(per_case=12, anchor_fraction=0.5), np.random.default_rng(1))
    assert sorted(many[:4]) == sorted(anchor) and set(many[4:6]) <= set(anchor)  # the small pool is drawn again
    only_cycle = draw_triplets(anchor, cycle, CycleSpec(per_case=None, anchor_fraction=0.0), None)
    assert only_cycle == cycle


@pytest.mark.parametrize("num_frames, cyclic", [(30, True), (11, True), (12, False)])
def test_triplet_gap_is_the_span_that_holds_the_target(num_frames, cyclic):
    for tr in cycle_triplets(num_frames, cyclic):
        gap = triplet_gap(tr, num_frames, cyclic)
        step = 1 if (tr.frame - tr.start) % num_frames == round(tr.t * gap) else -1  # forward or backward
        assert (tr.start + step * gap) % num_frames == tr.end and tr.t == pytest.approx(
            ((step * (tr.frame - tr.start)) % num_frames) / gap)


def test_gap_power_draws_small_gaps_as_often_as_it_says():
    cycle = cycle_triplets(30)  # gaps 2..15: 60 (g - 1) triplets of gap g (30 starts, both directions)
    gaps = [triplet_gap(tr, 30) for tr in cycle]
    for power in (0, 1, 2):
        # weights (g - 1)^-p put 1 / sum_g (g - 1)^(1 - p) of the draw on gap 2: 1 %, 7 %, 31 %
        expected = 1 / sum((g - 1) ** (1 - power) for g in range(2, 16))
        shares = []
        for seed in range(20):
            spec = CycleSpec(per_case=40, anchor_fraction=0.0, gap_power=power)
            drawn = draw_triplets([], cycle, spec, np.random.default_rng(seed), gaps)
            assert len(set(drawn)) == 40 and set(drawn) <= set(cycle)  # no repeats
            shares.append(np.mean([triplet_gap(tr, 30) == 2 for tr in drawn]))
        assert np.mean(shares) == pytest.approx(expected, abs=0.04)
    same = CycleSpec(per_case=40, anchor_fraction=0.0)
    assert draw_triplets([], cycle, same, np.random.default_rng(3)) == draw_triplets(
        [], cycle, same, np.random.default_rng(3), gaps)  # power 0 draws as before, gaps or not
    with pytest.raises(ValueError, match="cycle_gaps"):
        draw_triplets([], cycle, CycleSpec(per_case=10, anchor_fraction=0.0, gap_power=1), np.random.default_rng(0))


def make_cine(root, name, frames=8, ed=1, es=4):
    """An ACDC-layout patient: a moving square on noise, one intensity offset per frame so frames differ."""
    rng = np.random.default_rng(int(name[-3:]))
    data = rng.random((10, 9, 3, frames), dtype=np.float32) * 20
    for f in range(frames):
        data[2 + f % 4 : 5 + f % 4, 3:6, :, f] += 100 + 10 * f
    folder = root / name
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 10.0, 1.0])), folder / f"{name}_4d.nii.gz")
    (folder / "Info.cfg").write_text(f"ED: {ed + 1}\nES: {es + 1}\nNbFrame: {frames}\n")
    return folder


@pytest.fixture
def cines(tmp_path):
    make_cine(tmp_path, "patient001", frames=8, ed=0, es=3)
    make_cine(tmp_path, "patient002", frames=10, ed=7, es=2)  # ED late in the series: ED -> ES wraps around
    return tmp_path


def _items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_the_protocol_switch_reproduces_the_paper_items_exactly(cines):
    paper = _items(acdc_dataset(cines, "all", spatial_size=SIZE))
    switched = _items(acdc_dataset(cines, "all", spatial_size=SIZE,
                                   cycle={"anchor_fraction": 1.0, "per_case": None}))
    assert len(paper) == len(switched) == 2 + 4
    for old, new in zip(paper, switched):
        assert (old["case"], old["frame"]) == (new["case"], new["frame"])
        assert torch.equal(old["t"], new["t"])
        assert torch.equal(old["image"], new["image"]) and torch.equal(old["target"], new["target"])


def test_cycle_items_are_the_named_frames_of_the_protocol_series(cines):
    dataset = make_dataset("acdc", cines, "all", SIZE, options={"cycle": {"per_case": 40, "seed": 3}})
    assert len(dataset) == 80
    series = {name: load_protocol_series(cines / name / f"{name}_4d.nii.gz", SIZE)
              for name in ("patient001", "patient002")}
    wrapped = 0
    for item in _items(dataset):
        frames = series[item["case"]]
        start, end, frame = item["start"], item["end"], item["frame"]
        num_frames = frames.shape[3]
        np.testing.assert_array_equal(item["image"][0].numpy(), frames[..., start])
        np.testing.assert_array_equal(item["image"][1].numpy(), frames[..., end])
        np.testing.assert_array_equal(item["target"][0].numpy(), frames[..., frame])
        gap = min((end - start) % num_frames, (start - end) % num_frames)
        assert 2 <= gap <= num_frames // 2
        valid = {(s, e, f): t for s, e, f, t in reference(num_frames, True, 2, num_frames // 2)}
        assert float(item["t"]) == pytest.approx(valid[start, end, frame])
        wrapped += (frame < min(start, end)) or (frame > max(start, end))
    assert wrapped > 0
    ed_es = [(it["start"], it["end"]) for it in _items(dataset)[:10]]
    assert ed_es == [(0, 3)] * 10  # round(0.25 * 40) anchor items first


def test_a_finite_nifti4d_series_never_wraps_and_a_cyclic_one_does(tmp_path):
    data = np.random.default_rng(0).random((6, 6, 3, 8), dtype=np.float32) + np.arange(8, dtype=np.float32)
    for name, cyclic in (("a", False), ("b", True)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
        (tmp_path / f"{name}.json").write_text(json.dumps({"cyclic": cyclic}))
    dataset = nifti4d_dataset(tmp_path, spatial_size=(6, 6, 3), cycle={"per_case": None, "anchor_fraction": 0.0})
    finite = [tr for tr in dataset.triplets["a"]]
    periodic = [tr for tr in dataset.triplets["b"]]
    assert finite and all(min(tr.start, tr.end) < tr.frame < max(tr.start, tr.end) for tr in finite)
    assert any(not min(tr.start, tr.end) < tr.frame < max(tr.start, tr.end) for tr in periodic)


@pytest.mark.parametrize("options, words", [
    ({"per_case": 0}, "per_case must be a positive integer"),
    ({"anchor_fraction": 1.5}, "anchor_fraction must be in [0, 1]"),
    ({"min_gap": 1}, "min_gap must be an integer >= 2"),
    ({"min_gap": 4, "max_gap": 3}, "max_gap must be an integer >= min_gap 4"),
    ({"gaps": [2, 4]}, "unknown option(s) ['gaps']"),
    ({"min_gap": "2"}, "min_gap must be an integer"),
    ({"per_case": 2.5}, "per_case must be a positive integer"),
    ({"both_directions": "yes"}, "both_directions must be true or false"),
    ({"gap_power": -1}, "gap_power must be a number in [0, 8]"),
    ({"gap_power": "2"}, "gap_power must be a number in [0, 8]"),
    ("all", "expected a mapping"),
])
def test_bad_cycle_options_are_named(cines, options, words):
    with pytest.raises(InputError) as caught:
        acdc_dataset(cines, "all", spatial_size=SIZE, cycle=options)
    assert caught.value.source == "cycle options" and words in caught.value.problem
