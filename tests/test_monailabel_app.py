"""The MONAI Label app's infer tasks against the real ``monailabel`` package (skipped where it is not importable).

``.ci/monailabel.sh`` installs monailabel 0.8.5 without its dependencies into a temporary folder and runs this file
with that folder on PYTHONPATH. The tasks are called as MONAI Label's server calls them (``task(request)``) on small
NIfTI files written here, with a small random-init student (``tests/small_bundle.py``); the expected volume comes
straight from that network, independently of the task's own pipeline, or from the bundle's own workflow (what
``interpolate`` writes) where the motion region or the neighbour refinement takes part.
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("monailabel.tasks.infer.basic_infer", reason="monailabel is not installed (.ci/monailabel.sh)")

from scripts.utils.checkpoint import load_weights
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT
from tests.small_bundle import NETWORK_ARGS, OVERRIDES, save_random_weights

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
def upsampling(weights):
    module = importlib.import_module("apps.monailabel.lib.infers.upsampling")
    return module.Upsampling(ROOT, config_overrides={**OVERRIDES, "checkpoint": str(weights)})


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A (16, 16, 8, 4) series in 100..900 (a blob moving along axis 0) saved as 4D NIfTI; returns (path, array)."""
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in SHAPE], indexing="ij")
    frames = [100 + 800 * np.exp(-((x - 5 - 2 * k) ** 2 + (y - 8) ** 2) / 8 - (z - 4) ** 2 / 6) for k in range(FRAMES)]
    array = np.stack(frames, axis=-1).astype(np.float32)
    path = tmp_path_factory.mktemp("series") / "series.nii.gz"
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return path, array


def expected(weights, i0: np.ndarray, i1: np.ndarray, t: float, image_warp: str = "bilinear",
             still: bool = True) -> np.ndarray:
    """The student's volume at t for endpoints in scanner units: joint min-max, network, clamp, the still voxels'
    lean to the blend (``configs/inference.json``'s ``region``; these small series move everywhere, so the box is the
    whole plane; ``still=False``: the network alone), back to units."""
    from monai.bundle import ConfigParser

    from scripts.networks import Student
    from scripts.transforms.motion_roi import still_weight

    network = load_weights(Student(**NETWORK_ARGS, image_warp=image_warp), weights).eval()
    lo, hi = min(i0.min(), i1.min()), max(i0.max(), i1.max())
    image = torch.from_numpy(np.stack([i0, i1])[None] - lo) / (hi - lo)
    with torch.no_grad():
        unit = network(image.float(), torch.tensor([t])).clamp(0, 1)[0, 0]
    config = ConfigParser()
    config.read_config(str(ROOT / "configs" / "inference.json"))
    level, width = config["region"]["still_level"], config["region"]["still_width"]
    u0, u1 = image[0, 0].float(), image[0, 1].float()
    blend = (1 - t) * u0 + t * u1
    if still:
        unit = blend + still_weight(u0, u1, level, width) * (unit - blend)
    return unit.numpy() * (hi - lo) + lo


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


def test_the_image_warp_follows_the_span_of_the_endpoints(interpolation, weights, series, tmp_path):
    """As ``interpolate``: cubic between frames up to a sixth of the series apart, bilinear beyond (the 4-frame
    series of the other tests is always beyond)."""
    _, array = series
    long = np.concatenate([array, array[..., ::-1]], axis=-1)  # 8 frames: consecutive frames are an eighth apart
    path = tmp_path / "long.nii.gz"
    nib.save(nib.Nifti1Image(long, AFFINE), path)
    overrides = {**OVERRIDES, "checkpoint": str(weights)}
    overrides["network_def"] = {**overrides["network_def"], "image_warp": "cubic"}
    task = interpolation.Interpolation(ROOT, config_overrides=overrides)
    for end, warp in ((1, "cubic"), (3, "bilinear")):
        result_file, result = task({"image": str(path), "t": 0.5, "start_frame": 0, "end_frame": end, "device": "cpu"})
        volume, _ = _read(result_file)
        os.remove(result_file)
        assert result["image_warp"] == warp
        np.testing.assert_allclose(volume, expected(weights, long[..., 0], long[..., end], 0.5, warp), atol=ATOL)


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


