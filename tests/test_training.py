"""The bundle's training configs end to end on a tiny phantom: loss goes down, checkpoints, resume, frozen teacher,
fine-tuning, torchrun with two CPU processes, and the errors a user meets."""

import json
import math
import os
import re
import socket
import subprocess
import sys

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow

from scripts.networks import Student, Teacher
from scripts.utils.checkpoint import read_state_dict, save_weights
from scripts.utils.paths import ROOT

TINY = {"spatial_size": [24, 24, 8], "channels": [4, 8, 8, 8], "cache": True, "val_interval": 1}


@pytest.fixture(scope="module")
def dataset(tiny_acdc):
    return tiny_acdc


def _workflow(configs, **overrides):
    files = [str(ROOT / "configs" / c) for c in configs]
    wf = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=False, bundle_root=str(ROOT),
                        **{**TINY, **overrides})
    wf.initialize()
    return wf


def _raises(match):
    """pytest.raises for an error the config machinery wraps: ``match`` is searched in the whole exception chain."""

    class _Chain:
        def __enter__(self):
            return self

        def __exit__(self, kind, err, tb):
            assert err is not None, f"no error raised (expected {match!r})"
            chain = []
            while err is not None:
                chain.append(str(err))
                err = err.__cause__ or err.__context__
            assert any(re.search(match, text) for text in chain), chain
            return True

    return _Chain()


def _train(configs, **overrides):
    """Run a training config; return (workflow, per-iteration total losses)."""
    wf = _workflow(configs, **overrides)
    trainer = wf.parser.get_parsed_content("train#trainer")
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["pred"].terms["loss"])))
    wf.run()
    return wf, losses


@pytest.fixture(scope="module")
def teacher_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    wf, losses = _train(["train_teacher.json"], dataset_dir=str(dataset), output_dir=str(out), num_epochs=6,
                        learning_rate=1e-3, augment=False)
    return out, wf, losses


def test_teacher_loss_goes_down_and_files_appear(teacher_run):
    out, wf, losses = teacher_run
    per_epoch = len(wf.parser.get_parsed_content("train#dataset"))
    assert len(losses) == 6 * per_epoch
    first, last = sum(losses[:per_epoch]) / per_epoch, sum(losses[-per_epoch:]) / per_epoch
    assert last < 0.7 * first, (first, last)
    names = sorted(p.name for p in out.iterdir() if p.suffix == ".pt")
    assert "teacher.pt" in names and "teacher_best.pt" in names
    assert any(n.startswith("last_checkpoint_") for n in names)
    state = read_state_dict(out / "teacher.pt")
    assert set(state) == set(Teacher(channels=TINY["channels"]).state_dict())
    assert "val_psnr" in wf.parser.get_parsed_content("validate#evaluator").state.metrics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in out.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= {f"scalar:{t}" for t in acc.Tags()["scalars"]} | {f"image:{t}" for t in acc.Tags()["images"]}
    for term in ("recon", "align", "align_sim", "align_reg", "loss"):
        assert any(t.startswith("scalar:") and t.endswith(term) for t in tags), (term, tags)
    assert sum(t.startswith("image:") for t in tags) >= 3, tags  # (I0, I1), It, (prediction, error)


def test_resume_continues_from_saved_epoch_with_optimizer_state(dataset, tmp_path):
    common = {"dataset_dir": str(dataset), "output_dir": str(tmp_path), "augment": False}
    _, first = _train(["train_teacher.json"], num_epochs=2, **common)
    saved = torch.load(next(tmp_path.glob("last_checkpoint_*.pt")), weights_only=True)
    assert saved["trainer"]["iteration"] == len(first)  # saved after the 2nd epoch
    wf2 = _workflow(["train_teacher.json"], num_epochs=3, **common)
    trainer = wf2.parser.get_parsed_content("train#trainer")
    optimizer = wf2.parser.get_parsed_content("optimizer")
    seen = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(
        (e.state.epoch, {k: v["step"].item() for k, v in optimizer.state_dict()["state"].items()})))
    wf2.run()
    epoch, steps = seen[0]
    assert epoch == 3 and len(seen) == 1  # only the missing epoch ran
    assert set(steps.values()) == {len(first)}  # Adam resumed with the step count of the 2 epochs already done
    assert trainer.state.iteration == len(first) * 3 // 2


def test_student_freezes_teacher_and_distills(dataset, teacher_run, tmp_path):
    teacher_file = teacher_run[0] / "teacher.pt"
    before = read_state_dict(teacher_file)
    wf, losses = _train(["train_teacher.json", "train_student.json"], dataset_dir=str(dataset), output_dir=str(tmp_path), num_epochs=2,
                        teacher_weights=str(teacher_file))
    teacher = wf.parser.get_parsed_content("teacher")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    student = read_state_dict(tmp_path / "model.pt")
    assert set(student) == set(Student(channels=TINY["channels"]).state_dict())
    assert all(math.isfinite(l) for l in losses)


