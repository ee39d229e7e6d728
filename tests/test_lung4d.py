"""4D-Lung layout, protocol and dataset on tiny synthetic layout-a CT acquisitions."""

import numpy as np
import pytest
import torch

pytest.importorskip("scripts.datasets.triplets", reason="the triplet dataset machinery (scripts/datasets/triplets.py)")

from scripts.datasets.lung4d import lung4d_cases, lung4d_dataset, lung4d_protocol_series  # noqa: E402
from scripts.io.series import Series4D  # noqa: E402
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition  # noqa: E402
from scripts.utils.errors import InputError  # noqa: E402

SHAPE = (12, 10, 4)
SIZE = (8, 8, 6)


def ct_phases(frames=7, seed=0):
    """Integer HU from -2000 to 600 (beyond the [-1400, 200] window), each phase shifted so all differ."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-2000, 600, (*SHAPE, frames)).astype(np.float32)
    array[0, 0, 0, :] = [-2000 + 10 * f for f in range(frames)]
    return Series4D(array, np.diag([2.0, 2.5, 3.0, 1.0]), "synthetic")


def make_dataset(root, num_patients=3, frames=7):
    """``num_patients`` patients, one 4D CT study each, plus a stray file; returns the written series by patient."""
    written = {}
    for index in range(num_patients):
        series = ct_phases(frames, seed=index)
        write_dicom_acquisition(series, root, layout="a", modality="CT", patient_id=f"LUNG{index:03d}")
        written[f"LUNG{index:03d}"] = series
    (root / "manifest.csv").write_text("patient\n")
    return written


def reference_protocol(array):
    """Phases 0-5 resized with torch trilinear interpolation, clipped, one min-max for the case."""
    phases = torch.from_numpy(np.moveaxis(array[..., :6], -1, 0))[None]
    resized = torch.nn.functional.interpolate(phases, size=SIZE, mode="trilinear", align_corners=False)[0]
    clipped = resized.clamp(-1400, 200)
    normalised = (clipped - clipped.min()) / (clipped.max() - clipped.min())
    return np.moveaxis(normalised.numpy(), 0, -1)


def test_cases_sorted_and_split_by_index(tmp_path):
    make_dataset(tmp_path)
    cases = lung4d_cases(tmp_path)
    assert [case.parent.name for case in cases] == ["LUNG000", "LUNG001", "LUNG002"]
    assert lung4d_cases(tmp_path, "train", num_train=2) == cases[:2]
    assert lung4d_cases(tmp_path, "test", num_train=2) == cases[2:]
    assert len(lung4d_cases(tmp_path, "train")) == 3  # default 68 training cases: all three


@pytest.mark.parametrize("split, num_train, words", [
    ("valid", 2, "split: must be one of"),
    ("test", 68, "none in the test split"),
])
def test_case_errors(tmp_path, split, num_train, words):
    make_dataset(tmp_path, num_patients=1)
    with pytest.raises(InputError, match=words):
        lung4d_cases(tmp_path, split, num_train)


def test_no_case_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(InputError, match="holds no <patient>/<study> folder"):
        lung4d_cases(tmp_path)


def test_protocol_matches_reference(tmp_path):
    written = make_dataset(tmp_path, num_patients=1)
    (case,) = lung4d_cases(tmp_path)
    frames = lung4d_protocol_series(case, SIZE)
    assert frames.shape == (*SIZE, 6) and frames.dtype == np.float32
    assert frames.min() == 0.0 and frames.max() == 1.0
    np.testing.assert_allclose(frames, reference_protocol(written["LUNG000"].array), atol=1e-5)


def test_protocol_needs_six_phases(tmp_path):
    make_dataset(tmp_path, num_patients=1, frames=4)
    (case,) = lung4d_cases(tmp_path)
    with pytest.raises(InputError, match="has 4 time points") as err:
        lung4d_protocol_series(case, SIZE)
    assert str(case) in str(err.value)


def test_dataset_items(tmp_path):
    written = make_dataset(tmp_path)
    dataset = lung4d_dataset(tmp_path, "test", SIZE, num_train=2)
    assert len(dataset) == 4
    expected = reference_protocol(written["LUNG002"].array)
    for frame, item in zip(range(1, 5), dataset):
        assert item["case"].startswith("LUNG002_") and item["frame"] == frame
        assert item["t"].dtype == torch.float32 and float(item["t"]) == pytest.approx(0.2 * frame)
        assert item["image"].shape == (2, *SIZE) and item["target"].shape == (1, *SIZE)
        np.testing.assert_allclose(item["image"][0], expected[..., 0], atol=1e-5)
        np.testing.assert_allclose(item["image"][1], expected[..., 5], atol=1e-5)
        np.testing.assert_allclose(item["target"][0], expected[..., frame], atol=1e-5)
    assert len(lung4d_dataset(tmp_path, "train", SIZE, num_train=2, cache=False)) == 8
