"""The benchmark's measuring tools against hand-computed values, and its output format (no timing assertions)."""

import json

import pytest
import torch

from scripts.evaluation.bench import bench, flops, peak_memory, training_step
from scripts.networks import Student, Teacher
from scripts.training.adapters import EngineLoss, IntermediatesInferer, TripletBatch
from scripts.training.losses import TMSDFLoss


def test_flop_count_of_a_known_convolution():
    conv = torch.nn.Conv3d(2, 3, 3, padding=1, bias=False)
    x = torch.rand(1, 2, 4, 5, 6)
    # each of the 3 x 120 outputs is 2 x 27 multiply-adds = 2 FLOPs each
    assert flops(lambda: conv(x)) == 2 * (3 * 4 * 5 * 6) * (2 * 27)


def test_peak_memory_sees_a_large_allocation():
    size = 64 * 2**20
    peak = peak_memory(lambda: torch.ones(size // 4).sum(), torch.device("cpu"))
    assert peak >= size


def test_bench_prints_every_measurement(capsys):
    bench(shapes=["16,16,8"], num_t=2, repeats=1, train_shapes=[])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["shape"] == [16, 16, 8]
    ratio = result["student_frame_s"] / result["voxelmorph_forward_s"]  # both rounded to 4 decimals in the JSON
    assert result["ratio_frame_to_voxelmorph"] == pytest.approx(ratio, rel=0.02)
    for key in ("student_series2_s", "series2_peak_memory_gib", "student_frame_gflop", "fraction_of_conv3d_reference",
                "paper_student_frame_s"):
        assert result[key] > 0
    paper = result["student_frame_s"] / result["paper_student_frame_s"]
    assert result["ratio_frame_to_paper_student"] == pytest.approx(paper, rel=0.02)
    neighbour = result["neighbour_refinement_frame_s"] / result["student_frame_s"]
    assert result["ratio_neighbour_refinement_to_frame"] == pytest.approx(neighbour, rel=0.02, abs=0.01)
    pair = result["upsample_pair_s"] / result["student_frame_s"]
    assert result["upsample_pair_s"] > 0 and result["ratio_upsample_pair_to_frame"] == pytest.approx(pair, rel=0.02,
                                                                                                     abs=0.01)


def test_the_inference_rows_time_the_deployed_student():
    from scripts.evaluation.bench import deployed_student

    network = deployed_student()
    assert isinstance(network, Student) and network.refine.blend_candidate and network.cubic_image_warp


def test_a_student_training_step_trains_the_student_and_leaves_the_teacher_frozen():
    batch = {"image": torch.rand(1, 2, 16, 16, 8), "target": torch.rand(1, 1, 16, 16, 8), "t": torch.tensor([0.3])}
    student, teacher = Student(), Teacher()
    before = [p.detach().clone() for p in student.parameters()]
    frozen = [p.detach().clone() for p in teacher.parameters()]
    step = training_step(student, EngineLoss(TMSDFLoss()), TripletBatch("student", with_teacher=True),
                         IntermediatesInferer(teacher), batch, torch.device("cpu"), False)
    loss = step()
    assert loss > 0 and torch.isfinite(torch.tensor(loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))  # Adam moved the student
    assert all(torch.equal(a, b) for a, b in zip(frozen, teacher.parameters()))
    assert all(p.grad is None for p in teacher.parameters())


def test_bench_training_reports_steps_ratios_and_iterations_per_hour(capsys):
    bench(shapes=[], repeats=1, train_shapes=["16,16,8"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train_shape"] == [16, 16, 8] and result["threads"] == torch.get_num_threads()
    for name in ("teacher", "student"):
        ratio = result[f"{name}_step_s"] / result["voxelmorph_step_s"]
        assert result[f"ratio_{name}_step_to_voxelmorph"] == pytest.approx(ratio, rel=0.05, abs=0.01)
    for name in ("teacher", "student", "refinement"):
        assert result[f"{name}_iterations_per_hour"] == pytest.approx(3600 / result[f"{name}_step_s"], rel=0.01)
    ratio = result["refinement_step_s"] / result["student_step_s"]
    assert result["ratio_refinement_step_to_student"] == pytest.approx(ratio, rel=0.05, abs=0.01)
    for key in ("teacher_step_wall_s", "student_step_cpu_s", "voxelmorph_step_cpu_s", "voxelmorph_iterations_per_hour"):
        assert result[key] > 0
    # the student's step runs its frozen teacher too: it cannot cost less than the teacher's own step's forward
    assert result["student_step_cpu_s"] > 0.5 * result["teacher_step_cpu_s"]

