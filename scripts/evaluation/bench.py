"""Benchmark: the student's cost against MONAI ``VoxelMorph`` measured in the same process, as ratios.

``python -m scripts bench [--device cuda] [--shapes "['128,128,32','128,128,128']"]`` prints one JSON object per
shape: seconds for one student frame, for a 10-frame series (``interpolate_series``) and for one ``VoxelMorph()``
forward, their ratios, peak memory of the series, the FLOPs of one frame (``torch.utils.flop_counter``) and the
achieved FLOP/s against that of one large Conv3d on the same device (how close to the machine's limit we run).
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

from scripts.networks import Student
from scripts.utils.args import parse_shape

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` runs, after one warm-up run."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
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


def bench_shape(shape: Sequence[int], device: torch.device, num_t: int, repeats: int, amp: bool) -> dict:
    """Every measurement for one volume shape (X, Y, Z)."""
    student = Student().to(device).eval()
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

    def series():
        with torch.no_grad(), context():
            return student.interpolate_series(i0, i1, ts)

    def vm_forward():
        with torch.no_grad(), context():
            return voxelmorph(i0, i1)

    frame_s, series_s, vm_s = (seconds(f, device, repeats) for f in (one_frame, series, vm_forward))
    frame_flops = flops(one_frame)
    return {
        "shape": list(shape),
        "device": str(device),
        "amp": amp,
        "student_frame_s": round(frame_s, 4),
        f"student_series{num_t}_s": round(series_s, 4),
        "voxelmorph_forward_s": round(vm_s, 4),
        "ratio_frame_to_voxelmorph": round(frame_s / vm_s, 2),
        f"ratio_series{num_t}_to_voxelmorph": round(series_s / vm_s, 2),
        "frames_per_s": round(1 / frame_s, 2),
        f"series{num_t}_peak_memory_gib": round(peak_memory(series, device) / 2**30, 3),
        "student_frame_gflop": round(frame_flops / 1e9, 2),
        "student_frame_gflop_per_s": round(frame_flops / frame_s / 1e9, 2),
    }


def bench(device: str = "cpu", shapes: Sequence[str] = ("128,128,32", "128,128,128"), num_t: int = 10,
          repeats: int = 3, amp: bool = False, threads: int | None = None) -> None:
    """Time the student against MONAI VoxelMorph in one process and print JSON (one object per shape).

    Args:
        device: cpu or cuda.
        shapes: volume shapes as "X,Y,Z" strings.
        num_t: time points of the series measurement.
        repeats: timed runs per measurement (the minimum is kept).
        amp: autocast (float16 on CUDA, bfloat16 on CPU).
        threads: torch CPU threads (default: torch's choice).
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    reference = conv_reference_flops_per_second(dev, repeats, amp)
    for shape in ([shapes] if isinstance(shapes, str) else shapes):
        result = bench_shape(parse_shape(shape), dev, num_t, repeats, amp)
        result["conv3d_reference_gflop_per_s"] = round(reference / 1e9, 2)
        result["fraction_of_conv3d_reference"] = round(result["student_frame_gflop_per_s"] * 1e9 / reference, 3)
        print(json.dumps(result), flush=True)
