"""The MONAI Label app's infer task against the real ``monailabel`` package (skipped where it is not importable).

``.ci/monailabel.sh`` installs monailabel 0.8.5 without its dependencies into a temporary folder and runs this file
with that folder on PYTHONPATH. The task is called as MONAI Label's server calls it (``task(request)``) on small
NIfTI files written here, with a small random-init student (``tests/small_bundle.py``); the expected volume comes
straight from that network, independently of the task's own pipeline.
"""

import importlib
import os

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("monailabel.tasks.infer.basic_infer", reason="monailabel is not installed (.ci/monailabel.sh)")

from scripts.utils.checkpoint import load_weights  # noqa: E402
from scripts.utils.errors import InputError  # noqa: E402
from scripts.utils.paths import ROOT
from tests.small_bundle import NETWORK_ARGS, OVERRIDES, save_random_weights  # noqa: E402

SHAPE = (16, 16, 8)
FRAMES = 4
AFFINE = np.array([[0.0, -1.5, 0.0, 40.0], [1.5, 0.0, 0.0, -20.0], [0.0, 0.0, 3.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
ATOL = 1e-3  # scanner units; the series spans 100..900


@pytest.fixture(scope="module")
def interpolation():
    return importlib.import_module("apps.monailabel.lib.infers.interpolation")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_weights(tmp_path_factory.mktemp("weights") / "student.pt")


@pytest.fixture(scope="module")
def task(interpolation, weights):
    return interpolation.Interpolation(ROOT, config_overrides={**OVERRIDES, "checkpoint": str(weights)})


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A (16, 16, 8, 4) series in 100..900 (a blob moving along axis 0) saved as 4D NIfTI; returns (path, array)."""
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in SHAPE], indexing="ij")
    frames = [100 + 800 * np.exp(-((x - 5 - 2 * k) ** 2 + (y - 8) ** 2) / 8 - (z - 4) ** 2 / 6) for k in range(FRAMES)]
    array = np.stack(frames, axis=-1).astype(np.float32)
    path = tmp_path_factory.mktemp("series") / "series.nii.gz"
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return path, array


def expected(weights, i0: np.ndarray, i1: np.ndarray, t: float) -> np.ndarray:
    """The student's volume at t for endpoints in scanner units: joint min-max, network, clamp, back to units."""
    from scripts.networks import Student

    network = load_weights(Student(**NETWORK_ARGS), weights).eval()
    lo, hi = min(i0.min(), i1.min()), max(i0.max(), i1.max())
    image = torch.from_numpy(np.stack([i0, i1])[None] - lo) / (hi - lo)
    with torch.no_grad():
        unit = network(image.float(), torch.tensor([t])).clamp(0, 1)[0, 0].numpy()
    return unit * (hi - lo) + lo


def _read(path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(path)
    return np.asarray(image.dataobj, dtype=np.float32), image.affine


def test_4d_series_to_phase_at_t(task, weights, series):
    path, array = series
    result_file, result = task({"image": str(path), "t": 0.25, "start_frame": 1, "end_frame": 3, "device": "cpu"})
    try:
        assert result_file.endswith(".nii.gz")
        volume, affine = _read(result_file)
    finally:
        os.remove(result_file)
    reference = expected(weights, array[..., 1], array[..., 3], 0.25)
    assert volume.shape == SHAPE
    np.testing.assert_allclose(affine, AFFINE, atol=1e-5)
    diff = np.abs(volume - reference).max()
    assert diff < ATOL
    assert np.abs(expected(weights, array[..., 1], array[..., 3], 0.75) - reference).max() > 20 * diff  # t is used
    assert result["t"] == 0.25 and (result["start_frame"], result["end_frame"]) == (1, 3)
    lo, hi = result["intensity_range"]
    assert (lo, hi) == pytest.approx((array[..., [1, 3]].min(), array[..., [1, 3]].max()))


def test_two_volumes_and_default_t(task, weights, series, tmp_path):
    _, array = series
    paths = [tmp_path / "phase_a.nii.gz", tmp_path / "phase_b.nii.gz"]
    for path, frame in zip(paths, (0, 2)):
        nib.save(nib.Nifti1Image(array[..., frame], AFFINE), path)
    result_file, result = task({"image": str(paths[0]), "end_image": str(paths[1]), "device": "cpu"})
    volume, affine = _read(result_file)
    os.remove(result_file)
    assert result["t"] == 0.5
    np.testing.assert_allclose(affine, AFFINE, atol=1e-5)
    np.testing.assert_allclose(volume, expected(weights, array[..., 0], array[..., 2], 0.5), atol=ATOL)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"t": 1.5}, "time points must lie in"),
        ({"t": [0.25, 0.5]}, "one time point per request"),
        ({"end_frame": 4}, "out of range"),
        ({"start_frame": 2, "end_frame": 2}, "must be two different frames"),
    ],
)
def test_bad_requests_name_the_parameter(task, series, params, message):
    with pytest.raises(InputError, match=message):
        task({"image": str(series[0]), "device": "cpu", **params})


