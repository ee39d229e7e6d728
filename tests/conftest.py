"""Shared test set-up: CPU, few threads, deterministic seeds."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# one thread: tiny test tensors gain nothing from more, and OpenMP threads thrash when the cores are shared
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
