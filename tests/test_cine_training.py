"""Training the student and its neighbour refinement together (``configs/train_cine.json``,
:mod:`scripts.networks.cine`)."""

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from scripts.networks import Student
from scripts.networks.cine import StudentWithNeighbours
from scripts.networks.neighbours import NeighbourRefinement
from scripts.networks.refine import warm_start
from scripts.training.losses import NegativePSNR, RefinedAndStudentPSNR
from scripts.utils.checkpoint import load_weights, read_state_dict, save_weights
from scripts.utils.paths import ROOT

SMALL = {"channels": [4, 8, 8, 8], "blend_candidate": True}
CONFIGS = [str(ROOT / "configs" / c) for c in ("train_teacher.json", "train_neighbours.json", "train_cine.json")]


def _joint(seed: int = 0) -> StudentWithNeighbours:
    torch.manual_seed(seed)
    refinement = NeighbourRefinement(4)
    torch.nn.init.normal_(refinement.out.weight, std=0.01)  # not the identity: the refinement's output is visible
    return StudentWithNeighbours(Student(**SMALL), refinement)


def test_the_trained_student_is_the_products_network_with_the_warp_of_refined_pairs():
    from monai.bundle import ConfigParser

    train, product = ConfigParser(), ConfigParser()
    train.read_config(CONFIGS)
    product.read_config(str(ROOT / "configs" / "inference.json"))
    trained = train["cine_student_def"]
    assert trained == train["student_def"]  # the frozen student that makes the samples' frames, as a second object
    assert {k: v for k, v in trained.items() if k != "image_warp"} == {
        k: v for k, v in product["network_def"].items() if k != "image_warp"}
    assert trained["image_warp"] == product.get_parsed_content("warp_choice").near == "cubic"
    assert train["max_span"] == product["warp_choice"]["wide_above"]  # only the pairs the product refines


