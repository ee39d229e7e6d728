"""Checkpoint loading refuses what is not plain weights of the right architecture, with the file named."""

import os
import pickle

import pytest
import torch
from torch import nn

from scripts.utils.checkpoint import load_weights, read_state_dict, save_weights
from scripts.utils.errors import InputError


def _net(width=4):
    return nn.Sequential(nn.Conv3d(1, width, 3), nn.Conv3d(width, 1, 1))


def test_round_trip_and_nested_and_ddp_prefix(tmp_path):
    src = _net()
    path = save_weights(src, tmp_path / "w.pt")
    dst = load_weights(_net(), path)
    for a, b in zip(src.state_dict().values(), dst.state_dict().values()):
        assert torch.equal(a, b)
    nested = tmp_path / "ckpt.pt"
    torch.save({"network": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": torch.tensor(3)}, nested)
    dst = load_weights(_net(), nested)
    assert torch.equal(dst[0].weight, src[0].weight)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nothere.pt: weights file not found"):
        load_weights(_net(), tmp_path / "nothere.pt")


def test_truncated_file(tmp_path):
    path = save_weights(_net(), tmp_path / "w.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="w.pt: unreadable checkpoint"):
        read_state_dict(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(InputError, match="evil.pt"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match="does not hold a state dict"):
        read_state_dict(path)


def test_other_architecture_names_the_mismatch(tmp_path):
    path = save_weights(_net(width=4), tmp_path / "w.pt")
    with pytest.raises(InputError, match=r"of another shape \(e.g. 0.weight: file \(4, 1, 3, 3, 3\)"):
        load_weights(_net(width=8), path)
    with pytest.raises(InputError, match="missing"):
        load_weights(nn.Sequential(nn.Conv3d(1, 4, 3), nn.Conv3d(4, 1, 1), nn.Conv3d(1, 1, 1)), path)