def test_rebuilds_when_the_neighbour_refinement_changes(upsampling, weights, tmp_path):
    """The refinement's weights file (``--conf neighbour_checkpoint``: a site's, replaced after each fine-tuning) is
    watched like the student's: a change on disk rebuilds the inferer, no change keeps it."""
    from scripts.networks.neighbours import NeighbourRefinement
    from scripts.utils.checkpoint import save_weights

    refinement = save_weights(NeighbourRefinement(16), tmp_path / "refinement.pt")
    task = type(upsampling)(ROOT, config_overrides={**OVERRIDES, "checkpoint": str(weights),
                                                    "neighbour_checkpoint": str(refinement)})
    assert task.watched == [str(weights), str(refinement)]
    first = task.interpolator("cpu")
    assert task.interpolator("cpu") is first
    os.utime(refinement, (os.stat(refinement).st_atime, os.stat(refinement).st_mtime + 10))
    assert task.interpolator("cpu") is not first
    off = type(upsampling)(ROOT, config_overrides={**OVERRIDES, "checkpoint": str(weights),
                                                   "neighbour_checkpoint": str(refinement),
                                                   "neighbour_refinement": False})
    assert off.watched == [str(weights)]


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


# --- hostile requests: parameters are data ----------------------------------------------------------------------------
CANARY = "CANARY"


def _refused():
    """What a refused request raises here: the InputError, or HTTP 422 when FastAPI (the server's) is importable."""
    try:
        from fastapi import HTTPException
    except ImportError:
        return (InputError,)
    return (InputError, HTTPException)


def _message(err) -> str:
    return getattr(err, "detail", None) or str(err)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"device": f"$__import__('os').mkdir('{CANARY}') or 'cpu'"}, r"^device: must be cpu, cuda or cuda:N"),
        ({"device": "@checkpoint"}, r"^device: must be cpu, cuda or cuda:N"),
        ({"device": {"_target_": "os.mkdir", "path": CANARY}}, r"^device: must be"),
        ({"device": "gpu0"}, r"^device: must be cpu, cuda or cuda:N; got 'gpu0'"),
        ({"t": True}, r"^t: expected a number"),
        ({"t": f"$__import__('os').mkdir('{CANARY}') or 0.5"}, r"^t: not a number"),
        ({"t": {"_target_": "os.mkdir", "path": CANARY}}, r"^t: expected a number"),
        ({"t": "[0.25, 0.5]"}, r"^t: one time point per request"),
        ({"t": float("nan")}, r"^t: time points must lie in \[0, 1\]"),
        ({"start_frame": f"$__import__('os').mkdir('{CANARY}') or 0"}, r"^start_frame: expected a whole number"),
        ({"end_frame": 1.5}, r"^end_frame: expected a whole number, got 1.5"),
        ({"end_frame": 9}, r"^end_frame: frame 9 is out of range"),
        ({"result_dtype": "object"}, r"^result_dtype: must be one of float32"),
        ({"result_extension": "/../../x.py"}, r"^result_extension: must be one of .nii.gz, .nii"),
        ({"logging": {"level": "DEBUG"}}, r"^logging: must be one of"),
        ({"image": f"$__import__('os').mkdir('{CANARY}') or 'x.nii.gz'"}, r"input not found"),
        ({"image": ["a.nii.gz"]}, r"^image: expected the path"),
    ],
)
def test_hostile_requests_are_refused_by_parameter(task, series, params, message, tmp_path, monkeypatch):
    """Each parameter with code, a reference, a dict or a wrong type: refused, naming the request parameter (not a
    command-line flag), before anything runs; the canary never appears."""
    monkeypatch.chdir(tmp_path)
    request = {"image": str(series[0]), "device": "cpu", **params}
    with pytest.raises(_refused()) as caught:
        task(request)
    assert re.search(message, _message(caught.value)), _message(caught.value)
    assert "--" not in _message(caught.value)
    assert not (tmp_path / CANARY).exists() and not (ROOT / CANARY).exists()


def test_the_device_reaches_the_config_only_from_the_allow_list(task, interpolation):
    with pytest.raises(RuntimeError, match="unchecked device"):
        task.interpolator("$__import__('os').getcwd()")
    assert interpolation.check_request({"image": "a.nii.gz", "t": 0.5, "start_frame": 0, "end_frame": -1,
                                        "device": ["cuda:1"], "result_extension": ".nii.gz",
                                        "result_dtype": "float32"})["device"] == "cuda:1"


