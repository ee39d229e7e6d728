"""Benchmark: the student's cost against MONAI ``VoxelMorph`` measured in the same process, as ratios.

The inference rows time the deployed architecture, ``network_def`` of ``configs/inference.json`` (untrained weights
cost the same), with the paper's network (``Student()``: bilinear warps, no blend candidate) beside it as
``paper_student_frame_s``.

``python -m scripts bench [--device cuda] [--shapes "['128,128,32','128,128,128']"]`` prints one JSON object per
shape: seconds for one student frame, for a 10-frame series (``interpolate_series``), for one pair of a whole-series
job (``--upsample 2``: one new frame, the encoding of the pair's first acquired frame reused from the pair before)
and for one ``VoxelMorph()`` forward, their ratios, peak memory of the series, the FLOPs of one frame (``torch.utils.flop_counter``) and the
achieved FLOP/s against that of one large Conv3d on the same device (how close to the machine's limit we run).

Training (``--train_shapes "['96,96,8','128,128,32']"``, the default; ``"[]"`` skips it): one more JSON object per
shape with the seconds of one training iteration (forward with every intermediate the losses need, the loss,
backward, Adam step; batch 1) of the teacher (stage 1: L_recon + L_align), of the student with its frozen teacher
(stage 2: + L_distill), and of MONAI ``VoxelMorph`` (its registration loss), their ratios to the VoxelMorph step and
iterations per hour (on a CPU the step's cost is the process's CPU time per thread, so other processes sharing the
cores do not inflate it; the wall times are printed too). The steps are the training configs' own pieces (:mod:`scripts.training.adapters`,
:class:`~scripts.training.losses.TMSDFLoss`).

Timings are the minimum over ``repeats`` runs after a warm-up; nothing here is asserted by tests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence

import torch
from monai.networks.nets import VoxelMorph
from torch.utils.flop_counter import FlopCounterMode

from scripts.baselines.voxelmorph import RegistrationLoss, voxelmorph_net
from scripts.networks import Student, Teacher
from scripts.networks.neighbours import NeighbourRefinement
from scripts.networks.refine import refinement_only
from scripts.training.adapters import EngineLoss, IntermediatesInferer, TripletBatch
from scripts.training.losses import TMSDFLoss
from scripts.utils.args import parse_bool, parse_shape

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device, repeats: int,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Minimum time of ``fn`` over ``repeats`` runs, after one warm-up run; ``clock`` is wall time by default,
    ``time.process_time`` gives the process's CPU time (what a CPU step costs when other processes share the cores)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = clock()
        fn()
        _sync(device)
        best = min(best, clock() - start)
    return best


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:  # Linux: writing 5 to clear_refs resets VmHWM, the process's peak resident memory
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory in bytes while ``fn`` runs: CUDA allocator peak, or the process's peak resident set on CPU."""
    _reset_peak(device)
    fn()
    return _peak_bytes(device)


