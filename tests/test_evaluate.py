"""Evaluation workflow: rows, summary, figures, methods on shared samples, phantom truth, ablation runner."""

import csv
import json
import logging
import sys
import types
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run

from scripts.baselines.linear import linear_scaling
from scripts.baselines.voxelmorph import voxelmorph_net
from scripts.datasets.registry import make_dataset
from scripts.evaluation import cases, reports
from scripts.evaluation import evaluator as evaluator_mod
from scripts.evaluation import methods as methods_mod
from scripts.evaluation.metrics import (
    IMAGE_METRICS,
    endpoint_error,
    image_metrics,
    ncc,
    ssim,
)
from scripts.phantoms.make import write_acdc_layout
from scripts.research import ablations as ablations_mod
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.paths import ROOT

SIZE = (24, 24, 8)
CHANNELS = [4, 8, 8, 8]
SMALL = {"def_channels": [4, 8, 8, 8], "refine_channels": [4, 8, 8, 8], "projection_channels": [2, 2, 4, 4]}
NO_DFM = {"use_dfm": False, "multi_scale_dfm": False, "time_modulation": False}  # Table 2 row 1 (no refinement too)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """Cardiac phantoms, 10 frames, ED 1 / ES 5 (3 target frames each): patient001 (train split), patient091-092
    (test split)."""
    folder = tmp_path_factory.mktemp("data")
    root = write_acdc_layout(folder / "acdc", 1, seed=0, shape=SIZE, frames=10, first_patient=1)
    test = write_acdc_layout(folder / "test", 2, seed=0, shape=SIZE, frames=10, first_patient=91)
    for case in sorted(test.iterdir()):
        case.rename(root / case.name)
    return root


@pytest.fixture(scope="module")
def dataset(phantoms):
    return make_dataset("acdc", phantoms, "test", spatial_size=SIZE)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_png(path: Path, width: int | None = None) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image[..., :3].std() > 0.05  # a real drawing
    if width is not None:
        assert image.shape[1] == width
    return image


def blend_by_hand(dataset) -> dict[tuple[str, int], dict[str, float]]:
    """PSNR and NMSE of the linear blend, written out with numpy; NCC/SSIM from scripts.evaluation.metrics."""
    out = {}
    for item in dataset:
        i0, i1, gt = (v.double().numpy() for v in (item["image"][:1], item["image"][1:], item["target"]))
        pred = np.clip((1 - float(item["t"])) * i0 + float(item["t"]) * i1, 0, 1)
        mse = np.mean((pred - gt) ** 2)
        out[(item["case"], int(item["frame"]))] = {
            "psnr": 10 * np.log10(1 / mse),
            "nmse": 100 * np.sum((pred - gt) ** 2) / np.sum(gt**2),
            "ncc": float(ncc(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])[0]),
            "ssim": float(ssim(torch.from_numpy(pred)[None].float(), torch.from_numpy(gt)[None].float())[0]),
        }
    return out


def test_blend_only_run_rows_summary_and_figures(phantoms, dataset, tmp_path):
    methods = methods_mod.select_methods(["blend"], {"blend": methods_mod.Blend()})
    out = evaluator_mod.Evaluator(dataset, methods, truth_dir=phantoms).run(tmp_path / "o")
    rows = read_csv(out / "metrics.csv")
    assert [(r["subject"], r["frame"]) for r in rows] == [(f"patient09{c}", str(f)) for c in (1, 2) for f in (1, 2, 3)]
    assert [float(r["t"]) for r in rows[:3]] == [0.25, 0.5, 0.75]
    expected = blend_by_hand(dataset)
    for r in rows:
        for name in IMAGE_METRICS:
            assert float(r[name]) == pytest.approx(expected[(r["subject"], int(r["frame"]))][name], rel=1e-5)
        assert r["epe"] == r["folding"] == ""  # blend has no displacement
    summary = json.loads((out / "summary.json").read_text())
    assert summary["blend"]["n"] == 6 and "epe" not in summary["blend"]
    assert summary["blend"]["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), rel=1e-12)
    assert_png(out / "error_maps.png", width=2 * 160)
    assert_png(out / "psnr_over_t.png")


def test_existing_output_is_refused_unless_overwrite(dataset, tmp_path):
    evaluator = evaluator_mod.Evaluator(dataset, methods_mod.select_methods(["blend"], {"blend": methods_mod.Blend()}))
    evaluator.run(tmp_path / "o")
    (tmp_path / "o" / "marker").write_text("old run")
    with pytest.raises(OutputExistsError):
        evaluator.run(tmp_path / "o")
    assert (tmp_path / "o" / "marker").exists()
    evaluator.run(tmp_path / "o", overwrite=True)
    assert not (tmp_path / "o" / "marker").exists() and (tmp_path / "o" / "metrics.csv").exists()


def test_missing_weights_skip_the_method_with_a_warning(dataset, tmp_path, caplog):
    methods = methods_mod.select_methods(["blend", "vm_linear"], {
        "blend": methods_mod.Blend(), "vm_linear": methods_mod.VoxelMorphLinear(voxelmorph_net(), tmp_path / "absent.pt")})
    with caplog.at_level(logging.WARNING, logger="scripts.evaluation.evaluator"):
        out = evaluator_mod.Evaluator(dataset, methods).run(tmp_path / "o")
    assert any("vm_linear" in m and "absent.pt" in m for m in caplog.messages)
    assert {r["method"] for r in read_csv(out / "metrics.csv")} == {"blend"}
    with pytest.raises(InputError, match="none of the methods"):
        evaluator_mod.Evaluator(dataset, methods[1:]).run(tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_unknown_names_and_bad_variants_are_refused():
    with pytest.raises(InputError, match="unknown"):
        methods_mod.select_methods(["blend", "nope"], {"blend": methods_mod.Blend()})
    with pytest.raises(InputError, match="weights"):
        methods_mod.select_methods([], {}, {"v": {"use_dfm": False}})


def test_variants_are_students_with_their_flags_and_weights():
    pytest.importorskip("scripts.networks")
    [blend, variant] = methods_mod.select_methods(["blend"], {"blend": methods_mod.Blend()},
                                        {"no_dfm": {**NO_DFM, "weights": "runs/no_dfm.pt"}}, channels=CHANNELS)
    assert (blend.name, variant.name) == ("blend", "no_dfm")
    assert isinstance(variant, methods_mod.StudentMethod) and variant.weights == "runs/no_dfm.pt"
    assert variant.network.linear_scaling  # no time modulation: Table 2 rows 1-2
    assert variant.network.encoder.channels == tuple(CHANNELS)
    with pytest.raises(InputError, match="already a method"):
        methods_mod.select_methods(["blend"], {"blend": methods_mod.Blend()}, {"blend": {"weights": "x.pt"}})


def test_figure_subject_must_be_evaluated(dataset, tmp_path):
    evaluator = evaluator_mod.Evaluator(dataset, methods_mod.select_methods(["blend"], {"blend": methods_mod.Blend()}), figure_subject="patient007")
    with pytest.raises(InputError, match="patient007"):
        evaluator.run(tmp_path / "o")


def test_phantom_truth_is_cropped_like_the_frames(tmp_path):
    # a case larger than the protocol grid in-plane and thinner in z: the frames are centre-cropped and zero-padded.
    # Frame values encode the voxel's original index (x + 32 y + 1024 z); the "truth" modes are the index coordinates
    # themselves, so after preprocessing each protocol voxel's truth must name the original voxel its value came from.
    shape, size = (30, 27, 5), (24, 24, 8)
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))  # (3, X, Y, Z)
    code = index[0] + 32 * index[1] + 1024 * index[2]
    case = tmp_path / "acdc" / "patient091"
    (case / "truth").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.stack([code, code + 1, code + 2], -1), np.eye(4)), case / "patient091_4d.nii.gz")
    (case / "Info.cfg").write_text("ED: 1\nES: 3\nNbFrame: 3\n")
    np.savez(case / "truth" / "motion.npz", modes=index[None].astype(np.float16),
             weights=np.array([[0.0], [1.0], [2.0]], np.float32))
    [subject] = cases.eval_cases(make_dataset("acdc", tmp_path / "acdc", "test", spatial_size=size), tmp_path / "acdc")
    assert subject.truth.shape == (1, 3, *size)  # frame 1 only: truth = 1 x index
    inside = subject.targets[0, 0] > 0
    assert int(inside.sum()) == 24 * 24 * 5  # the padded z slices are 0
    coords = subject.truth[0][:, inside].double()
    value = subject.targets[0, 0][inside].double()
    # min-max normalisation is affine in the original value: fit value = a * code + b exactly
    design = torch.stack([coords[0] + 32 * coords[1] + 1024 * coords[2] + 1, torch.ones_like(value)], 1)
    fit = torch.linalg.lstsq(design, value[:, None]).solution
    assert torch.allclose(design @ fit, value[:, None], atol=1e-5)
    assert fit[0, 0] > 0
    assert float(subject.truth[0][:, ~inside].abs().max()) == 0.0  # padding moves nowhere


class _ShiftedTruth(methods_mod.Method):
    """A stub whose displacement is the truth plus 0.1 k voxels along axis 0 at target k; predicts I0."""

    def predict(self, subject, state):
        return subject.i0.expand(len(subject.frames), -1, -1, -1, -1)

    def displacement(self, subject, state):
        shift = torch.zeros_like(subject.truth)
        shift[:, 0] = 0.1 * torch.arange(len(subject.frames)).view(-1, 1, 1, 1)
        return subject.truth + shift


def test_endpoint_error_pairs_each_row_with_its_frame(phantoms, dataset, tmp_path):
    rows, _, _ = evaluator_mod.Evaluator(dataset, methods_mod.select_methods(["stub"], {"stub": _ShiftedTruth()}), truth_dir=phantoms).score()
    assert [round(r["epe"], 6) for r in rows] == [0.0, 0.1, 0.2] * 2
    assert all(r["folding"] == 0.0 for r in rows)
    summary = reports.summarise_rows(rows)
    assert summary["stub"]["epe"] == pytest.approx(0.1) and summary["stub"]["n_truth"] == 6


def test_registration_runs_once_per_subject_and_scales_linearly(dataset, monkeypatch):
    calls = []

    def fake_elastix_fields(i0, i1, **kwargs):
        calls.append(kwargs)
        f = torch.zeros(1, 3, *i0.shape[2:])
        f[:, 1] = 1.5  # I0 -> I1 by 1.5 voxels along axis 1
        return f, -f

    monkeypatch.setattr(methods_mod, "elastix_fields", fake_elastix_fields)
    monkeypatch.setitem(sys.modules, "itk", types.SimpleNamespace(ElastixRegistrationMethod=object))
    method = methods_mod.ElastixLinear(max_batch=2, grid_spacing_mm=6.0)
    method.name = "elastix_linear"
    rows, _, _ = evaluator_mod.Evaluator(dataset, [method]).score()
    assert calls == [{"grid_spacing_mm": 6.0}] * 2  # two subjects, three frames each
    subject = next(cases.eval_cases(dataset))
    f01, f10 = fake_elastix_fields(subject.i0, subject.i1)
    n = len(subject.ts)
    grow = lambda x: x.expand(n, -1, -1, -1, -1)  # noqa: E731
    expected = linear_scaling(grow(subject.i0), grow(subject.i1), grow(f01), grow(f10), subject.ts)
    assert torch.allclose(method.predict(subject, (f01, f10)), expected)
    assert rows[0]["psnr"] == pytest.approx(image_metrics(expected[:1].clamp(0, 1), subject.targets[:1])["psnr"])


def test_elastix_is_unavailable_without_itk_elastix(monkeypatch):
    monkeypatch.setitem(sys.modules, "itk", None)  # import itk fails
    with pytest.raises(methods_mod.MethodUnavailable, match="itk-elastix"):
        methods_mod.ElastixLinear().setup(torch.device("cpu"))


def test_ablation_table_marks_the_flags():
    summary = {name: {"psnr": 30.0 + k, "ncc": 0.5, "ssim": 0.9, "nmse": 2.0, "n": 6}
               for k, name in enumerate(ablations_mod.ABLATIONS)}
    table = ablations_mod.ablation_table(summary)
    lines = table.splitlines()
    assert lines[0] == "### Table 2 (modules)"
    assert "| none |  |  |  |  | 30.00 |" in table
    assert "| dfm_tm | ✓ | ✓ |  |  | 32.00 |" in table
    assert "| full | ✓ | ✓ | ✓ | ✓ | 34.00 |" in table
    assert "| recon | ✓ |  |  | 35.00 |" in table and "| recon_align | ✓ | ✓ |  | 36.00 |" in table
    only = ablations_mod.ablation_table(summary, rows=["recon"]).splitlines()
    assert only[0] == "### Table 3 (losses)" and [line.split(" | ")[0] for line in only[4:]] == ["| recon"]


# --- with the networks ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Randomly initialised teacher, student and VoxelMorph saved to files."""
    networks = pytest.importorskip("scripts.networks")
    folder = tmp_path_factory.mktemp("weights")
    nets = {
        "teacher": networks.Teacher(channels=CHANNELS, **SMALL),
        "student": networks.Student(channels=CHANNELS, **SMALL),
        "vm": voxelmorph_net(flow_init_std=0.05),
    }
    for name, net in nets.items():
        torch.save(net.state_dict(), folder / f"{name}.pt")
    return folder, nets