# --- the whole-cine task, and the motion region in both ---------------------------------------------------------------
def workflow_output(weights, tmp_path, **arguments) -> Path:
    """What ``interpolate`` writes for ``arguments`` with the test's small student: the bundle's own workflow."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(ROOT / "configs" / "inference.json")
    parser.update({"bundle_root": str(ROOT), **OVERRIDES, "checkpoint": str(weights), "device": "cpu",
                   "output_dir": str(tmp_path / "workflow"), **arguments})
    return parser.get_parsed_content("workflow").run()


def moving_corner(tmp_path) -> tuple[Path, np.ndarray]:
    """A (64, 64, 4, 8) series at 1.5 mm: a static textured body and a blob moving in one corner, so the motion region
    is a box of the plane, not all of it; frame times 40 ms apart."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(64.0), np.arange(64.0), indexing="ij")
    body = 300 + 100 * rng.random((64, 64, 4))
    frames = [body + 500 * np.exp(-((x - 12 - 1.5 * np.sin(k * np.pi / 4)) ** 2 + (y - 12) ** 2) / 10)[..., None]
              for k in range(8)]
    array = np.stack(frames, axis=-1).astype(np.float32)
    image = nib.Nifti1Image(array, np.diag([1.5, 1.5, 6.0, 1.0]))
    image.header.set_zooms((1.5, 1.5, 6.0, 40.0))
    image.header.set_xyzt_units(xyz="mm", t="msec")
    path = tmp_path / "corner.nii.gz"
    nib.save(image, path)
    return path, array


def test_the_phase_at_t_is_what_interpolate_writes_through_the_motion_region(task, weights, tmp_path):
    """On a series that moves in one corner the task runs the student in the motion region and keeps the blend
    around it, exactly as the bundle's workflow does (before, it ran the student on the whole plane)."""
    path, array = moving_corner(tmp_path)
    result_file, result = task({"image": str(path), "t": 0.5, "start_frame": 2, "end_frame": 3, "device": "cpu"})
    volume, affine = _read(result_file)
    os.remove(result_file)
    written = workflow_output(weights, tmp_path, input=str(path), t=0.5, start_frame=2, end_frame=3)
    reference, _ = _read(written / "interp_t0.500.nii.gz")
    np.testing.assert_allclose(volume, reference, atol=ATOL)
    blend = (array[..., 2] + array[..., 3]) / 2
    np.testing.assert_allclose(volume[48:, 48:], blend[48:, 48:], atol=ATOL)  # far from the motion: the blend,
    whole_plane = expected(weights, array[..., 2], array[..., 3], 0.5, still=False)  # where the student alone is not
    assert np.abs(whole_plane - blend)[48:, 48:].max() > 10 * ATOL
    assert np.abs(volume - blend)[4:20, 4:20].max() > 10 * ATOL  # the network ran where it moves
    np.testing.assert_allclose(affine, np.diag([1.5, 1.5, 6.0, 1.0]), atol=1e-5)
    assert result["image_warp"] == "cubic"  # as interpolate: consecutive frames of 8 span at most a sixth


def test_upsampled_cine_is_what_interpolate_writes(upsampling, weights, tmp_path):
    """The whole series twice as fine: the acquired frames exactly as read, the new ones equal to what
    ``interpolate --upsample 2`` writes (motion region and neighbour refinement included), half the time step."""
    path, array = moving_corner(tmp_path)
    result_file, result = upsampling({"image": str(path), "upsample": 2, "device": "cpu"})
    image = nib.load(result_file)
    cine = np.asarray(image.dataobj, dtype=np.float32)
    zooms = image.header.get_zooms()
    os.remove(result_file)
    assert cine.shape == (64, 64, 4, 16)
    np.testing.assert_array_equal(cine[..., ::2], array)
    written = workflow_output(weights, tmp_path, input=str(path), upsample=2)
    np.testing.assert_allclose(cine, _read(written / "upsampled_4d.nii.gz")[0], atol=ATOL)
    assert zooms[3] == pytest.approx(20.0) and image.header.get_xyzt_units() == ("mm", "msec")
    assert result["frames_in"] == 8 and result["frames_out"] == 16 and result["cyclic"] is True
    assert result["neighbour_refinement"] is True and result["time_step_ms"] == pytest.approx(20.0)
    assert result["retiming"] is True  # a cycle: the new frames at the motion clock's times, as interpolate makes them
    assert result["intensity_range"] == pytest.approx([array.min(), array.max()])
    between = (array[..., 0] + array[..., 1]) / 2
    assert np.abs(cine[..., 1] - between)[4:20, 4:20].max() > 10 * ATOL  # synthesised, not the blend