def test_the_joint_network_refines_its_own_students_frame():
    network = _joint()
    volumes, t = torch.rand(2, 5, 16, 16, 8), torch.tensor([0.25, 0.5])
    network.eval()
    with torch.no_grad():
        refined = network(volumes, t)
        frame = network.student(volumes[:, 2:4], t)
        expected = network.refinement(torch.cat([frame, volumes[:, 1:]], dim=1), t)
        changed = volumes.clone()
        changed[:, 0] = 0  # the frozen student's frame of the samples is not read
        unchanged = network(changed, t)
    torch.testing.assert_close(refined, expected)
    torch.testing.assert_close(unchanged, refined)
    network.train()
    both = network(volumes, t)
    assert both.shape == (2, 2, 16, 16, 8)
    torch.testing.assert_close(both[:, :1], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both[:, 1:], frame, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(N, 5, X, Y, Z\)"):
        network(volumes[:, :4], t)


def test_the_loss_weighs_the_refined_frame_and_the_students():
    target = torch.rand(3, 1, 8, 8, 4)
    refined, frame = target + 0.01 * torch.randn_like(target), target + 0.05 * torch.randn_like(target)
    loss = RefinedAndStudentPSNR(student_weight=0.25)(torch.cat([refined, frame], dim=1), target)
    psnr = NegativePSNR()
    torch.testing.assert_close(loss, psnr(refined, target) + 0.25 * psnr(frame, target))
    with pytest.raises(ValueError, match="refined, student"):
        RefinedAndStudentPSNR()(refined, target)


def test_both_parts_train_and_their_best_weights_load_as_the_product_loads_them(tiny_acdc, tmp_path):
    torch.manual_seed(0)
    student = save_weights(Student(**SMALL), tmp_path / "student.pt")
    refinement = save_weights(_joint().refinement, tmp_path / "refinement.pt")
    wf = ConfigWorkflow(
        config_file=CONFIGS, workflow_type="train", logging_file=False, bundle_root=str(ROOT),
        spatial_size=[24, 24, 8], channels=SMALL["channels"], dataset_dir=str(tiny_acdc),
        output_dir=str(tmp_path / "run"), student_weights=str(student), refinement_weights=str(refinement), width=4,
        batch_size=2, factors=[2], max_span=0.25, train_dataset_options={"train_range": [1, 2]},
        val_dataset_options={"test_range": [91, 91]}, num_epochs=1, epoch_length=3)
    wf.initialize()
    assert len(wf.parser.get_parsed_content("train#dataset")) == 10  # 5 pairs of 2 patients (10 frames, every 2nd)
    groups = wf.parser.get_parsed_content("optimizer").param_groups
    assert [g["lr"] for g in groups] == [1e-4, 3e-4]
    network = wf.parser.get_parsed_content("network")
    assert network.student is not wf.parser.get_parsed_content("student_def")  # which makes the samples' frames
    assert network.student.image_warp == "cubic"  # the product's warp for pairs it refines, whatever the samples used
    wf.run()
    run = tmp_path / "run"
    trained_student = warm_start(Student(**SMALL), run / "cine_student_best.pt")
    trained_refinement = load_weights(NeighbourRefinement(4), run / "cine_refinement_best.pt")
    start_student, start_refinement = read_state_dict(student), read_state_dict(refinement)
    assert any(not torch.equal(v, start_student[k]) for k, v in trained_student.state_dict().items())
    assert any(not torch.equal(v, start_refinement[k]) for k, v in trained_refinement.state_dict().items())
    joint = read_state_dict(run / "cine.pt")  # the last weights of the whole network
    assert {k.split(".")[0] for k in joint} == {"student", "refinement"}


def test_a_sites_nifti_cines_fine_tune_the_whole_cine_job(tiny_acdc, tmp_path):
    """``configs/finetune_cine.yaml`` on a folder of 4D NIfTI cines (dataset kind nifti4d): the ACDC hold-out of the
    base configs does not apply (it was a TypeError) and each cine is cut to its moving box, the folder's own split
    validates, the starting weights are validated too (so the best files are the start's unless an epoch beats
    them), the fine-tuning rates apply, both parts train and their best weights load as the product loads them."""
    site = tmp_path / "site"
    site.mkdir()
    for number, case in enumerate(sorted(tiny_acdc.iterdir())):  # patient001, patient002, patient091
        (site / f"cine{number}.nii.gz").symlink_to(case / f"{case.name}_4d.nii.gz")
    torch.manual_seed(0)
    student = save_weights(Student(**SMALL), tmp_path / "student.pt")
    refinement = save_weights(_joint().refinement, tmp_path / "refinement.pt")
    wf = ConfigWorkflow(
        config_file=[*CONFIGS, str(ROOT / "configs" / "finetune_cine.yaml")], workflow_type="train",
        logging_file=False, bundle_root=str(ROOT), dataset="nifti4d", dataset_dir=str(site),
        spatial_size=[24, 24, 8], channels=SMALL["channels"], output_dir=str(tmp_path / "run"),
        student_weights=str(student), refinement_weights=str(refinement), width=4, batch_size=2, factors=[2],
        max_span=0.25, num_epochs=1, epoch_length=2)
    wf.initialize()
    assert wf.parser.get_parsed_content("train_dataset_options")["motion_crop"] is True  # as inference crops
    assert len(wf.parser.get_parsed_content("train#dataset")) == 10  # cine0, cine1: 5 pairs each (every 2nd frame)
    assert len(wf.parser.get_parsed_content("validate#dataset")) == 5  # cine2, the last tenth by name
    assert [g["lr"] for g in wf.parser.get_parsed_content("optimizer").param_groups] == [3e-5, 1e-4]
    validations = []
    wf.parser.get_parsed_content("validate#evaluator").add_event_handler(
        Events.COMPLETED, lambda engine: validations.append(float(engine.state.metrics["val_psnr"])))
    wf.run()
    assert len(validations) == 2  # the starting weights, then epoch 1: the best may be the shipped weights
    best = wf.parser.get_parsed_content("validate#best").best
    assert best == max(validations)
    run = tmp_path / "run"
    start_student, start_refinement = read_state_dict(student), read_state_dict(refinement)
    best_student = warm_start(Student(**SMALL), run / "cine_student_best.pt").state_dict()  # loads as the product does
    load_weights(NeighbourRefinement(4), run / "cine_refinement_best.pt")
    kept_start = all(torch.equal(v, start_student[k]) for k, v in best_student.items())
    assert kept_start is (validations[0] >= validations[1])
    last = read_state_dict(run / "cine.pt")  # the whole network after its iterations
    assert any(not torch.equal(last[f"student.{k}"], v) for k, v in start_student.items())
    assert any(not torch.equal(last[f"refinement.{k}"], v) for k, v in start_refinement.items())


def test_the_site_fine_tuning_starts_from_the_shipped_whole_cine_weights():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([*CONFIGS, str(ROOT / "configs" / "finetune_cine.yaml")])
    parser["bundle_root"] = str(ROOT)
    product = ConfigParser()
    product.read_config(str(ROOT / "configs" / "inference.json"))
    product["bundle_root"] = str(ROOT)
    assert parser.get_parsed_content("student_weights") == product.get_parsed_content("cine_checkpoint")
    assert parser.get_parsed_content("refinement_weights") == product.get_parsed_content("neighbour_checkpoint")
    assert parser.get_parsed_content("train_dataset_options") == {"train_range": [1, 80]}  # ACDC: the hold-out
