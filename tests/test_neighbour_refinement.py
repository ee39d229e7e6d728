"""The neighbour refinement (scripts/networks/neighbours.py): the network, which acquired frames are a pair's context, its
training samples (scripts/training/neighbour_frames.py), its training config, and where the product applies it
(``SeriesInterpolator.upsample``, the super-resolution benchmark)."""

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from scripts.evaluation.superres import _subjects
from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.neighbour_refiner import NeighbourRefiner
from scripts.inference.times import upsample_plan
from scripts.networks import Student
from scripts.networks.neighbours import INPUTS, NeighbourRefinement, neighbour_indices, pair_context, stack_inputs
from scripts.training.handlers import GradientClip
from scripts.training.losses import NegativePSNR
from scripts.training.neighbour_frames import REVERSED, NeighbourFrames, neighbour_frames, series_samples
from scripts.utils.checkpoint import save_weights
from scripts.utils.paths import ROOT

SMALL = {"channels": [4, 8, 8, 8]}


def _trained(width: int = 4, seed: int = 1) -> NeighbourRefinement:
    """A refinement whose output convolution is not zero (as after training)."""
    torch.manual_seed(seed)
    network = NeighbourRefinement(width)
    torch.nn.init.normal_(network.out.weight, std=0.05)
    return network.eval()


def test_an_untrained_refinement_returns_the_student_frame_exactly():
    network = NeighbourRefinement(4).eval()
    volumes = torch.rand(3, len(INPUTS), 20, 18, 5)
    with torch.no_grad():
        out = network(volumes, torch.tensor([0.25, 0.5, 0.75]))
    assert out.shape == (3, 1, 20, 18, 5)
    assert torch.equal(out, volumes[:, :1])


def test_a_trained_refinement_reads_the_frames_around_the_pair():
    network = _trained()
    volumes = torch.rand(1, len(INPUTS), 16, 16, 4)
    moved = volumes.clone()
    moved[:, 1] = torch.rand(16, 16, 4)  # another frame before the pair
    with torch.no_grad():
        a, b = network(volumes, torch.tensor([0.5])), network(moved, torch.tensor([0.5]))
    assert not torch.allclose(a, b)


def test_odd_in_plane_sizes_are_padded_and_cropped_back():
    network = _trained()
    with torch.no_grad():
        assert network(torch.rand(2, 5, 13, 22, 3), torch.tensor([0.5, 0.5])).shape == (2, 1, 13, 22, 3)
    with pytest.raises(ValueError, match="expected"):
        network(torch.rand(1, 4, 16, 16, 4), torch.tensor([0.5]))


@pytest.mark.parametrize("pair, frames, cyclic, expected", [
    ((3, 4), 10, True, (2, 5)),
    ((9, 0), 10, True, (8, 1)),  # the pair that wraps round the cycle
    ((0, 1), 10, True, (9, 2)),
    ((0, 1), 10, False, None),  # an open series' first pair has no frame before it
    ((8, 9), 10, False, None),
    ((4, 5), 10, False, (3, 6)),
    ((1, 2), 3, True, None),  # fewer than 4 frames: no context
])
def test_neighbour_indices(pair, frames, cyclic, expected):
    assert neighbour_indices(*pair, frames, cyclic) == expected


@pytest.mark.parametrize("start, frames, factor, cyclic, expected", [
    (10, 12, 2, True, (8, 2)),  # the last pair (10, 0) round the cycle: kept frames 8 before it, 2 after it
    (0, 12, 2, True, (10, 4)),
    (4, 12, 2, False, (2, 8)),
    (0, 12, 2, False, None),  # an open series' first pair
    (0, 12, 4, True, None),  # 3 kept frames: no context
    (3, 13, 3, True, (0, 9)),  # kept 0, 3, 6, 9, 12
])
def test_pair_context_gives_series_frames(start, frames, factor, cyclic, expected):
    assert pair_context(start, frames, factor, cyclic) == expected


