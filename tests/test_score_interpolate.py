"""``python -m scripts.research score_interpolate``: the interpolate command run per patient and scored against the acquired frames."""

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest

from scripts.datasets.acdc import parse_info_cfg
from scripts.datasets.triplets import frames_between
from scripts.research.score_interpolate import score_case, score_interpolate
from scripts.utils.errors import InputError, OutputExistsError


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


def test_score_case_against_hand_computed_psnr():
    """A prediction off by a known offset has PSNR -20 log10(offset); the blend matches the formula by hand."""
    rng = np.random.default_rng(0)
    series = rng.uniform(100, 700, size=(6, 5, 4, 5)).astype(np.float32)  # input units, scale 800 per unit
    series[0, 0, 0, 0], series[0, 0, 0, 1] = 100.0, 900.0  # pin the series min-max to 100..900 (frames 0, 1)
    frames, ts = [2, 3], [1 / 3, 2 / 3]  # targets below 0.75 in [0, 1] units: the offset is never clipped
    offset = 0.05  # in [0, 1] units
    synthesised = series[..., frames] + offset * 800
    rows = score_case(series, frames, ts, 1, 4, synthesised, "x.nii.gz")
    unit = (series - 100) / 800
    for row, frame, t in zip(rows, frames, ts):
        assert row["psnr_student"] == pytest.approx(-20 * math.log10(offset), abs=1e-4)
        blend = (1 - t) * unit[..., 1] + t * unit[..., 4]
        assert row["psnr_blend"] == pytest.approx(_psnr(blend, unit[..., frame]), abs=1e-6)
        assert (row["frame"], row["t"]) == (frame, t)


def test_score_case_refuses_a_wrong_shape():
    series = np.zeros((4, 4, 3, 5), np.float32)
    series[0, 0, 0, 0] = 1
    with pytest.raises(InputError, match="out.nii.gz: holds"):
        score_case(series, [2], [0.5], 1, 3, np.zeros((4, 4, 2, 1), np.float32), "out.nii.gz")


def test_cli_scores_runs_the_documented_command(tiny_acdc, tmp_path):
    """The verb runs ``python -m scripts interpolate`` for the test patient; its scores are those of the NIfTI the
    command wrote against the acquired frames, and the blend's are computed from the raw series by hand."""
    out = tmp_path / "cli"
    summary = score_interpolate(str(tiny_acdc), str(out))
    case = tiny_acdc / "patient091"
    info = parse_info_cfg(case / "Info.cfg")
    series = np.asarray(nib.load(case / "patient091_4d.nii.gz").dataobj, dtype=np.float32)
    targets = frames_between(info["ED"], info["ES"], series.shape[3], cyclic=True)
    written = json.loads((out / "patient091" / "summary.json").read_text())
    assert written["start_frame"] == info["ED"] and written["end_frame"] == info["ES"]
    assert written["t"] == pytest.approx([t for _, t in targets])
    pred = np.asarray(nib.load(out / "patient091" / written["outputs"]["nifti"][0]).dataobj, dtype=np.float32)
    lo, hi = series.min(), series.max()
    unit, pred_unit = (series - lo) / (hi - lo), np.clip((pred - lo) / (hi - lo), 0, 1)
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["frame"]) for row in rows] == [f for f, _ in targets]
    for n, (row, (frame, t)) in enumerate(zip(rows, targets)):
        assert float(row["psnr_student"]) == pytest.approx(_psnr(pred_unit[..., n], unit[..., frame]), abs=1e-4)
        blend = (1 - t) * unit[..., info["ED"]] + t * unit[..., info["ES"]]
        assert float(row["psnr_blend"]) == pytest.approx(_psnr(blend, unit[..., frame]), abs=1e-4)
    assert summary["frames"] == len(targets) and summary["patients"] == 1
    assert summary["gain_db"] == pytest.approx(summary["psnr_student"] - summary["psnr_blend"])
    assert json.loads((out / "summary.json").read_text()) == pytest.approx(summary)
    assert "| patient091 |" in (out / "summary.md").read_text()
    with pytest.raises(OutputExistsError):
        score_interpolate(str(tiny_acdc), str(out))
