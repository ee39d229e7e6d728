"""The memory estimate that guards inference: arithmetic, and a refusal with advice when it cannot fit."""

import pytest
import torch

from scripts.utils import memory
from scripts.utils.errors import InputError


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