def _series(frames: int = 12, shape=(16, 16, 4)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((*shape, frames), dtype=np.float32)


def test_series_samples_hold_the_student_frame_and_the_four_acquired_frames():
    series = _series(12)
    student = Student(**SMALL).eval()
    samples = series_samples(series, 4, student)  # kept 0, 4, 8: fewer than 4 frames, no context
    assert len(samples["t"]) == 0
    samples = series_samples(series, 2, student)  # kept 0, 2, ..., 10: 6 pairs, one dropped frame each
    assert samples["image"].shape == (6, 5, 16, 16, 4) and samples["target"].shape == (6, 1, 16, 16, 4)
    assert torch.allclose(samples["t"], torch.full((6,), 0.5))
    last = samples["image"][5].float()  # the pair (10, 0) round the cycle: frames 8 before it, 2 after
    for channel, frame in zip((1, 2, 3, 4), (8, 10, 0, 2)):
        assert torch.equal(last[channel], torch.from_numpy(series[..., frame]).half().float())
    assert torch.equal(samples["target"][5, 0], torch.from_numpy(series[..., 11]).half())
    with torch.no_grad():
        expected = student.interpolate_series(torch.from_numpy(series[..., 10])[None, None],
                                              torch.from_numpy(series[..., 0])[None, None], torch.tensor([0.5]))
    assert torch.allclose(last[0], expected[0, 0].clamp(0, 1), atol=1e-3)  # float16 storage


def test_series_samples_of_another_phase_keep_other_frames():
    series = _series(12)
    student = Student(**SMALL).eval()
    samples = series_samples(series, 2, student, phase=1)  # kept 1, 3, ..., 11: the even frames are dropped
    assert [int(np.argmin([np.abs(s.float().numpy() - series[..., f]).max() for f in range(12)]))
            for s in samples["target"][:, 0]] == [2, 4, 6, 8, 10, 0]
    first = samples["image"][0].float()  # the pair (1, 3): frames 11 before it, 5 after
    for channel, frame in zip((1, 2, 3, 4), (11, 1, 3, 5)):
        assert torch.equal(first[channel], torch.from_numpy(series[..., frame]).half().float())
    assert torch.allclose(samples["span"], torch.full((6,), 1 / 6))
    assert torch.allclose(series_samples(series, 3, student)["span"], torch.full((8,), 1 / 4))


def _symmetries(volume: torch.Tensor, axes=(1, 2), swap: bool = False) -> list[torch.Tensor]:
    """The flips of ``axes`` of a (C, X, Y, Z) volume, each also with x and y swapped when ``swap``."""
    out = []
    for flips in range(2 ** len(axes)):
        v = volume
        for bit, axis in enumerate(axes):
            if flips >> bit & 1:
                v = v.flip(axis)
        out += [v, v.transpose(1, 2)] if swap else [v]
    return out


@pytest.mark.parametrize("flip_axes, swap", [((0, 1), False), ((0, 1, 2), True)])
def test_augmented_items_reverse_time_flip_and_swap_consistently(flip_axes, swap):
    image = torch.rand(1, 5, 12, 10, 3).half()
    target = torch.rand(1, 1, 12, 10, 3).half()
    samples = {"image": image, "target": target, "t": torch.tensor([0.25])}
    dataset = NeighbourFrames(samples, augment=True, patch=8, flip_axes=flip_axes, swap=swap)
    reversals, shapes = set(), set()
    allowed = _symmetries(torch.cat([image[0], target[0]]).float(), [a + 1 for a in flip_axes], swap)
    for seed in range(32):
        dataset.set_random_state(seed)
        item = dataset[0]
        assert item["image"].shape == (5, 8, 8, 3) and item["target"].shape == (1, 8, 8, 3)
        reversed_ = bool(item["t"] == 0.75)
        assert reversed_ or item["t"] == 0.25
        reversals.add(reversed_)
        order = REVERSED if reversed_ else list(range(5))
        # the same crop, flips and swap on every channel and the target: channel k is stored channel order[k]
        source = torch.cat([image[0, order], target[0]]).float()
        found = [s for s in _symmetries(source, [a + 1 for a in flip_axes], swap)
                 for x in range(s.shape[1] - 7) for y in range(s.shape[2] - 7)
                 if torch.equal(torch.cat([item["image"], item["target"]]), s[:, x:x + 8, y:y + 8])]
        assert found
        shapes.add(found[0].shape[1])
    assert reversals == {True, False} and len(allowed) == (16 if swap else 4)
    assert shapes == ({12, 10} if swap else {12})  # with swap, both in-plane orders were drawn
    assert NeighbourFrames(samples)[0]["image"].shape == (5, 12, 10, 3)  # no augmentation: the whole plane
    with pytest.raises(Exception, match="flip_axes"):
        NeighbourFrames(samples, flip_axes=(3,))


def test_the_default_augmentation_draws_as_release_0_10_0_did():
    """With the default flip axes and no swap the draws (and so the shipped weights' recipe) are unchanged:
    reversal, two in-plane flips, the patch corner."""
    dataset = NeighbourFrames({"image": torch.zeros(1, 5, 8, 8, 2).half(), "target": torch.zeros(1, 1, 8, 8, 2).half(),
                               "t": torch.tensor([0.5])}, augment=True)
    dataset.set_random_state(7)
    dataset.randomize()
    reference = np.random.RandomState(7)
    assert dataset._reverse == (reference.rand() < 0.5)
    assert list(dataset._flips) == list(reference.rand(2) < 0.5)
    assert not dataset._swap and list(dataset._corner) == list(reference.rand(2))


def test_items_run_across_the_series_in_order():
    parts = [{"image": torch.full((n, 5, 4, 4, 2), float(i)).half(), "target": torch.zeros(n, 1, 4, 4, 2).half(),
              "t": torch.arange(n, dtype=torch.float32)} for i, n in enumerate((2, 0, 3))]
    dataset = NeighbourFrames(parts)
    assert len(dataset) == 5
    assert [(float(dataset[i]["image"][0, 0, 0, 0]), float(dataset[i]["t"])) for i in range(5)] == [
        (0, 0), (0, 1), (2, 0), (2, 1), (2, 2)]
    with pytest.raises(IndexError):
        dataset[5]


def test_neighbour_frames_reads_the_student_frames_from_its_cache(tiny_acdc, tmp_path):
    weights = save_weights(Student(**SMALL), tmp_path / "student.pt")
    build = {"dataset_dir": tiny_acdc, "student_weights": weights, "split": "train", "spatial_size": (24, 24, 8),
             "factors": [2], "cache_dir": tmp_path / "cache", "options": {"train_range": [1, 1]}}
    first = neighbour_frames(student=Student(**SMALL), **build)
    assert len(first) == 5  # 10 frames, every 2nd kept: 5 pairs round the cycle, one dropped frame each
    assert len(list((tmp_path / "cache").iterdir())) == 1

    class Refuses(Student):
        def interpolate_series(self, *args, **kwargs):
            raise AssertionError("the cached frames should have been read")

    again = neighbour_frames(student=Refuses(**SMALL), **build)
    assert all(torch.equal(again[i]["image"], first[i]["image"]) for i in range(5))
    for bad in ({"factors": [1]}, {"phases": 0}, {"max_span": 0}, {"flip_axes": [3]}):
        with pytest.raises(Exception, match=next(iter(bad))):
            neighbour_frames(student=Student(**SMALL), **{**build, **bad})


def test_neighbour_frames_remakes_cached_files_without_spans(tiny_acdc, tmp_path):
    weights = save_weights(Student(**SMALL), tmp_path / "student.pt")
    build = {"dataset_dir": tiny_acdc, "student_weights": weights, "spatial_size": (24, 24, 8), "factors": [2],
             "cache_dir": tmp_path / "cache", "options": {"train_range": [1, 1]}}
    neighbour_frames(student=Student(**SMALL), **build)
    (path,) = (tmp_path / "cache").iterdir()
    old = torch.load(path, weights_only=True)
    del old["span"]
    torch.save(old, path)
    neighbour_frames(student=Student(**SMALL), **build)
    assert torch.allclose(torch.load(path, weights_only=True)["span"], torch.full((5,), 1 / 5))


def test_neighbour_frames_draw_every_phase_and_leave_out_wide_pairs(tiny_acdc, tmp_path):
    weights = save_weights(Student(**SMALL), tmp_path / "student.pt")
    build = {"dataset_dir": tiny_acdc, "student_weights": weights, "spatial_size": (24, 24, 8),
             "cache_dir": tmp_path / "cache", "options": {"train_range": [1, 1]}}
    # 10 frames: x2 keeps 5 (a fifth of the cycle per pair), x3 keeps 4 (a quarter)
    assert len(neighbour_frames(student=Student(**SMALL), factors=[2, 3], **build)) == 5 + 6
    assert len(neighbour_frames(student=Student(**SMALL), factors=[2, 3], phases=2, **build)) == 10 + 12
    assert len(neighbour_frames(student=Student(**SMALL), factors=[2, 3], phases=5, **build)) == 10 + 18
    assert len(neighbour_frames(student=Student(**SMALL), factors=[2, 3], phases=2, max_span=0.2, **build)) == 10
    assert len(neighbour_frames(student=Student(**SMALL), factors=[2, 3], max_span=0.1, **build)) == 0
    assert sorted(p.name.split("_")[1] for p in (tmp_path / "cache").iterdir()) == ["x2", "x2p1", "x3", "x3p1", "x3p2"]


def test_neighbour_frames_reads_each_series_once_for_every_factor(tiny_acdc, tmp_path, monkeypatch):
    import scripts.training.neighbour_frames as module

    reads = []
    original = module.series_cases

    def counted(*args, **kwargs):  # the same cases, each read logged
        return [(name, lambda name=name, load=load: reads.append(name) or load())
                for name, load in original(*args, **kwargs)]

    monkeypatch.setattr(module, "series_cases", counted)
    weights = save_weights(Student(**SMALL), tmp_path / "student.pt")
    neighbour_frames(tiny_acdc, Student(**SMALL), weights, spatial_size=(24, 24, 8), factors=[2, 3],
                     options={"train_range": [1, 2]})
    assert reads == ["patient001", "patient002"]


def test_negative_psnr_is_minus_the_mean_psnr_of_the_items():
    pred, target = torch.rand(3, 1, 8, 8, 2), torch.rand(3, 1, 8, 8, 2)
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1 / mse)
    assert NegativePSNR(eps=0)(pred, target).item() == pytest.approx(-psnr.mean().item(), rel=1e-5)