def test_finetune_starts_from_pretrained_weights(dataset, tmp_path):
    pretrained = save_weights(Student(channels=TINY["channels"]), tmp_path / "pre.pt")
    teacher = save_weights(Teacher(channels=TINY["channels"]), tmp_path / "tch.pt")
    wf = _workflow(["train_teacher.json", "train_student.json", "finetune.yaml"], dataset_dir=str(dataset), output_dir=str(tmp_path / "ft"),
                   pretrained_weights=str(pretrained), teacher_weights=str(teacher))
    network = wf.parser.get_parsed_content("network")
    for name, value in read_state_dict(pretrained).items():
        assert torch.equal(network.state_dict()[name], value)
    assert wf.parser.get_parsed_content("learning_rate") < 1e-4
    from monai.handlers import ValidationHandler

    def validates_at_start(workflow):
        handlers = workflow.parser.get_parsed_content("train#handlers")
        return next(h for h in handlers if isinstance(h, ValidationHandler)).exec_at_start

    assert validates_at_start(wf)  # the best weights are the starting ones unless an epoch beats them
    assert wf.parser.get_parsed_content("train_dataset_options") == {}  # ACDC: heart crops already
    parser = ConfigParser()
    parser.read_config([str(ROOT / "configs" / c) for c in ("train_teacher.json", "train_student.json", "finetune.yaml")])
    parser["dataset"] = "nifti4d"  # a site's series: cut to the box where they move, as inference does
    assert parser.get_parsed_content("train_dataset_options")["motion_crop"] is True
    assert parser.get_parsed_content("val_dataset_options")["motion_crop"] is True
    assert not validates_at_start(_workflow(["train_teacher.json"], dataset_dir=str(dataset),
                                            output_dir=str(tmp_path / "t")))


def test_finetune_builds_the_network_its_starting_weights_came_from(dataset, tmp_path):
    """The documented fine-tuning of the shipped student starts from models/model.pt, which has the refinement's blend
    candidate: the network is built with it (a strict load of the paper's network refused it); weights without it
    (the paper's network) still build the paper's network."""
    configs = ["train_teacher.json", "train_student.json", "finetune.yaml"]
    shipped = _workflow(configs, dataset_dir=str(dataset), output_dir=str(tmp_path / "ft"), channels=[16, 32, 64, 64])
    network = shipped.parser.get_parsed_content("network")
    assert network.refine.blend_candidate and network.cubic_image_warp  # as configs/inference.json runs it
    for name, value in read_state_dict(ROOT / "models" / "model.pt").items():
        assert torch.equal(network.state_dict()[name].cpu(), value), name
    paper = save_weights(Student(channels=TINY["channels"]), tmp_path / "paper.pt")
    wf = _workflow(configs, dataset_dir=str(dataset), output_dir=str(tmp_path / "ft2"), pretrained_weights=str(paper))
    assert not wf.parser.get_parsed_content("network").refine.blend_candidate


def test_finetune_from_checkpoint_of_other_shape_is_refused(dataset, tmp_path):
    wrong = save_weights(Student(channels=[8, 8, 8, 8]), tmp_path / "wrong.pt")
    wf = _workflow(["train_teacher.json", "train_student.json", "finetune.yaml"], dataset_dir=str(dataset), output_dir=str(tmp_path / "ft"),
                   pretrained_weights=str(wrong))
    with _raises("wrong.pt: weights do not fit Student"):
        wf.parser.get_parsed_content("network")


def test_missing_teacher_is_named(dataset, tmp_path):
    wf = _workflow(["train_teacher.json", "train_student.json"], dataset_dir=str(dataset), output_dir=str(tmp_path),
                   teacher_weights=str(tmp_path / "no_teacher.pt"))
    with _raises("no_teacher.pt: weights file not found"):
        wf.parser.get_parsed_content("teacher")


def test_dataset_of_no_known_layout_is_named(tmp_path):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hello")
    wf = _workflow(["train_teacher.json"], dataset_dir=str(tmp_path / "random"), output_dir=str(tmp_path / "o"))
    with _raises("random: .*ACDC"):
        wf.parser.get_parsed_content("train#dataset")


def test_torchrun_two_cpu_processes(dataset, tmp_path):
    out = tmp_path / "ddp"
    teacher = save_weights(Teacher(channels=TINY["channels"]), tmp_path / "tch.pt")
    overrides = {**TINY, "dataset_dir": str(dataset), "output_dir": str(out), "num_epochs": 1,
                 "teacher_weights": str(teacher), "bundle_root": str(ROOT)}
    with socket.socket() as probe:  # a free port: a fixed one can still be held by an earlier run
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
            "--master_addr=127.0.0.1",
            "-m", "monai.bundle", "run", "--config_file",
            "['configs/train_teacher.json','configs/train_student.json','configs/multi_gpu_train.json']"]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.pt").exists()
    state = read_state_dict(out / "model.pt")
    assert not any(k.startswith("module.") for k in state)  # exported without the DDP prefix


def test_dataset_options_hold_a_validation_split_out_of_the_training_patients(dataset):
    """train_range / test_range from the command line: train on patient001, validate on patient002, never 091."""
    wf = _workflow(["train_teacher.json"], dataset_dir=str(dataset), train_dataset_options={"train_range": [1, 1]},
                   val_dataset_options={"test_range": [2, 2]})
    train, val = wf.parser.get_parsed_content("train#dataset"), wf.parser.get_parsed_content("validate#dataset")
    assert {item["case"] for item in train.data} == {"patient001"}
    assert {item["case"] for item in val.data} == {"patient002"}
    default = _workflow(["train_teacher.json"], dataset_dir=str(dataset))
    assert {item["case"] for item in default.parser.get_parsed_content("validate#dataset").data} == {"patient091"}