def test_config_runs_every_method_on_the_same_samples(phantoms, dataset, weights, tmp_path):
    folder, nets = weights
    out = tmp_path / "eval"
    run(config_file=str(ROOT / "configs" / "evaluate.json"), bundle_root=str(ROOT), dataset_dir=str(phantoms),
        output_dir=str(out), spatial_size=list(SIZE), channels=CHANNELS, device="$torch.device('cpu')",
        methods=["blend", "vm_linear", "teacher", "student"], student_weights=str(folder / "student.pt"),
        teacher_weights=str(folder / "teacher.pt"), vm_weights=str(folder / "vm.pt"),
        **{f"{net}#{key}": value for net in ("network_def", "teacher_def") for key, value in SMALL.items()})
    rows = read_csv(out / "metrics.csv")
    methods = ["blend", "vm_linear", "teacher", "student"]
    assert len(rows) == 2 * 3 * len(methods)
    assert len({(r["subject"], r["frame"], r["method"]) for r in rows}) == len(rows)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == methods
    for name in methods:
        mine = [r for r in rows if r["method"] == name]
        assert summary[name]["n"] == 6
        for metric in IMAGE_METRICS:
            assert summary[name][metric] == pytest.approx(np.mean([float(r[metric]) for r in mine]), rel=1e-9)
        has_field = name != "blend"
        assert all((r["epe"] != "") == has_field for r in mine)
        if has_field:
            assert summary[name]["n_truth"] == 6
    blend = blend_by_hand(dataset)
    truth = {s.case: s for s in cases.eval_cases(dataset, phantoms)}
    with torch.no_grad():
        for r in rows:
            if r["subject"] != "patient091":  # one subject suffices to pair rows with samples
                continue
            subject, frame = truth[r["subject"]], int(r["frame"])
            k = subject.frames.index(frame)
            t = subject.ts[k : k + 1]
            if r["method"] == "blend":
                assert float(r["psnr"]) == pytest.approx(blend[(r["subject"], frame)]["psnr"], rel=1e-5)
            if r["method"] in ("student", "teacher"):
                net = nets[r["method"]].eval()
                middle = [subject.targets[k : k + 1]] if r["method"] == "teacher" else []
                image = torch.cat([subject.i0, *middle, subject.i1], 1)
                pred = net(image, t).clamp(0, 1)
                mse = float(((pred.double() - subject.targets[k : k + 1].double()) ** 2).mean())
                assert float(r["psnr"]) == pytest.approx(10 * np.log10(1 / mse), rel=1e-4)
                phi = net.forward_intermediates(image, t).phi0[-1]
                assert float(r["epe"]) == pytest.approx(float(endpoint_error(phi, subject.truth[k : k + 1])[0]),
                                                        rel=1e-4)
    table = (out / "summary.md").read_text().splitlines()
    assert len(table) == 2 + len(methods)
    for name in methods:
        row = next(line for line in table if line.startswith(f"| {name} |"))
        assert f"| {summary[name]['psnr']:.2f} ± {summary[name]['psnr_std']:.2f} |" in row
        assert ("-" if name == "blend" else f"{summary[name]['epe']:.3f} ±") in row
    assert_png(out / "error_maps.png", width=(len(methods) + 1) * 160)
    assert_png(out / "psnr_over_t.png")


