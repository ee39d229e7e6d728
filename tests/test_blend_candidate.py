"""The refinement's unwarped-blend candidate ("do no harm"): off changes nothing, a warm start changes nothing before
training, and the gate can select the blend."""

import pytest
import torch

from scripts.networks import Student, Teacher
from scripts.networks.refine import BLEND_MODULES, param_groups, warm_start
from scripts.utils.checkpoint import load_weights, read_state_dict, save_weights
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT
from scripts.utils.tensors import lerp as blend

SHIPPED = ROOT / "models" / "v0.5.0" / "model.pt"  # release 0.5.0's student: the paper's network, no blend candidate


def _inputs(size=(16, 16, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 2, *size, generator=g), torch.tensor([0.3, 0.7])


def test_the_shipped_student_has_the_blend_candidate_and_every_program_builds_it():
    from monai.bundle import ConfigParser

    load_weights(Student(blend_candidate=True), ROOT / "models" / "model.pt")  # strict
    for config in ("inference.json", "evaluate.json"):
        parser = ConfigParser()
        parser.read_config(ROOT / "configs" / config)
        assert parser.get_parsed_content("network_def").refine.blend_candidate, config


def test_the_cardiac_student_runs_with_the_cubic_image_warp_and_the_lung_student_as_it_was_trained():
    """The network's own warp; the inference chooses per pair (``warp_choice``, tests/test_warp_choice.py)."""
    from monai.bundle import ConfigParser

    def built(configs, **overrides):
        parser = ConfigParser()
        parser.read_config([ROOT / "configs" / c for c in configs])
        parser.update({"bundle_root": str(ROOT), **overrides})
        return parser.get_parsed_content("network_def")

    assert built(["inference.json"]).cubic_image_warp
    assert not built(["inference.json"], anatomy="lung").cubic_image_warp  # the lung student: bilinear, as trained
    assert not built(["evaluate.json"]).cubic_image_warp  # the protocol's wide pairs (tests/test_warp_choice.py)
    assert not built(["train_teacher.json", "train_student.json"]).cubic_image_warp  # the paper's student


def test_weights_without_the_candidate_run_unchanged_where_the_shipped_network_has_it():
    """The shipped lung student (paper form) through the cardiac network definition: gate at zero, same output."""
    from scripts.inference.interpolator import SeriesInterpolator

    lung = ROOT / "models" / "lung_model.pt"
    flagged = SeriesInterpolator(Student(blend_candidate=True), lung, device="cpu")
    paper = SeriesInterpolator(Student(), lung, device="cpu")
    image, _ = _inputs()
    i0, i1 = image[0, 0].numpy(), image[0, 1].numpy()
    assert (flagged.synthesise(i0, i1, [0.3, 0.6]) == paper.synthesise(i0, i1, [0.3, 0.6])).all()


def test_flag_off_keeps_the_paper_network_and_loads_the_shipped_weights_strictly():
    net = Student()
    assert not any(name.split(".")[-2] in BLEND_MODULES for name in net.state_dict())
    assert set(net.state_dict()) == set(read_state_dict(SHIPPED))
    load_weights(net, SHIPPED)  # strict: raises on any extra or missing tensor
    assert not net.refine.blend_candidate


def test_warm_start_reproduces_the_shipped_student_exactly():
    shipped = load_weights(Student(), SHIPPED).eval()
    flagged = warm_start(Student(blend_candidate=True), SHIPPED).eval()
    assert {n.split(".")[-2] for n in set(flagged.state_dict()) - set(shipped.state_dict())} == set(BLEND_MODULES)
    image, t = _inputs()
    with torch.no_grad():
        assert torch.equal(flagged(image, t), shipped(image, t))
        series = flagged.interpolate_series(image[:1, :1], image[:1, 1:], [0.25, 0.5])
        assert torch.equal(series, shipped.interpolate_series(image[:1, :1], image[:1, 1:], [0.25, 0.5]))


def test_warm_start_of_a_teacher_and_of_flagged_weights(tmp_path):
    teacher = warm_start(Teacher(blend_candidate=True), ROOT / "models" / "teacher.pt").eval()
    reference = load_weights(Teacher(), ROOT / "models" / "teacher.pt").eval()
    image = torch.rand(1, 3, 16, 16, 8)
    with torch.no_grad():
        assert torch.equal(teacher(image, 0.4), reference(image, 0.4))
    net = Student(blend_candidate=True)
    torch.nn.init.constant_(net.refine.blend_gate.bias, 0.3)
    saved = save_weights(net, tmp_path / "flagged.pt")
    again = warm_start(Student(blend_candidate=True), saved)
    assert torch.equal(again.refine.blend_gate.bias, net.refine.blend_gate.bias)  # its own blend weights are kept
    with pytest.raises(InputError, match="weights do not fit Student"):
        warm_start(Student(blend_candidate=True, channels=(8, 16, 32, 32)), SHIPPED)
    with pytest.raises(InputError, match="weights do not fit"):
        load_weights(Student(), saved)  # flagged weights never load silently into the paper's network


def test_the_gate_selects_the_blend_exactly():
    net = warm_start(Student(blend_candidate=True), SHIPPED).eval()
    torch.nn.init.zeros_(net.refine.head.weight)
    torch.nn.init.zeros_(net.refine.head.bias)  # no residual
    torch.nn.init.constant_(net.refine.blend_gate.bias, 5.0)  # s = clamp(5, 0, 1) = 1 everywhere
    image, t = _inputs()
    with torch.no_grad():
        out = net(image, t)
    assert torch.equal(out, blend(image[:, :1], image[:, 1:], t))


def test_training_moves_the_gate_towards_the_blend_where_the_blend_is_exact():
    """Intensity change that no deformation explains (independent noise at the endpoints): the target is the blend.
    The loss gradient opens the gate from exactly zero, and a few steps on the gate alone beat the shipped output."""
    net = warm_start(Student(blend_candidate=True), SHIPPED)
    net.requires_grad_(False)
    gate = net.refine.blend_gate
    gate.requires_grad_(True)
    image, t = _inputs(seed=3)
    target = blend(image[:, :1], image[:, 1:], t)
    before = torch.nn.functional.mse_loss(net(image, t), target)
    before.backward()
    assert gate.bias.grad.item() < 0  # raising g (more blend) lowers the loss
    optimiser = torch.optim.SGD(gate.parameters(), lr=5.0)
    for _ in range(15):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(net(image, t), target)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(net(image, t), target)
    assert after < 0.5 * before


def test_a_flagged_refinement_needs_the_blend():
    net = Student(blend_candidate=True)
    i0t = torch.rand(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="needs blend"):
        net.refine(i0t, i0t, [], [], torch.tensor([0.5]))


def test_param_groups_give_the_blend_modules_their_own_learning_rate():
    net = Student(blend_candidate=True)
    groups = param_groups(net, 1e-4, 10.0)
    assert [g["lr"] for g in groups] == [1e-4, pytest.approx(1e-3)]
    fast = {id(p) for p in groups[1]["params"]}
    expected = {id(p) for m in (net.refine.blend_input, net.refine.blend_gate) for p in m.parameters()}
    assert fast == expected and len(groups[0]["params"]) + len(fast) == len(list(net.parameters()))
    assert len(param_groups(Student(), 1e-4, 10.0)) == 1


def test_the_flagged_network_scripts_and_matches_eager():
    net = Student(blend_candidate=True, channels=(4, 8, 8, 8)).eval()
    torch.nn.init.constant_(net.refine.blend_gate.bias, 0.4)
    scripted = torch.jit.script(net)
    image, t = _inputs()
    with torch.no_grad():
        assert torch.allclose(scripted(image, t), net(image, t), atol=1e-6)


def test_refinement_only_trains_the_refinement_and_nothing_else():
    from scripts.networks.refine import refinement_only
    from scripts.training.adapters import EngineLoss, IntermediatesInferer
    from scripts.training.losses import TMSDFLoss

    net = refinement_only(Student(channels=(4, 8, 8, 8), blend_candidate=True))
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("refine.") and "project_convs" not in n for n in trainable)
    assert any(".blend_gate." in n for n in trainable) and any(n.startswith("refine.head.") for n in trainable)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    groups = param_groups(net, 1e-2)
    assert sum(len(g["params"]) for g in groups) == len(trainable)  # frozen parameters are not handed to the optimizer
    optimizer = torch.optim.Adam(groups)
    image, t = _inputs()
    target = blend(image[:, :1], image[:, 1:], t)
    step = IntermediatesInferer(fields=False)(image, net, t)
    assert step.student.phi0 == [] and step.student.pred.shape == (2, 1, 16, 16, 8)
    loss = EngineLoss(TMSDFLoss(use_align=False, use_distill=False))(step, target)
    assert set(step.terms) == {"recon", "loss"}  # no L_align reported for a step that did not compute it
    loss.backward()
    optimizer.step()
    moved = {name for name, p in net.named_parameters() if not torch.equal(p, before[name])}
    assert moved and moved <= trainable


def test_a_prediction_only_step_refuses_the_losses_that_need_fields():
    from scripts.networks.refine import refinement_only
    from scripts.training.adapters import IntermediatesInferer
    from scripts.training.losses import TMSDFLoss

    net = Student(channels=(4, 8, 8, 8))
    image, t = _inputs()
    step = IntermediatesInferer(fields=False)(image, net, t)
    with pytest.raises(ValueError, match="L_align needs the network's fields"):
        TMSDFLoss()(step.student, image[:, :1])
    with pytest.raises(ValueError, match="needs the student's fields"):
        IntermediatesInferer(Teacher(channels=(4, 8, 8, 8)), fields=False)
    with pytest.raises(ValueError, match="has no refinement"):
        refinement_only(Student(channels=(4, 8, 8, 8), use_refinement=False))
