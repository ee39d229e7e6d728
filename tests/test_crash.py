"""Crash safety of training: a kill in the middle of writing a checkpoint leaves the previous checkpoint whole, the
run resumes from it, and in deterministic mode the resumed run ends with exactly the weights of a run that was never
interrupted. Two runs aimed at one output folder are refused instead of interleaving their checkpoints."""

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigWorkflow

from scripts.datasets.registry import make_dataset
from scripts.training.handlers import BestWeights, EpochSeed, OutputLock
from scripts.utils.checkpoint import read_state_dict
from scripts.utils.errors import InputError, user_error
from scripts.utils.paths import ROOT

SETTINGS = {"spatial_size": [24, 24, 8], "channels": [4, 8, 8, 8], "num_epochs": 3, "learning_rate": 1e-3,
            "augment": True, "val_interval": 99, "deterministic": True, "seed": 3}


def _train(dataset, output_dir, settings=None, **env):
    """``configs/train_teacher.json`` in a subprocess through ``tests/crash_train.py`` with :data:`SETTINGS` and
    ``settings`` (``env`` may set ``CRASH_AT_SAVE``)."""
    args = [sys.executable, "tests/crash_train.py", "run", "--config_file", "configs/train_teacher.json",
            "--dataset_dir", str(dataset), "--output_dir", str(output_dir)]
    for key, value in {**SETTINGS, **(settings or {})}.items():
        args += [f"--{key}", json.dumps(value)]
    return subprocess.run(args, check=False, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_kill_mid_save_then_resume_gives_the_uninterrupted_weights(tiny_acdc, tmp_path, ema_decay):
    """With ``ema_decay`` > 0 the exported weights are the weight average, which must resume with the run."""
    settings = {"ema_decay": ema_decay}
    reference = _train(tiny_acdc, tmp_path / "reference", settings)
    assert reference.returncode == 0, reference.stderr[-3000:]

    run = tmp_path / "run"
    crashed = _train(tiny_acdc, run, settings, CRASH_AT_SAVE="2")  # killed half-way through epoch 2's checkpoint
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    checkpoints = sorted(run.glob("last_checkpoint_*.pt"))
    assert len(checkpoints) == 1, checkpoints  # the half-written one never took the name
    state = torch.load(checkpoints[0], weights_only=True)  # whole and readable
    assert state["trainer"]["iteration"] == state["trainer"]["epoch_length"]  # saved after epoch 1
    assert not (run / "teacher.pt").exists()

    resumed = _train(tiny_acdc, run, settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(max(run.glob("last_checkpoint_*.pt")), weights_only=True)
    assert final["trainer"]["iteration"] == 3 * final["trainer"]["epoch_length"]
    assert "deleting" in resumed.stderr + resumed.stdout  # the half-written temporary file was cleaned up
    assert not list(run.glob(".last_checkpoint_*"))
    expected, got = read_state_dict(tmp_path / "reference" / "teacher.pt"), read_state_dict(run / "teacher.pt")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_resumed_run_without_per_epoch_seeding_would_differ(tiny_acdc, tmp_path):
    """The control for the test above: the augmentation draws of epoch 2 differ from epoch 1's, so a resumed run that
    replayed epoch 1's draws (MONAI's DataLoader seeds its transforms once) could not match."""
    data = make_dataset("acdc", tiny_acdc, "train", spatial_size=(24, 24, 8), augment=True)
    seed = EpochSeed(data, seed=3)
    draws = []
    for epoch in (1, 2, 1):
        seed(SimpleNamespace(state=SimpleNamespace(epoch=epoch)))
        draws.append(torch.stack([data[i]["image"] for i in range(len(data))]))
    assert not torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], draws[2])


def test_second_run_on_the_same_output_folder_is_refused(tiny_acdc, tmp_path):
    overrides = {**SETTINGS, "dataset_dir": str(tiny_acdc), "output_dir": str(tmp_path / "out")}

    def trainer():
        wf = ConfigWorkflow(config_file=str(ROOT / "configs" / "train_teacher.json"), workflow_type="train",
                            logging_file=False, bundle_root=str(ROOT), **overrides)
        wf.initialize()
        return wf.parser.get_parsed_content("train#trainer")

    first = trainer()
    with pytest.raises(Exception) as err:
        trainer()
    refusal = user_error(err.value)  # wrapped by the config machinery
    assert isinstance(refusal, InputError)
    assert str(tmp_path / "out") in str(refusal) and f"pid {os.getpid()}" in str(refusal)
    first.run()  # the first run is unaffected, and releases the folder when done
    assert (tmp_path / "out" / "teacher.pt").exists()
    trainer()  # free again


def test_a_failing_run_releases_the_lock_and_still_raises(tmp_path):
    """ignite swallows a run's exception once any EXCEPTION_RAISED handler exists, unless that handler re-raises."""
    def step(engine, batch):
        raise RuntimeError("out of memory in iteration 1")

    engine = Engine(step)
    OutputLock(str(tmp_path)).attach(engine)
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.run([0], max_epochs=1)
    OutputLock(str(tmp_path)).attach(Engine(step))  # the folder is free again


def test_best_weights_kept_until_beaten_and_restored_on_resume(tmp_path):
    network = torch.nn.Linear(2, 1)
    path = tmp_path / "teacher_best.pt"
    best = BestWeights(network, str(path))
    validation = SimpleNamespace(state=SimpleNamespace(metrics={"val_psnr": 30.0}))
    best(validation)
    saved = path.read_bytes()
    torch.nn.init.zeros_(network.weight)
    validation.state.metrics["val_psnr"] = 29.0
    best(validation)  # worse: the file is not touched
    assert path.read_bytes() == saved
    resumed = BestWeights(network, str(path))
    resumed.load_state_dict(best.state_dict())  # as TrainingCheckpoint saves it and ResumeFromCheckpoint loads it
    resumed(validation)  # a resumed run's first, worse validation does not replace the best weights
    assert path.read_bytes() == saved
    validation.state.metrics["val_psnr"] = 31.0
    resumed(validation)
    assert torch.equal(read_state_dict(path)["weight"], torch.zeros(1, 2))