def test_gradient_clip_bounds_the_global_norm():
    network = torch.nn.Linear(4, 4)
    (network(torch.ones(1, 4)) * 1e4).sum().backward()

    class Engine:
        amp, scaler = False, None

    engine = Engine()
    engine.network = network
    GradientClip(max_norm=2.0)(engine)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in network.parameters()]))
    assert norm.item() == pytest.approx(2.0, rel=1e-4)


def test_the_training_config_trains_the_refinement_on_the_students_frames(tiny_acdc, tmp_path):
    student = save_weights(Student(**SMALL), tmp_path / "student.pt")
    files = [str(ROOT / "configs" / c) for c in ("train_teacher.json", "train_neighbours.json")]
    wf = ConfigWorkflow(
        config_file=files, workflow_type="train", logging_file=False, bundle_root=str(ROOT),
        spatial_size=[24, 24, 8], channels=SMALL["channels"], dataset_dir=str(tiny_acdc),
        output_dir=str(tmp_path / "run"), student_weights=str(student), width=4, patch=16, batch_size=2,
        factors=[2], phases=2, swap=True, train_dataset_options={"train_range": [1, 2]},
        val_dataset_options={"test_range": [91, 91]}, num_epochs=1, epoch_length=3)
    wf.initialize()
    assert len(wf.parser.get_parsed_content("train#dataset")) == 20  # 2 phases of 5 pairs each
    assert len(wf.parser.get_parsed_content("validate#dataset")) == 5
    wf.run()
    network = wf.parser.get_parsed_content("network")
    assert network.out.weight.abs().sum() > 0  # moved from its zero start
    assert (tmp_path / "run" / "neighbours.pt").is_file() and (tmp_path / "run" / "neighbours_best.pt").is_file()
    assert sorted(p.name.rsplit("_", 2)[0] for p in (tmp_path / "run" / "student_frames").iterdir()) == [
        "patient001_x2", "patient001_x2p1", "patient002_x2", "patient002_x2p1", "patient091_x2"]


