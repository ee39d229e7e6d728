"""The inference workflow through the bundle config and the fire CLI: outputs on the input's grid, DICOM out for DICOM
in, time points, identical results from both entry points, no overwriting, and clear errors."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from scripts.inference.cli import interpolate
from scripts.io.dicom_read import read_dicom_series
from scripts.io.series import Series4D
from scripts.networks import Student
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition
from scripts.utils.checkpoint import save_weights
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.paths import ROOT


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return str(save_weights(Student(), tmp_path_factory.mktemp("w") / "student.pt"))


@pytest.fixture(scope="module")
def series_file(tmp_path_factory):
    """A 4D NIfTI (20, 18, 6, 5) with an oblique affine and MR-like intensities."""
    rng = np.random.default_rng(0)
    data = (rng.random((20, 18, 6, 5)) * 800 + 100).astype(np.float32)
    affine = np.array([[1.2, 0.3, 0.0, -10], [-0.3, 1.2, 0.1, 5], [0.0, -0.1, 8.0, 20], [0, 0, 0, 1]])
    path = tmp_path_factory.mktemp("in") / "cine.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, data, affine


def test_nifti_outputs_keep_affine_and_lie_in_range(series_file, weights, tmp_path):
    path, data, affine = series_file
    out = interpolate(input=str(path), t=[0.75, 0.25], start_frame=1, end_frame=3, output_dir=str(tmp_path / "o"),
                      model=weights)
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert summary["t"] == [0.25, 0.75] and summary["start_frame"] == 1 and summary["end_frame"] == 3
    series = nib.load(Path(out) / "interp_4d.nii.gz")
    np.testing.assert_allclose(series.affine, affine, atol=1e-5)
    assert series.shape == (20, 18, 6, 2)
    lo, hi = min(data[..., 1].min(), data[..., 3].min()), max(data[..., 1].max(), data[..., 3].max())
    frames = series.get_fdata()
    assert frames.min() >= lo - 1e-3 and frames.max() <= hi + 1e-3  # mapped back to the endpoints' intensity range
    single = nib.load(Path(out) / "interp_t0.250.nii.gz")
    np.testing.assert_allclose(single.get_fdata(), frames[..., 0], rtol=1e-6)
    assert (Path(out) / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_num_frames_gives_evenly_spaced_ascending(series_file, weights, tmp_path):
    out = interpolate(input=str(series_file[0]), num_frames=3, output_dir=str(tmp_path / "o"), model=weights)
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert summary["t"] == pytest.approx([0.25, 0.5, 0.75])
    assert nib.load(Path(out) / "interp_4d.nii.gz").shape[3] == 3
    assert summary["start_frame"] == 0 and summary["end_frame"] == 4


def test_default_endpoints_of_a_series_are_said_with_the_way_to_choose_others(series_file, weights, tmp_path, caplog):
    """A two-frame job on a series of more than two frames with no endpoints given runs between the first and the
    last frames, with a warning that names them and the arguments that choose the phases (in a cine of one cycle the
    two are neighbours in time). Given endpoints, two volumes, the demo and the whole-series job say nothing."""
    from scripts.inference.inputs import load_input, warn_default_endpoints

    def warnings_of(job):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="scripts.inference.inputs"):
            job()
        return [r.message for r in caplog.records if r.name == "scripts.inference.inputs"]

    (message,) = warnings_of(lambda: interpolate(input=str(series_file[0]), num_frames=1, model=weights,
                                                 output_dir=str(tmp_path / "pair")))
    assert "cine.nii.gz" in message and "0 and 4 of 5" in message
    assert "--start_frame / --end_frame" in message and "--upsample K" in message
    assert not warnings_of(lambda: interpolate(input=str(series_file[0]), upsample=2, model=weights,
                                               output_dir=str(tmp_path / "whole")))
    volumes = [str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz")]
    for k, path in enumerate(volumes):
        nib.save(nib.Nifti1Image(series_file[1][..., k], series_file[2]), path)
    cine = str(series_file[0])
    for given, endpoints in [((cine, 1, 3), (1, 3)), ((cine, None, 2), (0, 2)), ((volumes, None, None), (0, 1)),
                             ((None, None, None), None)]:
        loaded = load_input(*given)
        assert endpoints is None or (loaded.start, loaded.end) == endpoints
        assert not warnings_of(lambda: warn_default_endpoints(loaded, given[1], given[2]))  # noqa: B023


@pytest.mark.parametrize("codes", [(0, 2), (1, 0), (0, 0)])
def test_outputs_claim_the_space_their_input_claims(series_file, weights, tmp_path, codes):
    """A NIfTI input's qform / sform codes (here: an "aligned" sform and no qform, as a public multi-vendor cine
    came; a scanner qform alone; none at all) are carried to every NIfTI output with the same affine, so a viewer
    places the output where it places the input. A pair of volumes takes the first one's."""
    _, data, affine = series_file
    qform_code, sform_code = codes
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    source = tmp_path / "coded.nii.gz"
    nib.save(image, source)
    expected = sform_code if sform_code > 0 else qform_code
    reference = nib.load(source).affine
    pair_dir = interpolate(input=str(source), t=0.5, start_frame=0, end_frame=2, model=weights,
                           output_dir=str(tmp_path / "pair"))
    whole_dir = interpolate(input=str(source), upsample=2, model=weights, output_dir=str(tmp_path / "whole"))
    volumes = []
    for k in range(2):
        volumes.append(str(tmp_path / f"v{k}.nii.gz"))
        single = nib.Nifti1Image(data[..., k], affine)
        single.set_qform(affine, code=qform_code)
        single.set_sform(affine, code=sform_code)
        nib.save(single, volumes[-1])
    two_dir = interpolate(input=volumes, t=0.5, model=weights, output_dir=str(tmp_path / "two"))
    for written in (Path(pair_dir) / "interp_4d.nii.gz", Path(pair_dir) / "interp_t0.500.nii.gz",
                    Path(whole_dir) / "upsampled_4d.nii.gz", Path(two_dir) / "interp_4d.nii.gz"):
        header = nib.load(written).header
        assert (int(header["qform_code"]), int(header["sform_code"])) == (expected, expected), written
        np.testing.assert_allclose(nib.load(written).affine, reference, atol=1e-5)


