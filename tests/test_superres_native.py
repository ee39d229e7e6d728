"""Temporal super-resolution on the native grid: the protocol grid's frames, the series at its own resolution, the
student through the product's motion region, the moving region's PSNR."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from scripts.evaluation import superres_native
from scripts.evaluation.superres import acquired_pairs, superres
from scripts.evaluation.superres_native import dropped_plan, moving_region, product_steps
from scripts.inference.interpolator import SeriesInterpolator
from scripts.io.nifti_write import write_nifti_series
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT


def _moving_square(shape=(64, 56, 4), frames=10, spacing=(1.5, 1.5, 8.0), seed=0):
    """A static textured background with a bright 4 x 4 square moving 4 voxels along x per frame (rows 26:30): each
    voxel of its path (the returned mask) is covered in one frame, so its temporal standard deviation is the same."""
    rng = np.random.default_rng(seed)
    background = rng.uniform(100, 200, size=shape).astype(np.float32)
    series = np.repeat(background[..., None], frames, axis=-1)
    path = np.zeros(shape, dtype=bool)
    for f in range(frames):
        x0 = 8 + 4 * f
        series[x0:x0 + 4, 26:30, :, f] = 900.0
        path[x0:x0 + 4, 26:30, :] = True
    return series, np.diag([*spacing, 1.0]), path


def _write(folder, name, series, affine):
    folder.mkdir(exist_ok=True)
    write_nifti_series(series, affine, folder / f"{name}.nii.gz")
    return folder


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("num_frames, factor, cyclic", [(10, 2, True), (10, 4, True), (10, 4, False), (9, 2, True),
                                                        (13, 3, True), (13, 3, False)])
def test_dropped_frames_and_neighbours_are_the_protocol_grids(num_frames, factor, cyclic):
    acquired, dropped, plan = dropped_plan(num_frames, factor, cyclic)
    pairs = acquired_pairs(num_frames, factor, cyclic)
    assert acquired == list(range(0, num_frames, factor))
    assert dropped == [f for _, _, frames in pairs for f in frames]
    expected = [(a, c % num_frames, (f - a) / (c - a)) for a, c, frames in pairs for f in frames]
    assert [(acquired[p.previous], acquired[p.next], p.fraction) for p in plan] == expected
    assert not any(p.acquired for p in plan)


def test_moving_region_is_the_path_of_the_moving_square():
    series, _, path = _moving_square()
    unit = (series - series.min()) / (series.max() - series.min())
    mask = moving_region(unit, "square")
    assert mask.shape == series.shape[:3]
    np.testing.assert_array_equal(mask, path)
    with pytest.raises(InputError, match="does not move"):
        moving_region(np.repeat(unit[..., :1], 4, axis=-1), "still")


def test_moving_region_keeps_motion_above_a_fifth_of_the_strongest():
    series, _, path = _moving_square()
    weak, faint = np.zeros_like(path), np.zeros_like(path)
    for f in range(series.shape[-1]):  # two more squares on their own rows: 30 % and 10 % of the first's contrast
        x0 = 8 + 4 * f
        series[x0:x0 + 4, 8:12, :, f] += 0.3 * 750
        series[x0:x0 + 4, 44:48, :, f] += 0.1 * 750
        weak[x0:x0 + 4, 8:12, :] = faint[x0:x0 + 4, 44:48, :] = True
    unit = (series - series.min()) / (series.max() - series.min())
    mask = moving_region(unit, "squares")
    np.testing.assert_array_equal(mask, path | weak)
    assert not (mask & faint).any()


def test_native_blend_rows_are_the_blend_at_the_series_own_resolution(tmp_path):
    series, affine, path = _moving_square(shape=(40, 36, 4), frames=10)
    series[..., 5] += 3.0  # every frame a little different, so the min-max is the whole series'
    data = _write(tmp_path / "cines", "square", series, affine)
    superres(str(data), dataset="nifti4d", split="all", output_dir=str(tmp_path / "sr"), factors=[2, 4],
             methods=["blend"], grid="native")
    rows = _rows(tmp_path / "sr" / "metrics.csv")
    unit = (series.astype(np.float64) - series.min()) / (series.max() - series.min())
    mask = path  # the moving region of this series (test above)

    def psnr(pred, truth, where=None):
        error = (pred - truth) ** 2
        return 10 * np.log10(1 / (error[where] if where is not None else error).mean())

    # x4: frame 5 lies between 4 and 8 at t = 1/4; frame 9 between 8 and frame 0 of the next cycle at t = 1/2
    for factor, frame, a, c, t in ((4, 5, 4, 8, 0.25), (4, 9, 8, 0, 0.5), (2, 3, 2, 4, 0.5)):
        row = next(r for r in rows if (int(r["factor"]), int(r["frame"])) == (factor, frame))
        expected = (1 - t) * unit[..., a] + t * unit[..., c]
        assert float(row["t"]) == t and row["method"] == "blend"
        assert float(row["psnr"]) == pytest.approx(psnr(expected, unit[..., frame]), rel=1e-5)
        assert float(row["psnr_region"]) == pytest.approx(psnr(expected, unit[..., frame], mask), rel=1e-5)
        assert float(row["psnr_region"]) < float(row["psnr"])  # the static background only dilutes the error
    assert sorted(int(r["frame"]) for r in rows if r["factor"] == "4") == [1, 2, 3, 5, 6, 7, 9]
    summary = json.loads((tmp_path / "sr" / "summary.json").read_text())
    assert summary["grid"] == "native" and "20%" in summary["moving_region"]
    assert summary["x2"]["blend"]["n"] == 5 and set(summary["x2"]["blend"]["per_case_region"]) == {"square"}
    markdown = (tmp_path / "sr" / "summary.md").read_text()
    assert "moving region PSNR (dB)" in markdown and "99.5th percentile" in markdown
    assert (tmp_path / "sr" / "psnr_by_case_x2.png").is_file()


@pytest.mark.parametrize("motion_region", [True, False])
def test_the_student_runs_as_the_product_runs_it(tmp_path, monkeypatch, motion_region):
    series, affine, _ = _moving_square(shape=(96, 96, 4), frames=8)
    data = _write(tmp_path / "cines", "square", series, affine)
    seen = []

    def upsample(self, frames, plan, phases=None):  # stand-in for the network: record what it is given, return the
        seen.append((frames.shape, list(plan), phases))  # acquired frame
        return np.stack([frames[..., p.previous] for p in plan], axis=-1)

    monkeypatch.setattr(SeriesInterpolator, "upsample", upsample)
    superres(str(data), dataset="nifti4d", split="all", output_dir=str(tmp_path / "sr"), factors=[2],
             grid="native", motion_region=motion_region)
    (shape, plan, phases), = seen  # one call per series and factor, with the whole plan
    assert plan == dropped_plan(8, 2, True)[2]
    assert phases == [0.0, 0.25, 0.5, 0.75]  # the kept frames' places in the cycle, for the motion clock
    assert shape[2:] == (4, 4)  # every slice, the 4 acquired frames
    if motion_region:  # the box around the square's path (x 8:40, y 26:30, plus 15 mm), not the whole plane
        assert shape[0] < 96 and shape[1] < 96
    else:
        assert shape[:2] == (96, 96)
    summary = json.loads((tmp_path / "sr" / "summary.json").read_text())
    assert summary["motion_region"] is motion_region and set(summary["x2"]) == {"blend", "student"}


def test_the_student_region_and_warp_choice_come_from_the_inference_config():
    config = json.loads((ROOT / "configs" / "inference.json").read_text())
    network, region, warp_choice, *_ = product_steps(False)
    assert warp_choice.wide_above == config["warp_choice"]["wide_above"] and warp_choice.near == network.image_warp
    assert type(network).__name__ == config["network_def"]["_target_"].rsplit(".", 1)[1]
    assert not region.enabled
    assert region.margin_mm == config["region"]["margin_mm"] and region.tolerance == config["region"]["tolerance"]
    assert region.training_spacing == (1.5, 1.5)
    assert product_steps(True).region.enabled


@pytest.mark.parametrize("arguments, source", [
    ({"grid": "Native"}, "grid"), ({"grid": 1}, "grid"),
    ({"grid": "native", "motion_region": "maybe"}, "motion_region"),
    ({"grid": "native", "methods": ["blend", "elastix_linear"]}, "methods"),
    ({"grid": "native", "methods": ["vm_linear"]}, "methods"),
])
def test_bad_native_arguments_are_one_line_input_errors(tmp_path, arguments, source):
    series, affine, _ = _moving_square(shape=(24, 24, 4), frames=6)
    data = _write(tmp_path / "cines", "square", series, affine)
    with pytest.raises(InputError) as caught:
        superres(str(data), dataset="nifti4d", split="all", output_dir=str(tmp_path / "sr"), **arguments)
    assert caught.value.source == source and "\n" not in str(caught.value)
    assert not (tmp_path / "sr").exists()


def test_a_series_too_short_for_the_factor_is_named_before_any_work(tmp_path, monkeypatch):
    series, affine, _ = _moving_square(shape=(24, 24, 4), frames=4)
    data = _write(tmp_path / "cines", "short", series, affine)
    monkeypatch.setattr(superres_native, "read_nifti_4d", lambda path: pytest.fail("read the voxels"))
    with pytest.raises(InputError, match="has 4 frames") as caught:
        superres(str(data), dataset="nifti4d", split="all", output_dir=str(tmp_path / "sr"), factors=[2, 4],
                 grid="native", methods=["blend"])
    assert str(caught.value.source).endswith("short.nii.gz")
    assert not (tmp_path / "sr").exists()


def test_acdc_series_are_read_from_the_patients_4d_file(tiny_acdc, tmp_path):
    superres(str(tiny_acdc), output_dir=str(tmp_path / "sr"), factors=[2], methods=["blend"], split="test",
             grid="native")
    row = _rows(tmp_path / "sr" / "metrics.csv")[0]
    image = nib.load(tiny_acdc / "patient091" / "patient091_4d.nii.gz").get_fdata()  # 24 x 24 x 8, not resampled
    unit = (image - image.min()) / (image.max() - image.min())
    expected = 10 * np.log10(1 / ((0.5 * unit[..., 0] + 0.5 * unit[..., 2] - unit[..., 1]) ** 2).mean())
    assert (row["subject"], row["frame"]) == ("patient091", "1")
    assert float(row["psnr"]) == pytest.approx(expected, rel=1e-5)


def test_a_sites_neighbour_refinement_is_benchmarked_with_its_student(tmp_path):
    """``superres --model <student> --neighbour_model <refinement>`` (a site's whole-cine fine-tuning) scores the
    student with that refinement, as ``interpolate --upsample`` runs them: one whose correction is zero scores as the
    student alone, a trained one does not; a missing file is named before any work."""
    import torch

    from scripts.networks.neighbours import NeighbourRefinement
    from scripts.utils.checkpoint import save_weights

    series, affine, _ = _moving_square(frames=12)  # 6 kept frames at x2: each pair a sixth of the cycle, refined
    data = _write(tmp_path / "cines", "square", series, affine)
    zero = save_weights(NeighbourRefinement(16), tmp_path / "zero.pt")
    trained = NeighbourRefinement(16)
    torch.nn.init.normal_(trained.out.weight, std=0.05)
    trained = save_weights(trained, tmp_path / "trained.pt")

    def psnr(refinement, name):
        superres(str(data), dataset="nifti4d", split="all", output_dir=str(tmp_path / name), factors=[2],
                 grid="native", methods=["student", "student_pairwise"], model=str(ROOT / "models" / "cine_model.pt"),
                 neighbour_model=str(refinement))
        rows = _rows(tmp_path / name / "metrics.csv")
        return {m: [float(r["psnr"]) for r in rows if r["method"] == m] for m in ("student", "student_pairwise")}

    unchanged = psnr(zero, "zero")
    assert len(unchanged["student"]) == 6
    np.testing.assert_allclose(unchanged["student"], unchanged["student_pairwise"], atol=1e-3)
    changed = psnr(trained, "trained")
    np.testing.assert_allclose(changed["student_pairwise"], unchanged["student_pairwise"])
    assert not np.allclose(changed["student"], changed["student_pairwise"], atol=1e-2)
    with pytest.raises(InputError, match="missing.pt: weights file not found"):
        superres(str(data), dataset="nifti4d", split="all", output_dir=str(tmp_path / "bad"), factors=[2],
                 grid="native", neighbour_model=str(tmp_path / "missing.pt"))
    assert not (tmp_path / "bad").exists()
