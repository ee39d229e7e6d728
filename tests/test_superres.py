"""Temporal super-resolution benchmark: which frames are dropped and from which neighbours, the scores, the files."""

import json

import pytest
import torch

from scripts.evaluation.metrics import psnr
from scripts.evaluation.superres import acquired_pairs, summarise_superres, superres
from scripts.utils.atomic import OutputExistsError
from scripts.utils.errors import InputError


@pytest.mark.parametrize("num_frames, factor, cyclic, expected", [
    (10, 2, True, [(0, 2, [1]), (2, 4, [3]), (4, 6, [5]), (6, 8, [7]), (8, 10, [9])]),
    (10, 4, True, [(0, 4, [1, 2, 3]), (4, 8, [5, 6, 7]), (8, 10, [9])]),
    (10, 4, False, [(0, 4, [1, 2, 3]), (4, 8, [5, 6, 7])]),
    (9, 2, True, [(0, 2, [1]), (2, 4, [3]), (4, 6, [5]), (6, 8, [7])]),  # frame 8 acquired, 8 -> 9(=0) has no gap
])
def test_acquired_pairs(num_frames, factor, cyclic, expected):
    pairs = acquired_pairs(num_frames, factor, cyclic)
    assert pairs == expected
    dropped = [f for _, _, frames in pairs for f in frames]
    assert len(dropped) == len(set(dropped)) and not any(f % factor == 0 for f in dropped)


def test_summary_pools_frames_and_counts_series_below_the_blend():
    rows = []
    for method, values in (("blend", {"a": [30, 32], "b": [40, 40]}), ("student", {"a": [33, 33], "b": [39, 39]})):
        for case, psnrs in values.items():
            for frame, value in enumerate(psnrs):
                rows.append({"factor": 2, "subject": case, "frame": frame, "t": 0.5, "method": method, "psnr": value,
                             "ncc": 0.9, "ssim": 0.8, "nmse": 1.0})
    table = summarise_superres(rows)["x2"]
    assert table["blend"]["psnr"] == pytest.approx(35.5) and table["student"]["psnr"] == pytest.approx(36.0)
    assert table["student"]["per_case"] == {"a": 33.0, "b": 39.0}
    assert table["student"]["gain_db"] == pytest.approx(0.5)
    assert table["student"]["cases_below"] == ["b"] and table["blend"]["cases_below"] == []
    assert table["student"]["n"] == 4