def test_the_training_config_uses_the_products_student_and_warp_choice():
    from monai.bundle import ConfigParser

    train, product = ConfigParser(), ConfigParser()
    train.read_config([str(ROOT / "configs" / c) for c in ("train_teacher.json", "train_neighbours.json")])
    product.read_config(str(ROOT / "configs" / "inference.json"))
    for key in ("channels",):
        assert train[key] == product[key]
    assert {k: v for k, v in train["student_def"].items() if k != "image_warp"} == {
        k: v for k, v in product["network_def"].items() if k != "image_warp"}
    assert train["student_def"]["image_warp"] == "cubic"  # the cardiac image warp
    assert {k: v for k, v in train["warp_choice"].items() if k != "near"} == {
        k: v for k, v in product["warp_choice"].items() if k != "near"}
    assert train["network_def"]["_target_"] == product["neighbour_def"]["_target_"]
    assert train.get_parsed_content("width") == product["neighbour_def"]["width"]


def _refiner(tmp_path, network: NeighbourRefinement, max_span: float | None = None) -> NeighbourRefiner:
    """``network`` saved and wrapped as the product loads it (into a fresh network of the same width)."""
    path = save_weights(network, tmp_path / "n.pt", overwrite=True)
    return NeighbourRefiner(NeighbourRefinement(network.out.in_channels), path, max_span)