def test_a_single_slice_cine_as_a_multi_vendor_sample_came(weights, tmp_path):
    """A long-axis cine as a public multi-vendor sample exported it: one slice (X, Y, 1, T), int16, an aligned sform
    and no qform, no time units, a full field of view whose heart moves in one part of the image. The whole series
    twice as fine keeps every acquired frame exactly, stays finite and in range, keeps the grid and the header's
    code, and is the blend wherever the two acquired frames around a new one are equal."""
    rng = np.random.default_rng(4)
    body = (rng.random((96, 80, 1)) * 300 + 100).astype(np.float32)
    frames = []
    for k in range(8):
        frame = body.copy()
        radius = 8 + 3 * np.sin(2 * np.pi * k / 8)  # a beating disc in the upper left
        x, y = np.ogrid[:96, :80]
        frame[(x - 28) ** 2 + (y - 24) ** 2 < radius ** 2, 0] = 1500
        frames.append(frame)
    data = np.stack(frames, axis=-1).astype(np.int16)
    affine = np.array([[0.0, 0.0, 6.0, -40.0], [1.72, 0.0, 0.0, -80.0], [0.0, -1.72, 0.0, 90.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data, affine)
    image.set_qform(None, code=0)
    image.set_sform(affine, code=2)
    source = tmp_path / "001_LA_CINE.nii.gz"
    nib.save(image, source)
    out = interpolate(input=str(source), upsample=2, model=weights, output_dir=str(tmp_path / "o"))
    written = nib.load(Path(out) / "upsampled_4d.nii.gz")
    cine = np.asarray(written.dataobj, dtype=np.float32)
    assert cine.shape == (96, 80, 1, 16) and np.isfinite(cine).all()
    np.testing.assert_array_equal(cine[..., ::2], data.astype(np.float32))
    assert cine.min() >= data.min() and cine.max() <= data.max()
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert int(written.header["sform_code"]) == 2
    blend = 0.5 * (cine[..., 0:-2:2] + cine[..., 2::2])
    still = (data[..., :-1] == data[..., 1:]).all(axis=-1)  # voxels no frame changes
    far = np.zeros(still.shape, bool)
    far[60:, 50:] = True  # far from the disc: outside the moving box or at least 7 voxels from any change
    np.testing.assert_allclose(cine[..., 1:-1:2][still & far], blend[still & far], atol=1e-3)
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert summary["frames_in"] == 8 and summary["frames_out"] == 16


def test_refuses_to_overwrite_unless_asked(series_file, weights, tmp_path):
    target = tmp_path / "o"
    interpolate(input=str(series_file[0]), output_dir=str(target), model=weights)
    before = (target / "summary.json").read_text()
    with pytest.raises(OutputExistsError):
        interpolate(input=str(series_file[0]), t=0.3, output_dir=str(target), model=weights)
    assert (target / "summary.json").read_text() == before
    interpolate(input=str(series_file[0]), t=0.3, output_dir=str(target), model=weights, overwrite=True)
    assert json.loads((target / "summary.json").read_text())["t"] == [0.3]


def test_dicom_in_dicom_out_keeps_geometry_with_new_uids(weights, tmp_path):
    rng = np.random.default_rng(1)
    from scripts.phantoms.dicom import rotation

    affine = np.eye(4)
    affine[:3, :3] = rotation((10.0, -20.0, 30.0)) @ np.diag([1.4, 1.3, 8.0])  # double oblique
    affine[:3, 3] = (-50, 20, 30)
    array = (rng.random((16, 16, 4, 4)) * 500).astype(np.float32)
    patient = write_dicom_acquisition(Series4D(array, affine, "synthetic"), tmp_path / "dcm", layout="b", modality="MR")
    source = read_dicom_series(patient)
    out = interpolate(input=str(patient), t=[0.5], output_dir=str(tmp_path / "o"), output_format="both",
                      model=weights)
    derived = read_dicom_series_3d(Path(out) / "dicom", position=2)  # start frame, t = 0.5, end frame
    np.testing.assert_allclose(derived["affine"], source.affine, atol=1e-4)
    nifti = nib.load(Path(out) / "interp_t0.500.nii.gz").get_fdata()
    np.testing.assert_allclose(derived["array"], nifti, atol=derived["slope"])
    in_uids = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in patient.rglob("*.dcm")}
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in (Path(out) / "dicom").glob("*.dcm")]
    assert len({h.SeriesInstanceUID for h in headers}) == 1 and not {h.SeriesInstanceUID for h in headers} & in_uids
    assert len({h.SOPInstanceUID for h in headers}) == len(headers) == 4 * 3
    assert all("DERIVED" in h.ImageType and "t=0.500" in h.SeriesDescription for h in headers)
    assert {h.PatientID for h in headers} == {source.dicom_template.PatientID}


