"""The benchmark's measuring tools against hand-computed values, and its output format (no timing assertions)."""

import json

import pytest
import torch

from scripts.evaluation.bench import bench, flops, peak_memory


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
    bench(shapes=["16,16,8"], num_t=2, repeats=1)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["shape"] == [16, 16, 8]
    ratio = result["student_frame_s"] / result["voxelmorph_forward_s"]  # both rounded to 4 decimals in the JSON
    assert result["ratio_frame_to_voxelmorph"] == pytest.approx(ratio, rel=0.02)
    for key in ("student_series2_s", "series2_peak_memory_gib", "student_frame_gflop", "fraction_of_conv3d_reference"):
        assert result[key] > 0