def _interpolator(tmp_path, neighbours, max_span=None):
    torch.manual_seed(0)
    weights = save_weights(Student(**SMALL), tmp_path / "student.pt", overwrite=True)
    refiner = None if neighbours is None else _refiner(tmp_path, neighbours, max_span)
    return SeriesInterpolator(Student(**SMALL), weights, device="cpu", neighbours=refiner)


@pytest.mark.parametrize("cyclic", [True, False])
def test_upsample_refines_exactly_the_pairs_with_frames_on_both_sides(tmp_path, cyclic):
    frames = _series(6)
    plan = upsample_plan(6, 2, cyclic)
    alone = _interpolator(tmp_path, None).upsample(frames, plan)
    refined = _interpolator(tmp_path, _trained()).upsample(frames, plan)
    for m, frame in enumerate(plan):
        same = np.array_equal(alone[..., m], refined[..., m])
        has_context = not frame.acquired and neighbour_indices(frame.previous, frame.next, 6, cyclic) is not None
        assert same != has_context, (m, frame)
    assert np.isfinite(refined).all() and refined.min() >= 0 and refined.max() <= 1
    # untrained (output convolution zero): exactly the student alone
    assert np.array_equal(_interpolator(tmp_path, NeighbourRefinement(4)).upsample(frames, plan), alone)


def test_series_whose_pairs_span_more_than_the_limit_run_the_student_alone(tmp_path):
    frames = _series(6)  # consecutive frames span 1/6 of the series
    plan = upsample_plan(6, 2, True)
    alone = _interpolator(tmp_path, None).upsample(frames, plan)
    wide = _interpolator(tmp_path, _trained(), max_span=0.1)
    near = _interpolator(tmp_path, _trained(), max_span=1 / 6)
    assert not wide.refines(6) and near.refines(6) and wide.refines(10)
    assert np.array_equal(wide.upsample(frames, plan), alone)
    assert not np.array_equal(near.upsample(frames, plan), alone)