def read_dicom_series_3d(folder, position):
    """One temporal position of a derived DICOM cine read by ITK (independent of the bundle's reader): RAS affine,
    (X, Y, Z) voxels."""
    import itk

    files = [str(p) for p in sorted(folder.glob("*.dcm"))
             if pydicom.dcmread(p, stop_before_pixels=True).TemporalPositionIdentifier == position]
    image = itk.imread(files)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()) @ np.diag(np.asarray(image.GetSpacing()))
    lps[:3, 3] = np.asarray(image.GetOrigin())
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    array = itk.array_from_image(image).transpose(2, 1, 0)
    slope = float(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).get("RescaleSlope", 1))
    return {"affine": affine, "array": array, "slope": slope}


def test_bundle_run_and_cli_give_identical_results(series_file, weights, tmp_path):
    args = ["--input", str(series_file[0]), "--t", "[0.4]", "--overwrite", "True"]
    common = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 600}
    bundle = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                             "--checkpoint", weights, "--output_dir", str(tmp_path / "b"), *args], check=False, **common)
    assert bundle.returncode == 0, bundle.stderr[-2000:]
    cli = subprocess.run([sys.executable, "-m", "scripts", "interpolate", "--model", weights,
                          "--output_dir", str(tmp_path / "c"), *args], check=False, **common)
    assert cli.returncode == 0, cli.stderr[-2000:]
    a = nib.load(tmp_path / "b" / "interp_4d.nii.gz").get_fdata()
    b = nib.load(tmp_path / "c" / "interp_4d.nii.gz").get_fdata()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"t": 1.5}, "--t: time points must lie in"),
        ({"start_frame": 2, "end_frame": 2}, "start"),
        ({"end_frame": 9}, "--end_frame"),
        ({"output_format": "dicom"}, "--output_format: 'dicom' needs a DICOM input"),
        ({"output_format": "png"}, "--output_format: must be one of"),
    ],
)
def test_bad_arguments_are_named(series_file, weights, tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        interpolate(input=str(series_file[0]), output_dir=str(tmp_path / "o"), model=weights, **kwargs)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("source", ["file", "pair", "demo"])
def test_dicom_output_of_a_nifti_input_is_refused_before_the_networks_load(series_file, weights, tmp_path,
                                                                           monkeypatch, source):
    """A NIfTI input (or the demo) with --output_format dicom / both: one line before the config builds and loads
    the networks, not after."""
    from scripts.inference import cli

    monkeypatch.setattr(cli, "run_config", lambda *a, **k: pytest.fail("the config ran before the refusal"))
    volumes = []
    for k in range(2):
        volumes.append(str(tmp_path / f"v{k}.nii.gz"))
        nib.save(nib.Nifti1Image(series_file[1][..., k], series_file[2]), volumes[-1])
    given = {"file": str(series_file[0]), "pair": volumes, "demo": None}[source]
    with pytest.raises(InputError, match="--output_format: 'both' needs a DICOM input .* is not"):
        interpolate(input=given, output_dir=str(tmp_path / "o"), model=weights, output_format="both")
    assert not (tmp_path / "o").exists()


def test_bad_inputs_are_named(weights, tmp_path):
    rng = np.random.default_rng(2)
    vol = tmp_path / "vol3d.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((4, 4, 4)).astype(np.float32), np.eye(4)), vol)
    with pytest.raises(InputError, match="vol3d.nii.gz: .*4D"):
        interpolate(input=str(vol), output_dir=str(tmp_path / "o"), model=weights)
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((5, 4, 4)).astype(np.float32), np.eye(4)), other)
    with pytest.raises(InputError, match="other.nii.gz"):
        interpolate(input=[str(vol), str(other)], output_dir=str(tmp_path / "o"), model=weights)
    with pytest.raises(InputError, match="missing.nii.gz: input not found"):
        interpolate(input=str(tmp_path / "missing.nii.gz"), output_dir=str(tmp_path / "o"), model=weights)
    with pytest.raises(InputError, match="nope.pt: weights file not found"):
        interpolate(input=str(vol), output_dir=str(tmp_path / "o"), model=str(tmp_path / "nope.pt"))
    assert not (tmp_path / "o").exists()


