"""Shared test set-up: CPU, few threads, deterministic seeds."""

import shutil
import sys

import pytest
import torch

from scripts.utils.paths import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# one thread: tiny test tensors gain nothing from more, and OpenMP threads thrash when the cores are shared
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_acdc(tmp_path_factory):
    """A tiny ACDC-layout phantom: training patients 001, 002 and test patient 091, 24x24x8, 10 frames."""
    from scripts.phantoms.make import write_acdc_layout

    root = tmp_path_factory.mktemp("phantom")
    write_acdc_layout(root / "train", 2, seed=5, shape=(24, 24, 8), frames=10)
    write_acdc_layout(root / "test", 1, seed=5, shape=(24, 24, 8), frames=10, first_patient=91)
    data = root / "acdc"
    data.mkdir()
    for case in [*(root / "train").iterdir(), *(root / "test").iterdir()]:
        shutil.move(str(case), data / case.name)
    return data
