"""The bad-input matrix: each broken input a user may hand the bundle, through the command line as they would.

Every case must end with exit status 2 and one line on stderr, ``error: <the input at fault>: <the problem>``, and
leave nothing behind: no output folder, no temporary files. ``docs/errors.md`` lists the same errors with what to do.
The readers' own tests (test_nifti_io, test_dicom, test_acdc, test_checkpoint) cover the finer variants.
"""

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
from dicom_helpers import dicom_files, edit, make_affine, make_series, mark_jpeg_ls, without_decoders, write_text_sr

import scripts.utils.memory
from scripts.__main__ import main
from scripts.inference.interpolator import SeriesInterpolator
from scripts.io.series import Series4D
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition
from scripts.phantoms.make import write_acdc_layout
from scripts.utils.paths import ROOT

SHAPE = (16, 16, 8)


# --- inputs ----------------------------------------------------------------------------------------------------------
def series_array(frames=3, seed=0):
    """(16, 16, 8, frames) float32 frames that differ."""
    rng = np.random.default_rng(seed)
    return (rng.random((*SHAPE, frames)) * 100 + 10 * np.arange(frames)).astype(np.float32)


def write_nifti(path, array, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.eye(4) if affine is None else affine), path)
    return path


def damaged(path, change):
    """``path`` rewritten with ``change(bytes) -> bytes``."""
    path.write_bytes(change(path.read_bytes()))
    return path


def flip_middle_byte(data):
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def with_voxel(value):
    array = series_array()
    array[3, 4, 5, 1] = value
    return array


def interpolate(d, input, *options):
    return ["interpolate", "--input", str(input), *options]


def nifti_case(name, array, affine=None):
    return lambda d: (interpolate(d, write_nifti(d / name, array, affine)), d / name)


def corrupt_nifti_case(name, change):
    return lambda d: (interpolate(d, damaged(write_nifti(d / name, series_array()), change)), d / name)


def two_volumes_case(second_shape=SHAPE, second_affine=None):
    def build(d):
        array = series_array(2)
        first = write_nifti(d / "ed.nii.gz", array[..., 0])
        second = np.resize(array[..., 1], second_shape)
        second = write_nifti(d / "es.nii.gz", second, second_affine)
        return interpolate(d, f"['{first}','{second}']"), d / "ed.nii.gz"
    return build


def t_case(t):
    return lambda d: (interpolate(d, write_nifti(d / "cine.nii.gz", series_array()), "--t", t), "--t")


def acquisition(d, layout="a"):
    """A small CT acquisition in DICOM ``layout``; returns its patient folder."""
    return write_dicom_acquisition(make_series("CT", shape=(12, 10, 4), frames=3), d / "dicom", layout=layout)


def dicom_case(damage):
    """``damage(patient_folder) -> the culprit`` applied to a fresh acquisition."""
    def build(d):
        patient = acquisition(d)
        return interpolate(d, patient), damage(patient)
    return build


def without_tag(tag):
    def damage(patient):
        victim = dicom_files(patient)[2]
        edit([victim], lambda ds: delattr(ds, tag))
        return victim
    return damage


def duplicate_slice(patient):
    original = dicom_files(patient)[1]
    shutil.copy(original, original.with_name("copy.dcm"))
    return patient


def second_geometry(patient):
    other = Series4D(make_series("CT", shape=(12, 10, 4), frames=3).array,
                     make_affine(oblique=False, spacing=(0.7, 0.7, 2.5)), "other")
    shutil.copytree(write_dicom_acquisition(other, patient.parent / "other", layout="b"), patient / "other")
    return patient


def jpeg_ls_without_decoder(patient):
    victim = dicom_files(patient)[0]
    mark_jpeg_ls(victim)
    return victim


def folder_without_dicom(d):
    (d / "export").mkdir()
    (d / "export" / "notes.txt").write_text("the scanner's README")
    return interpolate(d, d / "export"), d / "export"


def structured_report_only(d):
    (d / "report").mkdir()
    write_text_sr(d / "report" / "sr.dcm")
    return interpolate(d, d / "report"), d / "report"


def acdc_case(edit_info):
    """One ACDC-layout patient whose Info.cfg ``edit_info(path)`` damages, through ``evaluate``."""
    def build(d):
        write_acdc_layout(d / "acdc", 1, seed=1, shape=SHAPE, frames=8)
        info = d / "acdc" / "patient001" / "Info.cfg"
        edit_info(info)
        return ["evaluate", "--dataset_dir", str(d / "acdc"), "--split", "all", "--methods", "[blend]",
                "--spatial_size", "[16,16,8]"], info
    return build