def test_cli_error_exit_status_and_message(weights, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "scripts", "interpolate", "--input", str(tmp_path / "x.nii.gz"),
                           "--output_dir", str(tmp_path / "o"), "--model", weights], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "x.nii.gz: input not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not (ROOT / "models" / "model.pt").exists(), reason="shipped weights models/model.pt not present")
def test_default_command_beats_the_blend_on_the_demo_case(tmp_path):
    """`python -m monai.bundle run --config_file configs/inference.json` on a fresh checkout, shipped weights."""
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                           "--output_dir", str(tmp_path / "out")], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["demo"]["psnr_student"] > summary["demo"]["psnr_blend"]
    frames = nib.load(out / "interp_4d.nii.gz").get_fdata()
    assert frames.shape[3] == len(summary["t"]) >= 2 and summary["t"] == sorted(summary["t"])
    from scripts.inference.inputs import demo_input

    demo = demo_input()
    ends = demo.series.array[..., [demo.start, demo.end]]
    assert ends.min() - 1e-3 <= frames.min() and frames.max() <= ends.max() + 1e-3


@pytest.mark.skipif(not (ROOT / "models" / "lung_model.pt").exists(), reason="models/lung_model.pt not present")
def test_anatomy_picks_the_shipped_student(tmp_path):
    out = interpolate(anatomy="lung", output_dir=str(tmp_path / "lung"))
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert Path(summary["checkpoint"]).resolve() == ROOT / "models" / "lung_model.pt"
    with pytest.raises(InputError, match="brain_model.pt: weights file not found"):
        interpolate(anatomy="brain", output_dir=str(tmp_path / "brain"))
    assert not (tmp_path / "brain").exists()


