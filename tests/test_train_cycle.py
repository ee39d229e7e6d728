"""configs/train_cycle.json over the student config: whole-cycle items, the blend candidate warm-started from the given
weights (iteration 0 = those weights exactly), its modules at their own learning rate, and a short run that trains."""

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from scripts.networks import Student, Teacher
from scripts.utils.checkpoint import load_weights, save_weights
from scripts.utils.paths import ROOT

SMALL = {"channels": [4, 8, 8, 8]}


def _workflow(tmp_path, dataset_dir, **overrides):
    torch.manual_seed(3)
    pretrained = save_weights(Student(**SMALL), tmp_path / "pre.pt")
    teacher = save_weights(Teacher(**SMALL), tmp_path / "tch.pt")
    files = [str(ROOT / "configs" / c) for c in ("train_teacher.json", "train_student.json", "train_cycle.json")]
    settings = {"spatial_size": [24, 24, 8], "channels": SMALL["channels"], "dataset_dir": str(dataset_dir),
                "output_dir": str(tmp_path / "run"), "pretrained_weights": str(pretrained),
                "teacher_weights": str(teacher), "train_dataset_options": {"train_range": [1, 2], "cycle": {"per_case": 4}},
                "val_dataset_options": {"test_range": [91, 91], "cycle": {"per_case": 2}}, **overrides}
    wf = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=False, bundle_root=str(ROOT), **settings)
    wf.initialize()
    return wf, pretrained


def test_the_cycle_config_warm_starts_the_blend_candidate_on_whole_cycle_items(tiny_acdc, tmp_path):
    wf, pretrained = _workflow(tmp_path, tiny_acdc)
    network = wf.parser.get_parsed_content("network")
    assert network.refine.blend_candidate
    reference = load_weights(Student(**SMALL), pretrained).eval()
    image = torch.rand(1, 2, 24, 24, 8)
    with torch.no_grad():
        assert torch.equal(network.eval()(image, 0.4), reference(image, 0.4))
    optimizer = wf.parser.get_parsed_content("optimizer")
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(2e-4), pytest.approx(2e-3)]
    train = wf.parser.get_parsed_content("train#dataset")
    assert len(train) == 8 and {item["case"] for item in train.data} == {"patient001", "patient002"}
    assert any(item["start"] != 0 or item["end"] not in (1, 2, 3) for item in train.data)  # not only the protocol pair
    assert {item["case"] for item in wf.parser.get_parsed_content("validate#dataset").data} == {"patient091"}


def test_a_short_cycle_run_moves_the_gate_from_zero(tiny_acdc, tmp_path):
    wf, _ = _workflow(tmp_path, tiny_acdc, num_epochs=1, epoch_length=4)
    trainer = wf.parser.get_parsed_content("train#trainer")
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: losses.append(float(e.state.output["pred"].terms["loss"])))
    wf.run()
    gate = wf.parser.get_parsed_content("network").refine.blend_gate
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert gate.weight.abs().sum() + gate.bias.abs().sum() > 0
    assert (tmp_path / "run" / "model.pt").is_file()


def test_the_refinement_stage_trains_the_refinement_alone_on_recon(tiny_acdc, tmp_path):
    """configs/train_refine.json over the cycle config: motion frozen, L_recon only, no teacher loaded."""
    torch.manual_seed(4)
    pretrained = save_weights(Student(blend_candidate=True, **SMALL), tmp_path / "stage_a.pt")
    files = [str(ROOT / "configs" / c)
             for c in ("train_teacher.json", "train_student.json", "train_cycle.json", "train_refine.json")]
    settings = {"spatial_size": [24, 24, 8], "channels": SMALL["channels"], "dataset_dir": str(tiny_acdc),
                "output_dir": str(tmp_path / "run"), "pretrained_weights": str(pretrained),
                "teacher_weights": str(tmp_path / "no_teacher_here.pt"), "num_epochs": 1, "epoch_length": 3,
                "train_dataset_options": {"train_range": [1, 2], "cycle": {"per_case": 4, "gap_power": 2.0}},
                "val_dataset_options": {"test_range": [91, 91], "cycle": {"per_case": 2}}}
    wf = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=False, bundle_root=str(ROOT), **settings)
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    terms = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: terms.append(dict(e.state.output["pred"].terms)))
    wf.run()
    assert len(terms) == 3 and all(set(step) == {"recon", "loss"} for step in terms)
    before = load_weights(Student(blend_candidate=True, **SMALL), pretrained).state_dict()
    after = load_weights(Student(blend_candidate=True, **SMALL), tmp_path / "run" / "model.pt").state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(n.startswith("refine.") and "project_convs" not in n for n in changed)