def set_ed_es(ed, es):
    def change(info):
        lines = info.read_text().splitlines()
        lines = [f"ED: {ed}" if l.startswith("ED:") else f"ES: {es}" if l.startswith("ES:") else l for l in lines]
        info.write_text("\n".join(lines) + "\n")
    return change


def weights_case(write):
    """The embedded demo with ``--model`` pointing at the file ``write(path)`` makes."""
    def build(d):
        path = d / "weights.pt"
        write(path)
        return ["interpolate", "--model", str(path)], path
    return build


class Exploit:
    """A pickle that would run code when loaded without ``weights_only``: it would create a file named PWNED."""

    def __reduce__(self):
        return (Path.touch, (Path("PWNED"),))


def truncated_weights(path):
    torch.save({"w": torch.zeros(1000)}, path)
    damaged(path, lambda data: data[: len(data) // 2])


def other_architecture(path):
    torch.save({"conv.weight": torch.zeros(8, 2, 3, 3, 3)}, path)


def series_case(series, nifti=False):
    """``--series`` asking for a series the DICOM folder does not hold, or given with a NIfTI input."""
    def build(d):
        source = write_nifti(d / "cine.nii.gz", series_array()) if nifti else acquisition(d)
        return [*interpolate(d, source), "--series", series], "--series" if nifti else source
    return build


# id -> (build(tmp folder) -> (argv without --output_dir, the input the message must name), problem regex)
CASES = {
    "2d_nifti": (nifti_case("slice.nii.gz", series_array()[:, :, 0, 0]), r"is 2D .* expected a 4D series"),
    "3d_nifti_as_series": (nifti_case("volume.nii.gz", series_array()[..., 0]), r"is 3D .* expected a 4D series"),
    "5d_nifti": (nifti_case("vector.nii.gz", np.stack([series_array()] * 2, -1)), r"is 5D .* expected a 4D"),
    "single_frame": (nifti_case("one.nii.gz", series_array(1)), r"1 frame.* at least 2 are needed"),
    "empty_file": (corrupt_nifti_case("empty.nii.gz", lambda data: b""), r"cannot read it as NIfTI"),
    "truncated_nifti": (corrupt_nifti_case("cut.nii.gz", lambda data: data[: len(data) // 2]),
                        r"cannot read it as NIfTI .*truncated"),
    "corrupt_gzip": (corrupt_nifti_case("flipped.nii.gz", flip_middle_byte), r"cannot read it as NIfTI.*CRC"),
    "nan_voxel": (nifti_case("nan.nii.gz", with_voxel(np.nan)), r"1 voxel\(s\) are NaN or infinite"),
    "inf_voxel": (nifti_case("inf.nii.gz", with_voxel(np.inf)), r"1 voxel\(s\) are NaN or infinite"),
    "constant_image": (nifti_case("flat.nii.gz", np.full((*SHAPE, 3), 7.0)), r"constant .*nothing to interpolate"),
    "no_dicom_in_folder": (folder_without_dicom, r"no DICOM file in the folder"),
    "non_image_dicom": (structured_report_only, r"only non-image objects \(Basic Text SR"),
    "missing_image_position": (dicom_case(without_tag("ImagePositionPatient")), r"missing ImagePositionPatient"),
    "missing_pixel_spacing": (dicom_case(without_tag("PixelSpacing")), r"missing PixelSpacing"),
    "mixed_geometry": (dicom_case(second_geometry), r"2 acquisitions with different geometry"),
    "series_not_in_folder": (series_case("77"), r"no series matches '77'.*it holds series 1"),
    "series_of_a_nifti": (series_case("7", nifti=True), r"chooses series of a DICOM folder"),
    "duplicate_slice": (dicom_case(duplicate_slice), r"duplicate slice: .*copy\.dcm"),
    "compressed_without_decoder": (dicom_case(jpeg_ls_without_decoder),
                                   r"JPEG-LS Lossless .*no decoder for it is installed; install one of: .*pylibjpeg"),
    "info_cfg_missing": (acdc_case(Path.unlink), r"file not found; every ACDC patient folder needs an Info.cfg"),
    "es_beyond_last_frame": (acdc_case(set_ed_es(1, 99)), r"ES 99 is outside 1..8"),
    "ed_before_first_frame": (acdc_case(set_ed_es(0, 4)), r"ED 0 is outside 1..8"),
    "ed_equals_es": (acdc_case(set_ed_es(3, 3)), r"ED and ES are both frame 3; they must differ"),
    "t_above_one": (t_case("1.5"), r"must lie in \[0, 1\].*1\.5"),
    "t_negative": (t_case("-0.1"), r"must lie in \[0, 1\].*-0\.1"),
    "t_nan": (t_case("NaN"), r"must lie in \[0, 1\].*nan"),
    "t_empty_list": (t_case("[]"), r"the list of time points is empty"),
    "t_duplicates": (t_case("[0.5,0.5]"), r"duplicate time points"),
    "endpoints_shape": (two_volumes_case(second_shape=(12, 16, 8)), r"shapes differ: \(16, 16, 8\) vs \(12, 16, 8\)"),
    "endpoints_spacing": (two_volumes_case(second_affine=np.diag([2.0, 1, 1, 1])), r"voxel spacing differs"),
    "endpoints_orientation": (two_volumes_case(second_affine=np.diag([-1.0, 1, 1, 1])), r"orientation differs"),
    "weights_missing": (lambda d: (["interpolate", "--model", str(d / "none.pt")], d / "none.pt"),
                        r"weights file not found"),
    "weights_truncated": (weights_case(truncated_weights), r"unreadable checkpoint, truncated or corrupt"),
    "weights_other_architecture": (weights_case(other_architecture), r"weights do not fit Student"),
    "weights_code_pickle": (weights_case(lambda path: torch.save(Exploit(), path)),
                            r"refused: not a plain weights file.*never runs code"),
}


def check_refused(argv, culprit, problem, tmp_path, capsys, output=None):
    """Run the CLI; assert exit status 2, one ``error:`` line naming ``culprit`` and matching ``problem``, no output."""
    output = tmp_path / "out" if output is None else output
    before = sorted(tmp_path.rglob("*"))
    status = main([*argv, "--output_dir", str(output)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2, message
    assert message.startswith("error: ") and str(culprit) in message, message
    assert re.search(problem, message), message
    assert not output.exists()
    assert sorted(tmp_path.rglob("*")) == before  # no temporary file or folder left either
    return message


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_by_name_without_output(case, tmp_path, capsys, monkeypatch):
    if case == "compressed_without_decoder":
        without_decoders(monkeypatch)
    monkeypatch.chdir(tmp_path)  # an executed pickle would leave PWNED here
    build, problem = CASES[case]
    (tmp_path / "in").mkdir()
    argv, culprit = build(tmp_path / "in")
    check_refused(argv, culprit, problem, tmp_path, capsys)
    assert not (tmp_path / "PWNED").exists()


def test_output_under_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "report.txt").write_text("not a folder")
    check_refused(["interpolate"], tmp_path / "report.txt", r"report.txt is a file, not a folder", tmp_path, capsys,
                  output=tmp_path / "report.txt" / "out")


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys, monkeypatch):
    def never(*args):
        raise AssertionError("refused only after the work was done")

    monkeypatch.setattr(SeriesInterpolator, "synthesise", never)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "earlier.nii.gz").write_bytes(b"an earlier result")
    status = main(["interpolate", "--output_dir", str(tmp_path / "out")])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and message == f"error: {tmp_path / 'out'}: already exists; pass --overwrite True to replace it"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["earlier.nii.gz"]
    assert (tmp_path / "out" / "earlier.nii.gz").read_bytes() == b"an earlier result"


@pytest.mark.parametrize("region, grid", [("False", "volume (96, 96, 8)"), ("True", "volume (72, 64, 8)")])
def test_volume_too_large_for_memory_is_refused_with_advice(region, grid, tmp_path, capsys, monkeypatch):
    """The estimate is of the grid the network runs on: the whole volume, or the moving box of the demo case."""
    monkeypatch.setattr(scripts.utils.memory, "available_bytes", lambda device: 64 * 2**20)
    check_refused(["interpolate", "--motion_region", region], grid,
                  r"needs about \d+ MiB on cpu but 64 MiB is free: .*max_batch 1.*another device.*crop", tmp_path, capsys)


def _bundle_run(args, cwd):
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("config, culprit_args, problem", [
    ("inference.json", ["--input", "{d}/cut.nii.gz"], r"cut.nii.gz: cannot read it as NIfTI"),
    ("train_teacher.json", ["--dataset_dir", "{d}"], r"holds no patientNNN folder; expected .*ACDC training layout"),
])
def test_bundle_run_reports_one_line_not_a_traceback(config, culprit_args, problem, tmp_path):
    damaged(write_nifti(tmp_path / "cut.nii.gz", series_array()), lambda data: data[:200])
    args = ["--config_file", f"configs/{config}", "--output_dir", str(tmp_path / "out"),
            *[a.format(d=tmp_path) for a in culprit_args]]
    proc = _bundle_run(args, ROOT)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(problem, last), last
    assert not (tmp_path / "out").exists()
