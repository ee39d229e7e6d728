"""Hostile input: what a careless user or an attacker hands ``python -m scripts interpolate``.

The matrix (``CASES``) covers files, geometry, values, times, frames, devices, outputs, checkpoints, DICOM and
arguments. Every case must end with exit status 2 and one line on stderr, ``error: <the input at fault>: <the
problem>``, before any work (the network's ``synthesise`` is replaced by a function that fails the test), with nothing
written and nothing of the user's changed or removed. ``docs/errors.md`` ("Hostile input") lists the same cases.

Beside the matrix: canaries (no argument value is ever run as code or resolved as a config reference), the
``--overwrite`` rules on real runs, no NaN written, a header claiming more memory than the process may use refused in
a small process, a file-size limit while writing, and ``monai.bundle run``'s documented behaviour.
"""

import gzip
import hashlib
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from dicom_helpers import dicom_files, edit, make_series

from scripts.__main__ import main
from scripts.inference.interpolator import SeriesInterpolator
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition
from scripts.utils.paths import ROOT

SHAPE = (16, 16, 8)
CANARY = "CANARY"


# --- inputs ----------------------------------------------------------------------------------------------------------
def series_array(frames=3, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return (rng.random((*shape, frames)) * 100 + 10 * np.arange(frames)).astype(np.float32)


def write_nifti(path, array, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.eye(4) if affine is None else affine), path)
    return path


def raw_nifti(path, array=None, affine=None, shape=None):
    """A gzipped NIfTI written byte by byte: any sform (zero, NaN), or a header whose shape the data do not fill."""
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape if shape is None else shape)
    header.set_data_dtype(np.float32)
    header["qform_code"], header["sform_code"] = 0, 1
    header["srow_x"], header["srow_y"], header["srow_z"] = np.asarray(np.eye(4) if affine is None else affine)[:3]
    header["vox_offset"] = 352
    data = b"" if array is None else np.asarray(array, "<f4").tobytes(order="F")
    with gzip.open(path, "wb") as stream:
        stream.write(header.binaryblock + b"\0" * 4 + data)
    return path


def cine(d, name="cine.nii.gz"):
    return write_nifti(d / name, series_array())


def args_case(*options, culprit):
    """``interpolate --input <a good cine> <options>``; the message must name ``culprit``."""
    return lambda d: (["interpolate", "--input", str(cine(d)), *options], culprit)


def nifti_case(name, make):
    """``make(path)`` writes the input; the message names it."""
    def build(d):
        path = make(d / name)
        return ["interpolate", "--input", str(path)], path
    return build


def affine_with(**entries):
    affine = np.eye(4)
    for key, value in entries.items():
        affine[int(key[1]), int(key[2])] = value
    return affine


def weights_case(write):
    def build(d):
        path = d / "weights.pt"
        write(path)
        return ["interpolate", "--input", str(cine(d)), "--model", str(path)], path
    return build


def nan_weights(path, value=float("nan")):
    from scripts.networks import Student

    state = Student().state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][...] = value
    torch.save(state, path)


def output_case(setup, *options, overwrite="True"):
    """An existing output folder made by ``setup(d) -> (folder, culprit)``, then ``--overwrite``."""
    def build(d):
        folder, culprit = setup(d)
        return ["interpolate", "--input", str(cine(d)), "--output_dir", str(folder), "--overwrite", overwrite,
                *options], culprit
    return build


def bundle_output(d, *extra):
    """A folder that looks like an earlier output of the bundle (it holds summary.json)."""
    folder = d / "earlier"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    (folder / "interp_t0.500.nii.gz").write_bytes(b"an earlier result")
    return folder


def output_holding_input(d):
    folder = bundle_output(d)
    series = cine(folder, "mine.nii.gz")
    return ["interpolate", "--input", str(series), "--output_dir", str(folder), "--overwrite", "True"], folder


def dicom_case(damage):
    def build(d):
        patient = write_dicom_acquisition(make_series("CT", shape=(12, 10, 4), frames=3), d / "dicom")
        damage(patient)
        return ["interpolate", "--input", str(patient)], patient
    return build


def second_patient(patient):
    files = dicom_files(patient)
    edit(files[::2], lambda ds: setattr(ds, "PatientID", "SOMEONE-ELSE"))