def test_upsampling_a_dicom_export_is_what_interpolate_writes(upsampling, weights, tmp_path):
    """A DICOM folder of one cine (one series, every slice and phase; trigger times 50 ms apart) in, the cine of
    ``interpolate --upsample 2`` out, with the input's geometry and half its time step."""
    from scripts.io.series import Series4D
    from scripts.phantoms.dicom_acquisition import write_dicom_acquisition

    rng = np.random.default_rng(2)
    array = np.round(200 + 600 * rng.random((16, 16, 4, 6))).astype(np.float32)
    times = np.arange(6) * 50.0
    folder = write_dicom_acquisition(Series4D(array=array, affine=AFFINE, source="cine", times=times),
                                     tmp_path / "in", layout="single_series", modality="MR")
    result_file, result = upsampling({"image": str(folder), "upsample": 2, "device": "cpu"})
    image = nib.load(result_file)
    cine = np.asarray(image.dataobj, dtype=np.float32)
    os.remove(result_file)
    written = workflow_output(weights, tmp_path, input=str(folder), upsample=2)
    reference = nib.load(written / "upsampled_4d.nii.gz")
    np.testing.assert_allclose(cine, np.asarray(reference.dataobj, dtype=np.float32), atol=ATOL)
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-5)
    np.testing.assert_allclose(cine[..., ::2], array, atol=ATOL)  # the acquired frames as read
    assert image.header.get_zooms()[3] == pytest.approx(25.0) and result["time_step_ms"] == pytest.approx(25.0)
    assert result["frames_out"] == 12 and result["neighbour_refinement"] is True


def test_a_real_time_dicom_stack_is_not_wrapped_by_default(upsampling, tmp_path):
    """As ``interpolate --cyclic auto``: a series-per-slice stack a clock times (a real-time stack, not one gated
    cycle) gets no frames between its last frame and its first unless the request asks for them."""
    from scripts.io.series import Series4D
    from scripts.phantoms.dicom_acquisition import write_dicom_acquisition

    rng = np.random.default_rng(3)
    array = np.round(200 + 600 * rng.random((16, 16, 4, 6))).astype(np.float32)
    folder = write_dicom_acquisition(Series4D(array=array, affine=AFFINE, source="stack", times=np.arange(6) * 50.0),
                                     tmp_path / "in", layout="series_per_slice", modality="MR",
                                     quirks=("ungated_slices",))
    for request, cyclic in (({}, False), ({"cyclic": "true"}, True)):
        result_file, result = upsampling({"image": str(folder), "upsample": 2, "device": "cpu", **request})
        os.remove(result_file)
        assert result["cyclic"] is cyclic and result["frames_out"] == (12 if cyclic else 11)
        assert result["retiming"] is False


def test_upsampling_one_series_of_a_study_export(upsampling, tmp_path):
    """A DICOM folder holding a whole study (the cine and another acquisition): ``series`` chooses the cine, and the
    result is the one of the cine's own folder; a series not there is refused naming the parameter."""
    from scripts.io.series import Series4D
    from scripts.phantoms.dicom_acquisition import write_dicom_acquisition

    rng = np.random.default_rng(4)
    array = np.round(200 + 600 * rng.random((16, 16, 4, 6))).astype(np.float32)
    cine = write_dicom_acquisition(Series4D(array=array, affine=AFFINE, source="cine", times=np.arange(6) * 50.0),
                                   tmp_path / "cine", layout="single_series", modality="MR")
    other = write_dicom_acquisition(Series4D(array=array[:8, :, :, :3], affine=AFFINE, source="other"),
                                    tmp_path / "other", layout="series_per_phase", modality="MR")
    study = tmp_path / "study"
    shutil.copytree(cine, study / "cine")
    shutil.copytree(other, study / "other")
    alone_file, _ = upsampling({"image": str(cine), "upsample": 2, "device": "cpu"})
    chosen_file, result = upsampling({"image": str(study), "series": "cine mr", "upsample": 2, "device": "cpu"})
    np.testing.assert_array_equal(_read(chosen_file)[0], _read(alone_file)[0])
    assert result["frames_out"] == 12
    for path in (alone_file, chosen_file):
        os.remove(path)
    with pytest.raises(_refused()) as caught:
        upsampling({"image": str(study), "series": 99, "upsample": 2, "device": "cpu"})
    assert re.search(r"study: no series matches '99'", _message(caught.value)), _message(caught.value)


