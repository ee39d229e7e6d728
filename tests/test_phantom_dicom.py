"""Phantoms written as DICOM read back with their geometry, voxels and truth, through the bundle's own readers."""

import numpy as np
import pytest

from scripts.datasets.lung4d import lung4d_dataset
from scripts.io.dicom_read import read_dicom_series
from scripts.phantoms.base import case_seed, load_truth
from scripts.phantoms.cardiac import cardiac_phantom
from scripts.phantoms.dicom import TRUTH_DIR, oblique, rotation
from scripts.phantoms.make import phantom


def test_rotation_is_proper_and_oblique():
    r = rotation((18.0, -27.0, 35.0))
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    assert np.count_nonzero(np.abs(r) > 0.2) > 3  # not a permutation of axes: double oblique


@pytest.mark.parametrize("layout", ["single_series", "series_per_slice"])
def test_cine_dicom_round_trip(tmp_path, layout):
    out = phantom("cine_dicom", str(tmp_path / "cine"), num_cases=1, seed=3, shape="40,36,5", frames=6, layout=layout)
    series = read_dicom_series(f"{out}/PHANTOM001")
    truth_case = cardiac_phantom(case_seed(3, 1), shape=(40, 36, 5), frames=6, spacing=(9.0, 10.0, 8.0))
    assert series.array.shape == (40, 36, 5, 6)
    np.testing.assert_allclose(series.affine, oblique(truth_case.affine), atol=1e-4)
    scale = np.abs(truth_case.array).max() / 32767  # int16 storage step
    np.testing.assert_allclose(series.array, truth_case.array, atol=scale)
    np.testing.assert_array_equal(load_truth(f"{out}/PHANTOM001/{TRUTH_DIR}"), truth_case.truth)


def test_lung_phantom_feeds_the_4dlung_loader(tmp_path):
    out = phantom("lung", str(tmp_path / "lung"), num_cases=2, seed=1, shape="24,24,20", frames=10)
    data = lung4d_dataset(out, split="all", spatial_size=(16, 16, 16), num_train=1)
    assert len(data) == 2 * 4  # phases 1-4 of each case
    item = data[0]
    assert item["image"].shape == (2, 16, 16, 16) and item["target"].shape == (1, 16, 16, 16)
    assert float(item["t"]) == pytest.approx(0.2)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert load_truth(f"{out}/PHANTOM001/{TRUTH_DIR}").shape == (10, 3, 24, 24, 20)
