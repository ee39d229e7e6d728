"""The memory estimate that guards inference: arithmetic, and a refusal with advice when it cannot fit."""

import os
import subprocess
import sys

import pytest
import torch

from scripts.utils import memory
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT


def test_estimate_pads_to_multiples_of_8_and_counts_t_per_pass():
    fixed, per_t = memory.BYTES_PER_VOXEL_FIXED, memory.BYTES_PER_VOXEL_PER_T
    voxels = 16 * 16 * 8  # (13, 16, 5) padded to (16, 16, 8)
    assert memory.estimate_bytes((13, 16, 5), num_t=10, max_batch=1) == voxels * (fixed + per_t)
    assert memory.estimate_bytes((13, 16, 5), num_t=3, max_batch=None) == voxels * (fixed + 3 * per_t)
    assert memory.estimate_bytes((13, 16, 5), num_t=3, max_batch=8) == voxels * (fixed + 3 * per_t)


def test_refuses_what_cannot_fit_and_says_what_to_do(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**30)
    assert memory.check_memory((64, 64, 16), 2, 1, torch.device("cpu")) < 2**30
    with pytest.raises(InputError, match=r"volume \(512, 512, 300\): needs about .* GiB on cpu .*max_batch 1"):
        memory.check_memory((512, 512, 300), 10, None, torch.device("cpu"))


def test_available_memory_of_this_machine_is_read():
    assert 0 < memory.available_bytes(torch.device("cpu")) < 1 << 62


def test_the_tightest_limit_wins(monkeypatch):
    """The machine's free memory, the rlimit headroom and the cgroup headroom: the smallest is what is free."""
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 20 * 2**30)
    monkeypatch.setattr(memory, "limit_headroom", lambda: 3 * 2**30)
    monkeypatch.setattr(memory, "cgroup_headroom", lambda root=None: 5 * 2**30)
    assert memory.available_bytes("cpu") == 3 * 2**30
    monkeypatch.setattr(memory, "cgroup_headroom", lambda root=None: 2**30)
    assert memory.available_bytes(torch.device("cpu")) == 2**30
    with pytest.raises(InputError, match=r"scan.nii.gz: reading it needs about 2.0 GiB but 1.0 GiB is free for this "
                                         r"process \(memory, ulimit and cgroup limits\)"):
        memory.check_allocation(2 * 2**30, "scan.nii.gz", "reading it")


def test_cgroup_limit_is_read_v2_and_v1(tmp_path):
    (tmp_path / "memory.max").write_text("1000000000\n")
    (tmp_path / "memory.current").write_text("400000000\n")
    assert memory.cgroup_headroom(tmp_path) == 600_000_000
    (tmp_path / "memory.max").write_text("max\n")  # no limit at this level
    assert memory.cgroup_headroom(tmp_path) > 2**60
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("300000000\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("100000000\n")
    assert memory.cgroup_headroom(tmp_path) == 200_000_000


def test_rlimit_headroom_in_a_limited_process():
    """Under ``ulimit -v`` of 3 GiB the headroom is below 3 GiB and above what the process already maps."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY)); "
            "from scripts.utils import memory; print(memory.limit_headroom(), memory.available_bytes('cpu'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    headroom, available = int(out[0]), int(out[1])
    assert 2 << 30 < headroom < 3 << 30
    assert available <= headroom