def test_superres_scores_every_dropped_frame_against_the_truth(tiny_acdc, tmp_path):
    out = superres(str(tiny_acdc), output_dir=str(tmp_path / "sr"), factors=[2, 4], spatial_size=(24, 24, 8),
                   split="all")
    summary = json.loads((tmp_path / "sr" / "summary.json").read_text())
    assert set(summary) == {"x2", "x4"} and set(summary["x2"]) == {"blend", "student"}
    # 10 frames: x2 drops 5 per series, x4 drops 1,2,3,5,6,7,9 = 7; three series
    assert summary["x2"]["blend"]["n"] == 15 and summary["x4"]["student"]["n"] == 21
    assert set(summary["x4"]["blend"]["per_case"]) == {"patient001", "patient002", "patient091"}
    for name in ("metrics.csv", "summary.md", "psnr_by_case_x2.png", "psnr_by_case_x4.png"):
        assert (tmp_path / "sr" / name).is_file()
    # the blend row of frame 9 at x4 (neighbours 8 and frame 0 of the next cycle, t = 1/2) recomputed by hand
    from scripts.datasets.acdc import acdc_case

    series = acdc_case(tiny_acdc / "patient002", (24, 24, 8)).load()
    expected = psnr(torch.from_numpy(0.5 * series[..., 8] + 0.5 * series[..., 0])[None, None],
                    torch.from_numpy(series[..., 9])[None, None])
    lines = (tmp_path / "sr" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = next(dict(zip(header, line.split(","))) for line in lines[1:]
               if line.startswith("4,patient002,9,") and line.split(",")[4] == "blend")
    assert float(row["t"]) == 0.5 and float(row["psnr"]) == pytest.approx(float(expected), rel=1e-5)
    assert out == str(tmp_path / "sr")
    with pytest.raises(OutputExistsError, match="exists"):
        superres(str(tiny_acdc), output_dir=str(tmp_path / "sr"), spatial_size=(24, 24, 8), split="all")


@pytest.mark.parametrize("factors", [[1], [2, 0], "x2", [True], 2.0])
def test_bad_factors_are_named(tiny_acdc, tmp_path, factors):
    with pytest.raises(InputError) as caught:
        superres(str(tiny_acdc), output_dir=str(tmp_path / "sr"), factors=factors)
    assert caught.value.source == "factors"
    assert not (tmp_path / "sr").exists()


def test_lung4d_is_refused_for_whole_cycles(tmp_path):
    with pytest.raises(InputError, match="must be one of acdc, nifti4d"):
        superres(str(tmp_path), dataset="lung4d", output_dir=str(tmp_path / "sr"), methods=["blend"])


@pytest.mark.parametrize("argument, value, source", [
    ("spatial_size", "96,96", "spatial_size"), ("split", "val", "split"), ("overwrite", "maybe", "overwrite"),
    ("methods", "blend", "methods"), ("variants", {"cycle": "w.pt"}, "variants"), ("threads", 0, "threads"),
    ("output_dir", ["a"], "output_dir"),
])
def test_bad_arguments_are_named_before_any_work(tiny_acdc, tmp_path, argument, value, source):
    arguments = {"output_dir": str(tmp_path / "sr"), argument: value}
    with pytest.raises(InputError) as caught:
        superres(str(tiny_acdc), **arguments)
    assert caught.value.source == source
    assert not (tmp_path / "sr").exists()



def test_superres_scores_the_registration_baselines(tiny_acdc, tmp_path, monkeypatch):
    import sys
    import types

    from scripts.evaluation import methods as methods_mod

    pairs = []

    def zero_fields(i0, i1, **kwargs):  # elastix stand-in: no motion, so its frames must be exactly the blend's
        pairs.append(i0.shape)
        return torch.zeros(1, 3, *i0.shape[2:]), torch.zeros(1, 3, *i0.shape[2:])

    monkeypatch.setattr(methods_mod, "elastix_fields", zero_fields)
    monkeypatch.setitem(sys.modules, "itk", types.SimpleNamespace(ElastixRegistrationMethod=object))
    superres(str(tiny_acdc), output_dir=str(tmp_path / "sr"), factors=[4], spatial_size=(24, 24, 8), split="test",
             methods=["blend", "vm_linear", "elastix_linear"])  # patient091: 7 dropped frames, 3 pairs
    table = json.loads((tmp_path / "sr" / "summary.json").read_text())["x4"]
    assert list(table) == ["blend", "vm_linear", "elastix_linear"]
    assert len(pairs) == 3  # one registration per acquired pair, reused for each of its frames
    assert table["elastix_linear"]["n"] == table["vm_linear"]["n"] == table["blend"]["n"] == 7
    assert table["elastix_linear"]["per_case"] == pytest.approx(table["blend"]["per_case"], abs=1e-4)
    # the shipped VoxelMorph moves the endpoints: its frames are not the blend's
    assert abs(table["vm_linear"]["psnr"] - table["blend"]["psnr"]) > 1e-3



def test_the_student_warps_each_factor_as_the_product_would(tmp_path):
    """With the product's warp choice the student is warped bilinearly where the kept frames are more than a sixth of
    the cycle apart (x4 of 12 frames: 3 kept) and cubically where they are closer (x2 of 14 frames: 7 kept); each
    prediction matches the network run with that warp."""
    import numpy as np

    from scripts.evaluation.methods import StudentMethod
    from scripts.evaluation.superres import score_superres
    from scripts.inference.warp_choice import WarpBySpan
    from scripts.networks import Student
    from scripts.utils.checkpoint import save_weights

    torch.manual_seed(0)
    network = Student(channels=(4, 8, 8, 8))
    with torch.no_grad():  # fields far from zero, so the two warps differ
        for dfgen in network.msdf.dfgen:
            dfgen.head.bias.normal_(0.0, 0.5)
    weights = save_weights(network, tmp_path / "w.pt")
    series = {n: np.random.default_rng(n).random((16, 16, 8, n)).astype(np.float32) for n in (12, 14)}

    def scores(warp_choice, image_warp, num_frames, factor):
        method = StudentMethod(Student(channels=(4, 8, 8, 8), image_warp=image_warp), weights, None, warp_choice)
        method.name = "student"
        method.setup(torch.device("cpu"))
        rows = score_superres([("s", lambda: series[num_frames])], [method], (factor,))
        return [r["psnr"] for r in rows], method.network.image_warp

    chosen, warp = scores(WarpBySpan(), "cubic", 12, 4)
    assert warp == "bilinear" and chosen == scores(None, "bilinear", 12, 4)[0]
    chosen, warp = scores(WarpBySpan(), "bilinear", 14, 2)
    assert warp == "cubic" and chosen == scores(None, "cubic", 14, 2)[0]
    assert chosen != scores(None, "bilinear", 14, 2)[0]


def test_an_option_the_dataset_kind_does_not_take_is_refused_by_name(tmp_path):
    """A whole-series config's ACDC hold-out passed to a folder of NIfTI cines: one line naming the option (it was a
    TypeError from deep inside a config), before any file is read."""
    from scripts.datasets.dropped_frames import series_cases

    with pytest.raises(InputError, match=r"'nifti4d' datasets take no option 'train_range'.*test_fraction"):
        series_cases("nifti4d", tmp_path / "missing", "train", (8, 8, 4), train_range=[1, 80])
    with pytest.raises(InputError, match=r"'acdc' datasets take no option 'test_fraction'"):
        series_cases("acdc", tmp_path / "missing", "train", (8, 8, 4), test_fraction=0.2)