@pytest.mark.parametrize("layout", ["b", "c"])
def test_oblique_cine_dicom_from_another_vendor_end_to_end(weights, tmp_path, layout):
    """A double-oblique cine as one series of every slice and phase (b) or one series per slice (c): DICOM and
    NIfTI out on the input's grid."""
    from scripts.phantoms.make import phantom

    data = phantom("cine_dicom", str(tmp_path / "cine"), num_cases=1, seed=4, shape="32,28,4", frames=6, layout=layout)
    source = read_dicom_series(Path(data) / "PHANTOM001")
    out = interpolate(input=str(Path(data) / "PHANTOM001"), start_frame=0, end_frame=2, num_frames=1,
                      output_dir=str(tmp_path / "o"), output_format="both", model=weights)
    np.testing.assert_allclose(nib.load(Path(out) / "interp_4d.nii.gz").affine, source.affine, atol=1e-5)
    derived = read_dicom_series_3d(Path(out) / "dicom", position=2)
    np.testing.assert_allclose(derived["affine"], source.affine, atol=1e-4)
    assert derived["array"].shape == (32, 28, 4)


def test_demo_scores_are_the_evaluations_psnr():
    from scripts.evaluation.metrics import psnr
    from scripts.inference.workflow import demo_scores

    g = np.random.default_rng(0)
    i0, i1 = g.random((8, 8, 4)), g.random((8, 8, 4))
    truth, frames = g.random((8, 8, 4, 2)), g.random((8, 8, 4, 2))
    scores = demo_scores(i0, i1, frames, truth, [0.25, 0.75])
    ours = np.mean([float(psnr(frames[..., n], truth[..., n])[0]) for n in range(2)])
    blends = np.mean([float(psnr((1 - t) * i0 + t * i1, truth[..., n])[0]) for n, t in enumerate([0.25, 0.75])])
    assert scores["psnr_student"] == pytest.approx(ours, abs=1e-9)
    assert scores["psnr_blend"] == pytest.approx(blends, abs=1e-9)


def test_amp_reads_false_from_a_command_line_as_false_and_refuses_other_words():
    from scripts.inference.interpolator import SeriesInterpolator
    from scripts.networks import Student

    lung = ROOT / "models" / "lung_model.pt"
    assert SeriesInterpolator(Student(), lung, device="cpu", amp="false").amp is False
    with pytest.raises(InputError, match="amp: expected True or False, got 'maybe'"):
        SeriesInterpolator(Student(), lung, device="cpu", amp="maybe")


def test_demo_with_times_of_its_own(tmp_path):
    """The embedded demo with the user's own --t / --num_frames: their frames, no scores against the demo's truth
    (which exists at its own times only; it was a ValueError from the montage)."""
    for name, kwargs, times in (("t", {"t": 0.5}, [0.5]), ("n", {"num_frames": 2}, [1 / 3, 2 / 3])):
        out = Path(interpolate(output_dir=str(tmp_path / name), device="cpu", **kwargs))
        summary = json.loads((out / "summary.json").read_text())
        np.testing.assert_allclose(summary["t"], times)
        assert "demo" not in summary
        assert nib.load(out / "interp_4d.nii.gz").shape[3] == len(summary["t"])