def rows_columns(patient):
    edit(dicom_files(patient), lambda ds: (setattr(ds, "Rows", 65535), setattr(ds, "Columns", 65535)))


def zero_pixel_spacing(patient):
    edit(dicom_files(patient), lambda ds: setattr(ds, "PixelSpacing", [0, 0]))


def fifo(path):
    os.mkfifo(path)
    return path


# id -> (build(folder) -> (argv, the input the message must name), problem regex); order: the docs table's
CASES = {
    # files
    "input_dev_zero": (lambda d: (["interpolate", "--input", "/dev/zero"], "/dev/zero"), r"not a regular file"),
    "input_fifo": (nifti_case("pipe.nii.gz", fifo), r"not a regular file"),
    "input_random_bytes": (nifti_case("noise.nii.gz", lambda p: p.write_bytes(os.urandom(4096)) and p),
                           r"cannot read it as NIfTI"),
    "header_claims_256_gb": (nifti_case("huge.nii.gz", lambda p: raw_nifti(p, shape=(4000, 4000, 4000, 2))),
                             r"reading the 4000x4000x4000x2 voxels its header declares needs about .* is free"),
    "header_claims_more_than_the_file": (nifti_case("forged.nii.gz", lambda p: raw_nifti(p, shape=(512, 512, 300, 8))),
                                         r"header declares 2516582400 bytes of voxels but the \d+-byte gzip file"),
    "input_is_a_list_of_three": (lambda d: (["interpolate", "--input", "['a.nii.gz','b.nii.gz','c.nii.gz']"],
                                            "--input"),
                                 r"exactly two 3D volumes, got 3"),
    "input_is_a_dict": (lambda d: (["interpolate", "--input", "{'path': 'a.nii.gz'}"], "--input"),
                        r"expected a file or folder name, got dict"),
    # geometry
    "zero_affine": (nifti_case("zero.nii.gz", lambda p: raw_nifti(p, series_array(), np.zeros((4, 4)))),
                    r"affine is degenerate \(voxel spacing \[0.0, 0.0, 0.0\]"),
    "nan_affine": (nifti_case("nan.nii.gz", lambda p: raw_nifti(p, series_array(), affine_with(a00=np.nan))),
                   r"affine is not finite"),
    "one_axis_zero_spacing": (nifti_case("flat.nii.gz", lambda p: raw_nifti(p, series_array(), affine_with(a11=0))),
                              r"affine is degenerate \(voxel spacing \[1.0, 0.0, 1.0\]"),
    "volume_1x1x1": (nifti_case("dot.nii.gz", lambda p: write_nifti(p, series_array(shape=(1, 1, 1)))),
                     r"grid \(1, 1, 1\) is too small"),
    "volume_8x8x8": (nifti_case("cube.nii.gz", lambda p: write_nifti(p, series_array(shape=(8, 8, 8)))),
                     r"grid \(8, 8, 8\) is too small"),
    # values
    "weights_nan": (weights_case(nan_weights), r"weight tensor\(s\) hold NaN or infinite values"),
    "weights_inf": (weights_case(lambda p: nan_weights(p, float("inf"))), r"hold NaN or infinite values"),
    # times
    "t_true": (args_case("--t", "True", culprit="--t"), r"expected a number in \[0, 1\] .*got True"),
    "t_false": (args_case("--t", "False", culprit="--t"), r"got False"),
    "t_list_with_bool": (args_case("--t", "[0.5,True]", culprit="--t"), r"expected a number"),
    "t_same_file_name": (args_case("--t", "[0.5001,0.5004]", culprit="--t"), r"would share an output file name"),
    "t_words": (args_case("--t", "half", culprit="--t"), r"not a number or a list of numbers"),
    "t_infinity": (args_case("--t", "Infinity", culprit="--t"), r"must lie in \[0, 1\]"),
    "t_dict": (args_case("--t", "{'t': 0.5}", culprit="--t"), r"expected a number"),
    "t_and_num_frames": (args_case("--t", "0.5", "--num_frames", "3", culprit="--t"), r"either --t or --num_frames"),
    # frames
    "num_frames_zero": (args_case("--num_frames", "0", culprit="--num_frames"), r"at least 1"),
    "num_frames_fraction": (args_case("--num_frames", "2.5", culprit="--num_frames"), r"whole number, got 2.5"),
    "num_frames_bool": (args_case("--num_frames", "True", culprit="--num_frames"), r"whole number, got True"),
    "num_frames_1000": (args_case("--num_frames", "1000", culprit="--num_frames"), r"at most 999"),
    "start_frame_fraction": (args_case("--start_frame", "0.5", culprit="--start_frame"), r"whole number"),
    "end_frame_word": (args_case("--end_frame", "last", culprit="--end_frame"), r"whole number, got 'last'"),
    # devices
    "device_gpu0": (args_case("--device", "gpu0", culprit="--device"), r"must be auto, cpu, cuda or cuda:N"),
    "device_cuda_99": (args_case("--device", "cuda:99", culprit="--device"), r"cuda:99 was asked for but"),
    "device_cuda_without_gpu": (args_case("--device", "cuda", culprit="--device"),
                                r"cuda was asked for but no CUDA GPU is available here"),
    "device_list": (args_case("--device", "[cpu]", culprit="--device"), r"must be auto, cpu, cuda"),
    # outputs
    "overwrite_false_word": (output_case(lambda d: (bundle_output(d),) * 2, overwrite="false"), r"already exists"),
    "overwrite_no": (output_case(lambda d: (bundle_output(d),) * 2, overwrite="no"), r"already exists"),
    "overwrite_junk": (output_case(lambda d: (bundle_output(d), "--overwrite"), overwrite="maybe"),
                       r"expected True or False, got 'maybe'"),
    "overwrite_folder_holding_input": (output_holding_input, r"holds the input .*mine.nii.gz"),
    "overwrite_foreign_folder": (output_case(lambda d: ((d / "photos").mkdir() or d / "photos",) * 2),
                                 r"was not written by this bundle \(no summary.json"),
    "overwrite_current_folder": (output_case(lambda d: (Path("."), ".")), r"refusing to replace the current folder"),
    "overwrite_parent_folder": (output_case(lambda d: (Path(".."), "..")), r"a folder holding the current folder"),
    "overwrite_root": (output_case(lambda d: (Path("/"), "/")), r"refusing to replace the filesystem root"),
    "overwrite_home": (output_case(lambda d: (Path.home(), Path.home())), r"refusing to replace your home folder"),
    "output_format_pdf": (args_case("--output_format", "pdf", culprit="--output_format"), r"nifti, dicom, both"),
    "output_under_dev_null": (args_case("--output_dir", "/dev/null/out", culprit="/dev/null"), r"is a file"),
    # checkpoints
    "checkpoint_empty": (weights_case(lambda p: p.write_bytes(b"")), r"the weights file is empty \(0 bytes\)"),
    "checkpoint_random_bytes": (weights_case(lambda p: p.write_bytes(os.urandom(2048))),
                                r"unreadable checkpoint, truncated or corrupt: not the zip archive"),
    "checkpoint_is_a_folder": (weights_case(lambda p: p.mkdir()), r"not a regular file"),
    "checkpoint_dev_zero": (lambda d: (["interpolate", "--input", str(cine(d)), "--model", "/dev/zero"], "/dev/zero"),
                            r"not a regular file"),
    # arguments
    "unknown_option": (args_case("--tt", "0.5", culprit="--tt"), r"unknown option of interpolate"),
    "unknown_option_with_equals": (args_case("--outputdir=x", culprit="--outputdir"), r"unknown option"),
    "anatomy_expression": (args_case("--anatomy", "$'lung'", culprit="--anatomy"),
                           r"must be the name of a shipped student"),
    "input_target_dict": (lambda d: (["interpolate", "--input", f"{{'_target_': 'os.mkdir', 'path': '{CANARY}'}}"],
                                     "--input"), r"expected a file or folder name, got dict"),
    "config_file_missing": (args_case("--config_file", "none.json", culprit="none.json"), r"config file not found"),
    # DICOM (the reader's checks)
    "dicom_two_patients": (dicom_case(second_patient), r"holds 2 different PatientID values: PatientID 'SOMEONE-ELSE'"),
    "dicom_rows_65535": (dicom_case(rows_columns), r"Rows 65535 x Columns 65535 .* would need .* GiB of memory"),
    "dicom_pixel_spacing_0": (dicom_case(zero_pixel_spacing), r"PixelSpacing \[0.0, 0.0\] mm: both spacings must be"),
}
NEEDS_NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is available here")