def flops(fn: Callable[[], object]) -> int:
    """Floating point operations of one call of ``fn`` (``torch.utils.flop_counter``; convolutions and matmuls)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def conv_reference_flops_per_second(device: torch.device, repeats: int, amp: bool) -> float:
    """FLOP/s of one large Conv3d (32 -> 32 channels, 3^3, 64^3 voxels): what the device sustains on our kind of op."""
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).to(device)
    x = torch.rand(1, 32, 64, 64, 64, device=device)

    def run():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            conv(x)

    return flops(run) / seconds(run, device, repeats)


def deployed_student() -> torch.nn.Module:
    """The student as the product runs it: ``network_def`` of ``configs/inference.json`` (untrained)."""
    from scripts.evaluation.superres_native import product_steps

    return product_steps(motion_region=True)[0]


def bench_shape(shape: Sequence[int], device: torch.device, num_t: int, repeats: int, amp: bool) -> dict:
    """Every measurement for one volume shape (X, Y, Z)."""
    student = deployed_student().to(device).eval()
    paper = Student().to(device).eval()
    voxelmorph = VoxelMorph().to(device).eval()
    i0, i1 = (torch.rand(1, 1, *shape, device=device) for _ in range(2))
    pair = torch.cat([i0, i1], dim=1)
    t_one = torch.full((1,), 0.5, device=device)
    ts = torch.linspace(0, 1, num_t + 2, device=device)[1:-1]

    def context():
        return torch.autocast(device.type, enabled=amp)

    def one_frame():
        with torch.no_grad(), context():
            return student(pair, t_one)

    def paper_frame():
        with torch.no_grad(), context():
            return paper(pair, t_one)

    def series():
        with torch.no_grad(), context():
            return student.interpolate_series(i0, i1, ts)

    def vm_forward():
        with torch.no_grad(), context():
            return voxelmorph(i0, i1)

    held = student.encode_frame(i0)

    def cine_pair():  # one pair of --upsample 2: its next frame encoded, the encoding of its first frame reused
        with torch.no_grad(), context():
            return student.interpolate_encoded(held, student.encode_frame(i1), t_one)

    neighbours = NeighbourRefinement().to(device).eval()
    around = torch.rand(1, 5, *shape, device=device)

    def neighbour_frame():  # the neighbour refinement of one frame of an --upsample job
        with torch.no_grad(), context():
            return neighbours(around, t_one)

    frame_s, paper_s, series_s, vm_s, neighbour_s, cine_pair_s = (
        seconds(f, device, repeats) for f in (one_frame, paper_frame, series, vm_forward, neighbour_frame, cine_pair))
    frame_flops = flops(one_frame)
    return {
        "shape": list(shape),
        "device": str(device),
        "amp": amp,
        "student_frame_s": round(frame_s, 4),
        f"student_series{num_t}_s": round(series_s, 4),
        "voxelmorph_forward_s": round(vm_s, 4),
        "ratio_frame_to_voxelmorph": round(frame_s / vm_s, 2),
        "paper_student_frame_s": round(paper_s, 4),
        "ratio_frame_to_paper_student": round(frame_s / paper_s, 2),
        f"ratio_series{num_t}_to_voxelmorph": round(series_s / vm_s, 2),
        "neighbour_refinement_frame_s": round(neighbour_s, 4),
        "ratio_neighbour_refinement_to_frame": round(neighbour_s / frame_s, 2),
        "upsample_pair_s": round(cine_pair_s, 4),
        "ratio_upsample_pair_to_frame": round(cine_pair_s / frame_s, 2),
        "frames_per_s": round(1 / frame_s, 2),
        f"series{num_t}_peak_memory_gib": round(peak_memory(series, device) / 2**30, 3),
        "student_frame_gflop": round(frame_flops / 1e9, 2),
        "student_frame_gflop_per_s": round(frame_flops / frame_s / 1e9, 2),
    }


def training_step(network: torch.nn.Module, loss: torch.nn.Module, prepare: Callable, inferer: Callable,
                  batch: dict, device: torch.device, amp: bool) -> Callable[[], float]:
    """One training iteration as MONAI's ``SupervisedTrainer`` runs it (prepare, infer, loss, backward, Adam step)."""
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-6)
    network.train()

    def step() -> float:
        inputs, target, args, kwargs = prepare(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            value = loss(inferer(inputs, network, *args, **kwargs), target)
        value.backward()
        optimizer.step()
        return value.item()

    return step


def bench_training(shape: Sequence[int], device: torch.device, repeats: int, amp: bool) -> dict:
    """Seconds per training iteration of the teacher, the student (frozen teacher), the refinement stage (motion
    frozen, L_recon only) and VoxelMorph at ``shape``."""
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(1, 2, *shape, generator=g), "target": torch.rand(1, 1, *shape, generator=g),
             "t": torch.tensor([0.4])}
    tmsdf_loss = EngineLoss(TMSDFLoss(lambda_r=0.01, lambda_d=0.1))
    teacher_step = training_step(Teacher().to(device), tmsdf_loss, TripletBatch("teacher"), IntermediatesInferer(),
                                 batch, device, amp)
    student_step = training_step(Student().to(device), tmsdf_loss, TripletBatch("student", with_teacher=True),
                                 IntermediatesInferer(Teacher().to(device)), batch, device, amp)
    # the refinement stage (configs/train_refine.json): motion frozen, prediction-only steps, L_recon alone
    refine_step = training_step(refinement_only(Student(blend_candidate=True).to(device)),
                                EngineLoss(TMSDFLoss(use_align=False, use_distill=False)), TripletBatch("student"),
                                IntermediatesInferer(fields=False), batch, device, amp)

    def vm_prepare(data, dev):
        image = data["image"].to(dev)
        return image[:, :1], image[:, 1:2], (image[:, 1:2],), {}

    def vm_infer(moving, network, fixed):
        return network(moving, fixed)

    vm_step = training_step(voxelmorph_net().to(device), RegistrationLoss(), vm_prepare, vm_infer, batch, device, amp)
    steps = {"teacher": teacher_step, "student": student_step, "refinement": refine_step, "voxelmorph": vm_step}
    wall = {name: seconds(step, device, repeats) for name, step in steps.items()}
    cpu = {name: seconds(step, device, repeats, time.process_time) for name, step in steps.items()}
    # on a CPU the process's CPU time per thread is the step's cost even when other processes share the cores
    cost = wall if device.type == "cuda" else {name: value / torch.get_num_threads() for name, value in cpu.items()}
    teacher_s, student_s, refine_s, vm_s = cost["teacher"], cost["student"], cost["refinement"], cost["voxelmorph"]
    return {
        "train_shape": list(shape),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "amp": amp,
        **{f"{name}_step_wall_s": round(value, 4) for name, value in wall.items()},
        **{f"{name}_step_cpu_s": round(value, 4) for name, value in cpu.items()},
        "teacher_step_s": round(teacher_s, 4),
        "student_step_s": round(student_s, 4),
        "voxelmorph_step_s": round(vm_s, 4),
        "ratio_teacher_step_to_voxelmorph": round(teacher_s / vm_s, 2),
        "ratio_student_step_to_voxelmorph": round(student_s / vm_s, 2),
        "refinement_step_s": round(refine_s, 4),
        "ratio_refinement_step_to_student": round(refine_s / student_s, 2),
        "teacher_iterations_per_hour": round(3600 / teacher_s),
        "student_iterations_per_hour": round(3600 / student_s),
        "refinement_iterations_per_hour": round(3600 / refine_s),
        "voxelmorph_iterations_per_hour": round(3600 / vm_s),
    }