def test_the_product_refines_pairs_as_near_as_the_cubic_warp():
    from scripts.evaluation.superres_native import product_steps

    steps = product_steps(True)
    assert steps.neighbours is not None and steps.neighbours.checkpoint.name == "neighbour_refinement.pt"
    assert steps.neighbours.max_span == steps.warp_choice.wide_above
    assert product_steps(False).neighbours is not None


@pytest.mark.parametrize("overrides", [{"neighbour_refinement": False}, {"anatomy": "lung"}])
def test_the_config_runs_no_refinement_when_off_or_without_weights(overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "inference.json"))
    parser.update(overrides)
    assert parser.get_parsed_content("neighbour_refiner") is None
    assert parser.get_parsed_content("inferer").neighbours is None


def test_the_refinement_needs_its_weights(tmp_path):
    with pytest.raises(Exception, match="neighbour_checkpoint"):
        NeighbourRefiner(NeighbourRefinement(4), None)
    with pytest.raises(Exception, match="max_span"):
        NeighbourRefiner(NeighbourRefinement(4), tmp_path / "n.pt", 0)
    missing = NeighbourRefiner(NeighbourRefinement(4), tmp_path / "n.pt")
    with pytest.raises(Exception, match="n.pt.*not found"):
        SeriesInterpolator(Student(**SMALL), save_weights(Student(**SMALL), tmp_path / "s.pt"), device="cpu",
                           neighbours=missing)
    with pytest.raises(RuntimeError, match="load"):
        missing(torch.rand(1, 1, 8, 8, 2), [torch.rand(1, 1, 8, 8, 2)] * 4, torch.tensor([0.5]))


def test_the_refiner_applies_to_pairs_no_wider_than_its_limit(tmp_path):
    refiner = _refiner(tmp_path, _trained(), max_span=1 / 6)
    assert refiner.applies(1 / 6) and refiner.applies(0.1) and not refiner.applies(0.2) and not refiner.applies(None)
    assert _refiner(tmp_path, _trained()).applies(1.0) and _refiner(tmp_path, _trained()).applies(None)


def test_the_benchmark_gives_each_subject_its_context_and_the_student_refines_with_it(tmp_path):
    from scripts.evaluation.methods import StudentMethod

    series = _series(12)
    subjects = _subjects("s", series, 2, cyclic=True)
    assert all(s.context is not None for s in subjects)
    last = subjects[-1]  # pair (10, 0): frame 8 before it, frame 2 after it
    assert torch.equal(last.context[0, 0], torch.from_numpy(series[..., 8]))
    assert torch.equal(last.context[1, 0], torch.from_numpy(series[..., 2]))
    assert all(s.context is None for s in _subjects("s", series, 4, cyclic=True))  # 3 kept frames
    open_ = _subjects("s", series, 2, cyclic=False)
    assert open_[0].context is None and open_[-1].context is None and open_[1].context is not None

    weights = save_weights(Student(**SMALL), tmp_path / "student.pt")
    refinement = _trained()
    plain = StudentMethod(Student(**SMALL), weights, None)
    method = StudentMethod(Student(**SMALL), weights, None, None, _refiner(tmp_path, refinement))
    for m in (plain, method):
        m.setup(torch.device("cpu"))
    subject = subjects[2]
    student = plain.predict(subject, None)
    with torch.no_grad():
        expected = refinement(stack_inputs(student.clamp(0, 1), [subject.context[:1], subject.i0, subject.i1,
                                                                 subject.context[1:]]), subject.ts).clamp(0, 1)
    assert torch.allclose(method.predict(subject, None), expected)
    assert not torch.allclose(expected, student)
    bounded = StudentMethod(Student(**SMALL), weights, None, None, _refiner(tmp_path, refinement, max_span=0.1))
    bounded.setup(torch.device("cpu"))
    assert subject.span == pytest.approx(1 / 6)  # 6 kept frames
    assert torch.equal(bounded.predict(subject, None), student)