def test_missing_image_is_refused(task):
    with pytest.raises(InputError, match="image: expected the path"):
        task({"image": "", "device": "cpu"})


def test_info_and_validity(interpolation, task, tmp_path):
    info = task.info()
    assert (info["type"], info["dimension"], info["labels"]) == ("others", 3, [])
    assert info["config"]["t"] == 0.5 and info["config"]["result_extension"] == ".nii.gz"
    assert task.is_valid()
    missing = interpolation.Interpolation(ROOT, config_overrides={"checkpoint": str(tmp_path / "none.pt")})
    assert not missing.is_valid()


def test_reloads_changed_weights(interpolation, series, tmp_path):
    weights = save_random_weights(tmp_path / "student.pt", seed=3)
    task = interpolation.Interpolation(ROOT, config_overrides={**OVERRIDES, "checkpoint": str(weights)})
    path, array = series
    request = {"image": str(path), "t": 0.5, "device": "cpu"}
    first, _ = task(request)
    save_random_weights(weights.with_suffix(".new"), seed=4).replace(weights)
    os.utime(weights, (os.stat(weights).st_atime, os.stat(weights).st_mtime + 10))
    second, _ = task(request)
    volume = _read(second)[0]
    for name in (first, second):
        os.remove(name)
    np.testing.assert_allclose(volume, expected(weights, array[..., 0], array[..., -1], 0.5), atol=ATOL)


def test_refuses_another_bundles_scripts(interpolation, tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text("{}")
    with pytest.raises(RuntimeError, match="another bundle's scripts package"):
        interpolation.use_bundle(tmp_path)


def test_app_serves_the_task(tmp_path, series):
    """The app in main.py, as MONAI Label's server loads it; needs monailabel's full dependency set."""
    pytest.importorskip("monailabel.interfaces.app", reason="monailabel's server dependencies are not installed")
    from monai.bundle import ConfigParser
    from monailabel.interfaces.utils.app import app_instance

    from scripts.networks import Student
    from scripts.utils.checkpoint import save_weights

    checkpoint = tmp_path / "full.pt"  # the app builds the config's own (full-width) network_def
    save_weights(Student(channels=ConfigParser.load_config_file(ROOT / "configs/inference.json")["channels"]),
                 checkpoint)
    studies = tmp_path / "studies"
    studies.mkdir()
    app = app_instance(str(ROOT / "apps" / "monailabel"), str(studies), {"checkpoint": str(checkpoint)})
    result = app.infer({"model": "interpolation", "image": str(series[0]), "t": 0.5, "device": "cpu"})
    volume, affine = _read(result["file"])
    os.remove(result["file"])
    assert volume.shape == SHAPE
    np.testing.assert_allclose(affine, AFFINE, atol=1e-5)
    assert result["params"]["t"] == 0.5
