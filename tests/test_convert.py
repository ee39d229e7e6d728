"""``python -m scripts to_nifti``: a DICOM acquisition as the 4D NIfTI case (and sidecar) fine-tuning reads."""

import json

import nibabel as nib
import numpy as np
import pytest
from dicom_helpers import make_series

from scripts.__main__ import main
from scripts.datasets.nifti4d import nifti4d_series
from scripts.io.dicom_read import read_dicom_series
from scripts.io.nifti_read import read_nifti_4d
from scripts.io.series import Series4D
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition


def _acquisition(tmp_path, layout="single_series", modality="MR", quirks=()):
    written = make_series(modality)
    if modality == "MR":
        written = Series4D(written.array, written.affine, "cine", 20.0 + 40.0 * np.arange(written.array.shape[3]))
    return write_dicom_acquisition(written, tmp_path / "dicom", layout=layout, modality=modality, quirks=quirks)


def test_a_gated_cine_becomes_a_cyclic_nifti4d_case(tmp_path):
    """The voxels and geometry the DICOM reader gives, the frame step in pixdim[4], and a sidecar saying the cine is
    one cycle, which the fine-tuning dataset reads."""
    folder = _acquisition(tmp_path)
    cases = tmp_path / "cases"
    cases.mkdir()
    assert main(["to_nifti", "--input", str(folder), "--output", str(cases / "site01.nii.gz")]) == 0
    read, converted = read_dicom_series(folder), read_nifti_4d(cases / "site01.nii.gz")
    np.testing.assert_array_equal(converted.array, read.array)
    np.testing.assert_allclose(converted.affine, read.affine, atol=1e-5)
    assert nib.load(cases / "site01.nii.gz").header.get_zooms()[3] == pytest.approx(40.0)
    assert json.loads((cases / "site01.json").read_text()) == {"cyclic": True}
    (case,) = nifti4d_series(cases, spatial_size=(16, 16, 8))
    assert case.case_id == "site01"


@pytest.mark.parametrize("layout, modality, quirks, sidecar", [
    ("series_per_slice", "MR", ("ungated_slices",), {"cyclic": False}),  # a real-time stack: a clock times it
    ("series_per_phase", "CT", (), None),  # 4D CT phases: nothing says whether it wraps
])
def test_the_sidecar_says_only_what_the_input_says(tmp_path, layout, modality, quirks, sidecar):
    folder = _acquisition(tmp_path, layout, modality, quirks)
    assert main(["to_nifti", "--input", str(folder), "--output", str(tmp_path / "case.nii")]) == 0
    assert read_nifti_4d(tmp_path / "case.nii").array.shape == read_dicom_series(folder).array.shape
    path = tmp_path / "case.json"
    assert (json.loads(path.read_text()) if path.exists() else None) == sidecar


def test_outputs_are_refused_before_any_work_and_overwrite_keeps_the_endpoints(tmp_path, capsys):
    folder = _acquisition(tmp_path)
    target, sidecar = tmp_path / "c.nii.gz", tmp_path / "c.json"
    sidecar.write_text('{"start_frame": 1, "end_frame": 4}')
    assert main(["to_nifti", "--input", str(folder), "--output", str(target)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {sidecar}: already exists")
    assert not target.exists()
    assert main(["to_nifti", "--input", str(folder), "--output", str(target), "--overwrite", "True"]) == 0
    assert json.loads(sidecar.read_text()) == {"start_frame": 1, "end_frame": 4, "cyclic": True}
    before = target.read_bytes(), sidecar.read_bytes()
    # another series over the case: its 3 phases do not reach the kept end_frame 4 -> refused, nothing changed
    ct = write_dicom_acquisition(make_series("CT", frames=3), tmp_path / "ct", layout="series_per_phase", modality="CT")
    assert main(["to_nifti", "--input", str(ct), "--output", str(target), "--overwrite", "True"]) == 2
    assert "c.json: end_frame" in capsys.readouterr().err
    assert (target.read_bytes(), sidecar.read_bytes()) == before
    # with endpoints that fit, the old cycle is dropped: the 4D CT does not say whether it wraps
    sidecar.write_text('{"start_frame": 0, "end_frame": 2, "cyclic": true}')
    assert main(["to_nifti", "--input", str(ct), "--output", str(target), "--overwrite", "True"]) == 0
    assert json.loads(sidecar.read_text()) == {"start_frame": 0, "end_frame": 2}
    assert read_nifti_4d(target).array.shape[3] == 3
    # a folder where a file is to go is refused before any work, and the case's files stay
    (tmp_path / "e.json").mkdir()
    (tmp_path / "e.nii.gz").write_bytes(before[0])
    assert main(["to_nifti", "--input", str(folder), "--output", str(tmp_path / "e.nii.gz"), "--overwrite",
                 "True"]) == 2
    assert "e.json: exists and is not a file" in capsys.readouterr().err
    assert (tmp_path / "e.nii.gz").read_bytes() == before[0]
    for argv, problem in (
        (["--input", str(folder), "--output", str(tmp_path / "c.nrrd")], "expected a file name ending in .nii.gz"),
        (["--input", str(target), "--output", str(tmp_path / "d.nii.gz")], "is not a folder"),
        (["--input", str(folder), "--output", str(tmp_path / "d.nii.gz"), "--series", "77"], "no series matches"),
        (["--input", str(folder), "--output", str(tmp_path / "nowhere" / "d.nii.gz")], "folder does not exist"),
    ):
        assert main(["to_nifti", *argv]) == 2
        assert problem in capsys.readouterr().err
        assert not (tmp_path / "d.nii.gz").exists() and not (tmp_path / "d.json").exists()