def bench(device: str = "cpu", shapes: Sequence[str] = ("128,128,32", "128,128,128"), num_t: int = 10,
          repeats: int = 3, amp: bool = False, threads: int | None = None,
          train_shapes: Sequence[str] = ("96,96,8", "128,128,32")) -> None:
    """Time the student against MONAI VoxelMorph in one process and print JSON (one object per shape).

    Args:
        device: cpu or cuda.
        shapes: volume shapes as "X,Y,Z" strings.
        num_t: time points of the series measurement.
        repeats: timed runs per measurement (the minimum is kept).
        amp: autocast (float16 on CUDA, bfloat16 on CPU; on CPU it is ~1.3x cheaper per training step but returned
            non-finite volumes in some repeated forward passes on a CPU with AMX, so the training configs keep
            float32 there).
        threads: torch CPU threads (default: torch's choice).
        train_shapes: shapes of the training-step measurement ("X,Y,Z" strings; empty to skip it).
    """
    amp = parse_bool(amp, "--amp")
    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    reference = conv_reference_flops_per_second(dev, repeats, amp)
    for shape in ([shapes] if isinstance(shapes, str) else shapes):
        result = bench_shape(parse_shape(shape), dev, num_t, repeats, amp)
        result["conv3d_reference_gflop_per_s"] = round(reference / 1e9, 2)
        result["fraction_of_conv3d_reference"] = round(result["student_frame_gflop_per_s"] * 1e9 / reference, 3)
        print(json.dumps(result), flush=True)
    for shape in ([train_shapes] if isinstance(train_shapes, str) else train_shapes or []):
        print(json.dumps(bench_training(parse_shape(shape), dev, repeats, amp)), flush=True)