def _param(case):
    return pytest.param(case, marks=[NEEDS_NO_GPU] if case == "device_cuda_without_gpu" else [])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` -> its content hash (``"dir"`` for folders; fifos by name only)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            found[str(path)] = "dir"
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path)] = "special"
    return found


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The user's world, ``tmp_path/user``: ``work`` the current folder (a relative output lands there), ``home`` the
    home folder, ``in`` the inputs; the network's work replaced by a failure (a refusal must come before it)."""
    def never(*args, **kwargs):
        raise AssertionError("the interpolation ran: the refusal must come before the work")

    user = tmp_path / "user"
    for name in ("work", "home", "in"):
        (user / name).mkdir(parents=True)
    monkeypatch.chdir(user / "work")
    monkeypatch.setenv("HOME", str(user / "home"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))  # caches outside the user's snapshot
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(SeriesInterpolator, "synthesise", never)
    return user


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hostile_input_is_refused_in_one_line(case, sandbox, capsys):
    build, problem = CASES[case]
    argv, culprit = build(sandbox / "in")
    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", str(sandbox / "work" / "out")]
    before = snapshot(sandbox)
    status = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    message = lines[-1] if lines else ""
    assert status == 2, message
    assert "Traceback" not in "\n".join(lines)
    assert message.startswith("error: ") and str(culprit) in message, message
    assert re.search(problem, message), message
    assert snapshot(sandbox) == before  # nothing written, nothing of the user's changed or removed
    assert not (sandbox / "work" / CANARY).exists()


def test_matrix_is_large_and_recorded():
    assert len(CASES) >= 40
    table = (ROOT / "docs" / "errors.md").read_text()
    missing = [case for case in CASES if f"`{case}`" not in table]
    assert not missing, f"docs/errors.md does not list {missing}"


# --- canaries: argument values are data -------------------------------------------------------------------------------
def _payloads(valid: str) -> dict[str, str]:
    """Values that would run code, resolve a reference or expand a macro if the config parser interpreted them; each
    creates the canary folder (or writes through ``@checkpoint``) when interpreted."""
    return {
        "expression": f"$__import__('os').mkdir('{CANARY}') or {valid!r}",
        "reference": "@checkpoint",
        "macro": "%configs/inference.json#output_dir",
        "target": f"{{'_target_': 'os.mkdir', 'path': '{CANARY}'}}",
    }


ARGUMENTS = {"input": "x.nii.gz", "series": "3", "t": "0.5", "num_frames": "1", "start_frame": "0", "end_frame": "1",
             "output_dir": "out", "output_format": "nifti", "device": "cpu", "anatomy": "cardiac", "model": "m.pt",
             "overwrite": "False", "config_file": "configs/inference.json"}


@pytest.mark.parametrize("payload", ["expression", "reference", "macro", "target"])
@pytest.mark.parametrize("argument", ARGUMENTS)
def test_cli_never_runs_or_resolves_an_argument(argument, payload, sandbox, capsys, monkeypatch):
    """Each argument of ``interpolate`` with each payload: the canary never appears and the shipped weights stay."""
    monkeypatch.setattr(SeriesInterpolator, "synthesise", lambda self, i0, i1, ts, span=None: np.stack([i0] * len(ts), -1))
    weights = ROOT / "models" / "model.pt"
    stamp = weights.stat().st_mtime_ns
    value = _payloads(ARGUMENTS[argument])[payload]
    status = main(["interpolate", f"--{argument}", value, *([] if argument == "output_dir" else
                                                            ["--output_dir", "result"])])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not any((sandbox / "work").rglob(CANARY)) and not (ROOT / CANARY).exists()
    assert weights.is_file() and weights.stat().st_mtime_ns == stamp
    if status == 0:  # accepted only as data: a file or folder literally named so
        assert argument == "output_dir" and payload != "target"
        assert (sandbox / "work" / value / "summary.json").is_file()
    else:
        assert status == 2 and err.strip().splitlines()[-1].startswith("error: ")


def test_bundle_run_interprets_dollar_by_design_and_the_cli_does_not(tmp_path):
    """``monai.bundle run`` evaluates a ``$`` override (MONAI's design, documented in docs/errors.md "Security");
    the safe CLI takes the same text as a file name."""
    canary = tmp_path / CANARY
    value = f"$__import__('os').mkdir({str(canary)!r}) or {str(tmp_path / 'out')!r}"
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                           "--output_dir", value, "--t", "[2.0]"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert canary.is_dir(), proc.stderr[-2000:]  # by design: see docs/errors.md
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: --t")
    canary.rmdir()
    status = main(["interpolate", "--output_dir", value, "--t", "[2.0]"])
    assert status == 2 and not canary.exists()
    assert "Security" in (ROOT / "docs" / "errors.md").read_text()


def test_bundle_run_refuses_an_unknown_option_before_the_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                           "--tt", "0.5", "--output_dir", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last == "error: --tt: unknown option: no entry 'tt' in configs/inference.json"
    assert "synthesised" not in proc.stderr and not (tmp_path / "out").exists()


# --- real runs: overwrite, strict booleans, finite outputs -------------------------------------------------------------
def _fast_student(monkeypatch, make=None):
    """Replace the network's work by the blend of the endpoints (or ``make``): these tests are about the workflow."""
    def blend(self, i0, i1, ts, span=None):
        return np.stack([(1 - t) * i0 + t * i1 for t in ts], -1).astype(np.float32)

    monkeypatch.setattr(SeriesInterpolator, "synthesise", make or blend)


def test_overwrite_replaces_only_its_own_output(tmp_path, monkeypatch, capsys):
    _fast_student(monkeypatch)
    series, out = cine(tmp_path), tmp_path / "out"
    assert main(["interpolate", "--input", str(series), "--output_dir", str(out)]) == 0
    first = snapshot(out)
    assert main(["interpolate", "--input", str(series), "--output_dir", str(out), "--overwrite", "no"]) == 2
    assert snapshot(out) == first
    assert main(["interpolate", "--input", str(series), "--output_dir", str(out), "--t", "0.25",
                 "--overwrite", "yes"]) == 0
    assert (out / "interp_t0.250.nii.gz").is_file() and not (out / "interp_t0.500.nii.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cine.nii.gz", "out"]  # no hidden leftovers


def test_overwrite_current_folder_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    _fast_student(monkeypatch)
    monkeypatch.chdir(tmp_path)
    series = cine(tmp_path)
    (tmp_path / "summary.json").write_text("{}")  # even a folder that looks like an output
    before = snapshot(tmp_path)
    assert main(["interpolate", "--input", str(series), "--output_dir", ".", "--overwrite", "True"]) == 2
    assert "refusing to replace the current folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # no hidden work folder either


def test_input_at_the_float32_limits_gives_finite_frames(tmp_path, monkeypatch):
    """Intensities spanning +-3e38: the scale is computed in float64, the frames written are finite and in range."""
    _fast_student(monkeypatch)
    array = series_array().astype(np.float64)
    array = ((array - array.min()) / (array.max() - array.min()) * 6e38 - 3e38).astype(np.float32)
    series = write_nifti(tmp_path / "wide.nii.gz", array)
    assert main(["interpolate", "--input", str(series), "--output_dir", str(tmp_path / "out")]) == 0
    frames = np.asarray(nib.load(tmp_path / "out" / "interp_4d.nii.gz").dataobj)
    assert np.isfinite(frames).all() and frames.min() >= -3e38 and frames.max() <= 3e38
    expected = 0.5 * (array[..., 0].astype(np.float64) + array[..., -1])
    np.testing.assert_allclose(frames[..., 0], expected, rtol=1e-5, atol=1e33)


def test_non_finite_frames_are_never_written(tmp_path, monkeypatch, capsys):
    def nan_frames(self, i0, i1, ts, span=None):
        frames = np.stack([i0] * len(ts), -1).astype(np.float32)
        frames[0, 0, 0, 0] = np.nan
        return frames

    _fast_student(monkeypatch, nan_frames)
    series = cine(tmp_path)
    assert main(["interpolate", "--input", str(series), "--output_dir", str(tmp_path / "out")]) == 2
    assert "1 NaN or infinite voxel(s)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cine.nii.gz"]


# --- resources, in a process of their own -----------------------------------------------------------------------------
# the child's own peak resident memory (VmHWM: getrusage's ru_maxrss would also count the forking pytest's pages)
_PEAK = ("import atexit, runpy, sys; atexit.register(lambda: print('peak_rss_kib', [line.split()[1] for line in "
         "open('/proc/self/status') if line.startswith('VmHWM')][0], file=sys.stderr)); "
         "runpy.run_module('scripts', run_name='__main__', alter_sys=True)")


def _run_limited(args, cwd, limits):
    """Run ``python -m scripts <args>`` under ``{resource: soft limit}``; returns (exit status, its stderr lines,
    its peak resident memory in MiB)."""
    def apply():
        for kind, value in limits.items():
            resource.setrlimit(kind, (value, resource.getrlimit(kind)[1]))

    proc = subprocess.run([sys.executable, "-c", _PEAK, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False, preexec_fn=apply,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    lines = proc.stderr.strip().splitlines()
    peak = [int(line.split()[1]) for line in lines if line.startswith("peak_rss_kib")]
    return proc.returncode, [line for line in lines if not line.startswith("peak_rss_kib")], peak[0] / 1024


def test_header_beyond_the_memory_limit_is_refused_from_the_header(tmp_path):
    """A 100-byte .nii.gz claiming 2.4 GB of voxels under a 2 GiB data limit: refused from its header, the process
    stays small (the machine's free memory alone would have let it through)."""
    path = raw_nifti(tmp_path / "claims.nii.gz", shape=(512, 512, 300, 8))
    assert path.stat().st_size < 200
    status, lines, peak_mib = _run_limited(["interpolate", "--input", str(path), "--output_dir",
                                            str(tmp_path / "out")], tmp_path, {resource.RLIMIT_DATA: 2 << 30})
    last = lines[-1]
    assert status == 2, lines[-20:]
    assert re.fullmatch(rf"error: {re.escape(str(path))}: reading the 512x512x300x8 voxels its header declares needs "
                        r"about 4.7 GiB but 1.\d GiB is free for this process .*", last), last
    assert peak_mib < 300, peak_mib
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.nii.gz"]


def test_file_size_limit_while_writing_is_one_line(tmp_path):
    """RLIMIT_FSIZE below the output's size: one line naming the output folder, nothing left behind."""
    series = write_nifti(tmp_path / "cine.nii.gz", series_array(shape=(40, 40, 16)))
    status, lines, _ = _run_limited(["interpolate", "--input", str(series), "--output_dir", str(tmp_path / "out"),
                                     "--model", str(_small_weights(tmp_path)), "--config_file",
                                     str(_small_config(tmp_path))], tmp_path, {resource.RLIMIT_FSIZE: 20_000})
    last = lines[-1]
    assert status == 2 and not any("Traceback" in line for line in lines), lines[-30:]
    assert last.startswith(f"error: {tmp_path / 'out'}: cannot write the output (File too large)"), last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cine.nii.gz", "small.json", "small.pt"]


def _small_weights(folder: Path) -> Path:
    from small_bundle import save_random_weights

    return save_random_weights(folder / "small.pt")


def _small_config(folder: Path) -> Path:
    """configs/inference.json with the small student of tests/small_bundle.py as ``network_def``."""
    import json

    from small_bundle import OVERRIDES

    config = json.loads((ROOT / "configs" / "inference.json").read_text())
    config.update(OVERRIDES)
    path = folder / "small.json"
    path.write_text(json.dumps(config))
    return path


def test_resume_with_another_channel_setting_is_one_error(tmp_path):
    """A training resumed with other widths than its checkpoint's: an InputError naming the checkpoint, not torch's
    size-mismatch traceback."""
    from ignite.engine import Engine
    from small_bundle import NETWORK_ARGS

    from scripts.networks import Student
    from scripts.training.handlers import ResumeFromCheckpoint, TrainingCheckpoint
    from scripts.utils.errors import InputError

    def engine():
        made = Engine(lambda engine, batch: None)
        made.state.max_epochs = 2
        return made

    saved = Student(**NETWORK_ARGS)
    first = engine()
    first.state.iteration, first.state.epoch = 3, 1
    TrainingCheckpoint(str(tmp_path), {"network": saved})(first)
    wider = Student(**{**NETWORK_ARGS, "channels": [4, 8, 8, 16]})
    second = engine()
    with pytest.raises(InputError, match=r"last_checkpoint_3.pt: does not fit this training's network or optimizer "
                                         r"\(another channels, ablation or optimizer setting\?\)"):
        ResumeFromCheckpoint(str(tmp_path), {"network": wider})(second)