def test_upsampling_an_open_series_by_three(upsampling, series):
    path, array = series
    result_file, result = upsampling({"image": str(path), "upsample": "3", "cyclic": "false", "device": "cpu",
                                      "result_extension": ".nii"})
    cine = _read(result_file)[0]
    os.remove(result_file)
    assert result_file.endswith(".nii") and cine.shape == (*SHAPE, (FRAMES - 1) * 3 + 1)
    np.testing.assert_array_equal(cine[..., ::3], array)
    assert result["frames_out"] == 10 and result["cyclic"] is False and result["time_step_ms"] is None
    assert result["neighbour_refinement"] is False  # 4 frames: each pair a quarter of the series
    assert result["retiming"] is False  # an open series is not a cycle


def test_a_failed_write_leaves_no_result_file(upsampling, series, tmp_path, monkeypatch):
    import tempfile

    import scripts.io.nifti_write

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scripts.io.nifti_write, "write_nifti_series", fail)
    with pytest.raises(OSError, match="disk full"):
        upsampling({"image": str(series[0]), "device": "cpu"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "params, message",
    [
        ({"upsample": 1}, r"^upsample: must be at least 2, got 1"),
        ({"upsample": 2.5}, r"^upsample: expected a whole number, got 2.5"),
        ({"upsample": True}, r"^upsample: expected a whole number, got True"),
        ({"upsample": f"$__import__('os').mkdir('{CANARY}') or 2"}, r"^upsample: expected a whole number"),
        ({"upsample": 10 ** 9}, r"^upsample: x1000000000 makes 4000000000 frames of \(16, 16, 8\), about .* is free"),
        ({"cyclic": "maybe"}, r"^cyclic: expected True, False or auto, got 'maybe'"),
        ({"cyclic": {"_target_": "os.mkdir", "path": CANARY}}, r"^cyclic: expected True, False or auto"),
        ({"end_image": "b.nii.gz"}, r"^end_image: the upsampling task reads one 4D series"),
        ({"series": {"_target_": "os.mkdir", "path": CANARY}}, r"^series: expected a SeriesNumber"),
        ({"series": 7}, r"^series: chooses series of a DICOM folder"),  # the image is a NIfTI file
        ({"device": "@checkpoint"}, r"^device: must be cpu, cuda or cuda:N"),
        ({"result_extension": ".seg.nrrd"}, r"^result_extension: must be one of .nii.gz, .nii"),
    ],
)
def test_bad_upsampling_requests_name_the_parameter(upsampling, series, params, message, tmp_path, monkeypatch):
    """Refused before any work, naming the request parameter (never ``--upsample``); nothing runs, nothing is
    written (a factor whose cine would not fit is refused before any array is made)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(_refused()) as caught:
        upsampling({"image": str(series[0]), "device": "cpu", **params})
    assert re.search(message, _message(caught.value)), _message(caught.value)
    assert "--" not in _message(caught.value)
    assert not (tmp_path / CANARY).exists() and not (ROOT / CANARY).exists()


@pytest.mark.skipif(not os.environ.get("MONAILABEL_SERVER_PATH"),
                    reason="the MONAI Label server's dependencies are installed by .ci/monailabel.sh")
def test_other_weights_serve_without_the_neighbour_refinement(tmp_path):
    """The app with ``--conf checkpoint`` (other student weights) runs them in both tasks and turns the neighbour
    refinement off, as ``interpolate --model`` does (it was trained with the shipped whole-series student); without it
    the config's defaults stand (each job's shipped weights, refinement on); ``--conf neighbour_checkpoint`` (a site's
    refinement) turns it on with that file, as ``interpolate --neighbour_model`` does. Loaded as the server loads the
    app, with the server's dependencies."""
    code = (
        "import json, sys\n"
        "from monailabel.interfaces.utils.app import app_instance\n"
        "conf = json.loads(sys.argv[3])\n"
        "app = app_instance(sys.argv[1], sys.argv[2], conf)\n"
        "print(json.dumps({name: [app._infers[name].config_overrides.get('neighbour_refinement', 'default'),\n"
        "                         [p.rsplit('/', 1)[-1] for p in app._infers[name].weights],\n"
        "                         app._infers[name].config_overrides.get('neighbour_checkpoint', 'default')]\n"
        "                  for name in ('interpolation', 'upsampling')}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.environ["MONAILABEL_SERVER_PATH"] + os.pathsep + str(ROOT)}
    answers = []
    site = tmp_path / "site_refinement.pt"  # a site's whole-cine fine-tuning: its refinement beside its student
    shutil.copy(ROOT / "models" / "neighbour_refinement.pt", site)
    for conf in ({"checkpoint": str(ROOT / "models" / "model.pt")}, {},
                 {"checkpoint": str(ROOT / "models" / "cine_model.pt"), "neighbour_checkpoint": str(site)}):
        studies = tmp_path / f"studies{len(answers)}"
        studies.mkdir()
        done = subprocess.run([sys.executable, "-c", code, str(ROOT / "apps" / "monailabel"), str(studies),
                               json.dumps(conf)], check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        answers.append(json.loads(done.stdout.strip().splitlines()[-1]))
    tasks = ("interpolation", "upsampling")
    assert answers == [{name: [False, ["model.pt"], "default"] for name in tasks},
                       {name: ["default", ["model.pt", "cine_model.pt"], "default"] for name in tasks},
                       {name: [True, ["cine_model.pt"], str(site.resolve())] for name in tasks}]


# --- the real server on loopback (.ci/monailabel.sh sets MONAILABEL_SERVER_PATH) -------------------------------------
@pytest.mark.skipif(not os.environ.get("MONAILABEL_SERVER_PATH"),
                    reason="the MONAI Label server's dependencies are installed by .ci/monailabel.sh")
def test_real_server_answers_good_bad_and_hostile_requests(series, tmp_path):
    """``monailabel start_server`` with this app on 127.0.0.1: a good request returns the volume (and the upsampling
    task the 4D cine), a bad one HTTP 422 naming ``t`` (``upsample``), a hostile one HTTP 422 naming ``device`` and
    runs nothing."""
    import json
    import socket
    import time
    import urllib.error
    import urllib.parse
    import urllib.request
    import uuid

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    studies = tmp_path / "studies"
    studies.mkdir()
    env = {**os.environ, "PYTHONPATH": os.environ["MONAILABEL_SERVER_PATH"], "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "server.log").open("w")  # closed in the finally below, once the server has stopped
    server = subprocess.Popen([sys.executable, "-m", "monailabel.main", "start_server", "--app",
                               str(ROOT / "apps" / "monailabel"), "--studies", str(studies), "--host", "127.0.0.1",
                               "--port", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def infer(params: dict, output: str, model: str = "interpolation"):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{json.dumps(params)}\r\n"
                f"--{boundary}--\r\n").encode()
        query = urllib.parse.urlencode({"image": str(series[0]), "output": output})
        request = urllib.request.Request(f"{base}/infer/{model}?{query}", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(request, timeout=300) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/info/", timeout=5) as answer:
                    info = json.loads(answer.read())
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(2)
        assert {"interpolation", "upsampling"} <= set(info["models"])

        status, body = infer({"t": 0.25, "device": "cpu"}, "image")
        assert status == 200, body[:500]
        (tmp_path / "result.nii.gz").write_bytes(body)
        volume = np.asarray(nib.load(tmp_path / "result.nii.gz").dataobj)
        assert volume.shape == SHAPE and np.isfinite(volume).all()

        status, body = infer({"t": 1.5, "device": "cpu"}, "json")
        assert status == 422 and json.loads(body)["detail"].startswith("t: time points must lie in [0, 1]"), body

        status, body = infer({"device": f"$__import__('os').mkdir({str(tmp_path / CANARY)!r}) or 'cpu'"}, "json")
        assert status == 422 and json.loads(body)["detail"].startswith("device: must be cpu, cuda or cuda:N"), body
        assert not (tmp_path / CANARY).exists()

        status, body = infer({"upsample": 2, "device": "cpu"}, "image", "upsampling")
        assert status == 200, body[:500]
        (tmp_path / "cine.nii.gz").write_bytes(body)
        cine = np.asarray(nib.load(tmp_path / "cine.nii.gz").dataobj)
        assert cine.shape == (*SHAPE, 2 * FRAMES) and np.isfinite(cine).all()
        status, body = infer({"upsample": 1, "device": "cpu"}, "json", "upsampling")
        assert status == 422 and json.loads(body)["detail"].startswith("upsample: must be at least 2"), body
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