def test_fire_verb_raises_user_errors_as_themselves(phantoms, tmp_path):
    pytest.importorskip("scripts.networks")  # the config builds every configured method
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError):  # not the config machinery's RuntimeError around it
        evaluator_mod.evaluate(str(phantoms), output_dir=str(tmp_path / "taken"), methods=["blend"], spatial_size=list(SIZE))
    with pytest.raises(InputError, match="unknown"):
        evaluator_mod.evaluate(str(phantoms), output_dir=str(tmp_path / "new"), methods=["blend", "vm"], spatial_size=list(SIZE))
    assert not (tmp_path / "new").exists()


def test_ablation_runner_trains_evaluates_and_tabulates(phantoms, weights, tmp_path):
    pytest.importorskip("scripts.training.losses")
    folder, _ = weights
    # one iteration of one row with the teacher given (its training is the same _train call); the evaluation goes
    # through the fire verb ``evaluate``, so this also runs configs/evaluate.json from Python
    table = ablations_mod.ablations(str(phantoms), epochs=1, epoch_length=1, runs_dir=str(tmp_path / "runs"), rows=["recon"],
                        teacher=str(folder / "teacher.pt"), spatial_size=list(SIZE), channels=CHANNELS, device="cpu")
    text = Path(table).read_text()
    assert "### Table 3 (losses)" in text and "| recon | ✓ |  |  |" in text and "Table 2" not in text
    assert (tmp_path / "runs" / "ablation_recon" / "model.pt").is_file()
    assert not (tmp_path / "runs" / "ablation_teacher").exists()
    summary = json.loads((tmp_path / "runs" / "ablation_eval" / "summary.json").read_text())
    assert list(summary) == ["blend", "recon"] and summary["recon"]["n"] == 6
    with pytest.raises(OutputExistsError):  # refused before any training
        ablations_mod.ablations(str(phantoms), runs_dir=str(tmp_path / "runs"), rows=["full"])
    assert not (tmp_path / "runs" / "ablation_full").exists()
    # tested on every case of another folder (phantoms of another seed), which also validates the training
    other = write_acdc_layout(tmp_path / "other", 1, seed=7, shape=SIZE, frames=10, first_patient=1)
    table = ablations_mod.ablations(str(phantoms), epochs=1, epoch_length=1, runs_dir=str(tmp_path / "runs2"), rows=["recon"],
                        spatial_size=list(SIZE), channels=CHANNELS, device="cpu", teacher=str(folder / "teacher.pt"),
                        test_dataset_dir=str(other))
    assert f"tested on {other}" in Path(table).read_text()
    assert (tmp_path / "runs2" / "ablation_recon" / "model.pt").is_file()
    summary = json.loads((tmp_path / "runs2" / "ablation_eval" / "summary.json").read_text())
    assert summary["recon"]["n"] == 3  # patient001 of the other folder: 3 target frames


def test_ablation_runner_forwards_the_recipe_to_every_training(phantoms, tmp_path, monkeypatch):
    """learning_rate and lambda_r reach each row's training config; unset ones leave the configs' defaults."""
    class Trained(Exception):
        """Raised instead of evaluating the (not really) trained rows."""

    def stop(*args, **kwargs):
        raise Trained

    calls = []
    monkeypatch.setattr(ablations_mod, "_train", lambda config, overrides: calls.append((config, dict(overrides))))
    monkeypatch.setattr(ablations_mod, "evaluate", stop)
    with pytest.raises(Trained):
        ablations_mod.ablations(str(phantoms), epochs=1, runs_dir=str(tmp_path / "a"), rows=["recon", "none"],
                    teacher="t.pt", learning_rate=0.003, lambda_r=0.2)
    assert [tuple(c) for c, _ in calls] == [("train_teacher.json", "train_student.json")] * 2
    assert all(o["learning_rate"] == 0.003 and o["lambda_r"] == 0.2 for _, o in calls)
    calls.clear()
    with pytest.raises(Trained):
        ablations_mod.ablations(str(phantoms), epochs=1, runs_dir=str(tmp_path / "b"), rows=["recon"], teacher="t.pt")
    assert "lambda_r" not in calls[0][1] and "learning_rate" not in calls[0][1]


def test_rows_without_distillation_train_without_the_teacher():
    assert ablations_mod.row_overrides("recon") == {**ablations_mod.ABLATIONS["recon"], "use_align": False, "use_distill": False,
                                        "train#inferer#teacher": "$None", "train#prepare_batch#with_teacher": False}
    none = ablations_mod.row_overrides("none")
    assert none == ablations_mod.ABLATIONS["none"] and none["use_distill"] and not any(none[k] for k in ablations_mod.NETWORK_FLAGS)
    assert {k: v for k, v in ablations_mod.row_overrides("dfm_tm").items() if k in ablations_mod.NETWORK_FLAGS} == {
        "use_dfm": True, "time_modulation": True, "use_refinement": False, "multi_scale_dfm": False}
