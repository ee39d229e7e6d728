"""``python -m scripts interpolate``: the inference workflow of ``configs/inference.json`` from the command line.

Arguments are data. ``fire`` turns each argument into a Python literal where it can, and the workflow is built by
MONAI's config parser, which runs a string starting with ``$``, resolves ``@name``, expands ``%macro`` and
instantiates a dict with ``_target_``. Every argument is therefore typed and checked here first
(:mod:`scripts.utils.args`): paths become :class:`pathlib.Path` objects (which the parser passes through untouched),
numbers floats / ints, booleans strict bools, ``device`` / ``output_format`` come from allow-lists and ``anatomy``
is a plain lower-case name, and
nothing else (no dict, no list but the two input volumes and the time points) is accepted;
:func:`scripts.utils.config.run_config` then refuses any value the parser could still interpret. This keeps the config
as the one description of the program (a user's ``--config_file`` and the config's named steps keep working), which
building the objects in Python beside the config would not; typing values is a short, closed list of checks.

The cheap checks come before anything heavy is imported or read: the output folder (exists, or may not be
replaced), the weights file (exists, not empty, a torch archive), the NIfTI header (readable, geometry finite,
voxels that fit in this process's memory and in the file), the device.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from scripts.utils.args import (
    parse_bool,
    parse_choice,
    parse_cyclic,
    parse_device,
    parse_int,
    parse_path,
    parse_series,
    parse_times,
)
from scripts.utils.atomic import OUTPUT_MARKER, check_parent, check_replaceable
from scripts.utils.checkpoint import check_weights_file
from scripts.utils.config import run_config
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.paths import ROOT

__all__ = ["interpolate"]

ANATOMY = re.compile(r"[a-z][a-z0-9_]{0,31}")  # names models/<anatomy>_model.pt (cardiac: models/model.pt)
OUTPUT_FORMATS = ("nifti", "dicom", "both")  # the workflow's OUTPUT_FORMATS (checked again there)


def _input(value) -> Path | list[Path] | None:
    """None (the demo), one path, or exactly two paths (the endpoint volumes)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise InputError("--input", f"give one 4D file, one DICOM folder, or exactly two 3D volumes, got {len(value)}")
        return [parse_path(v, "--input") for v in value]
    return parse_path(value, "--input")


def _check_headers(source: Path | list[Path] | None) -> None:
    """Read and check the NIfTI headers of the input (no voxels) before the heavy imports and the work."""
    from scripts.io.nifti_read import nifti_4d_shape, nifti_header_shape

    if isinstance(source, list):
        for path in source:
            nifti_header_shape(path)
    elif source is not None and not source.is_dir():
        if not source.exists():
            raise InputError(source, "input not found")
        nifti_4d_shape(source)


def interpolate(
    input: str | Sequence[str] | None = None,
    series: str | int | Sequence[str | int] | None = None,
    t: float | Sequence[float] | str | None = None,
    num_frames: int | None = None,
    start_frame: int | None = None,
    end_frame: int | None = None,
    upsample: int | None = None,
    cyclic: bool | None = None,
    motion_region: bool | None = None,
    neighbour_refinement: bool | None = None,
    retiming: bool | None = None,
    output_dir: str = "output",
    output_format: str = "nifti",
    device: str = "auto",
    amp: bool = False,
    anatomy: str | None = None,
    model: str | None = None,
    neighbour_model: str | None = None,
    overwrite: bool = False,
    config_file: str | None = None,
) -> str:
    """Interpolate the phases between two frames of a 4D series (the same workflow as configs/inference.json).

    Args:
        input: a 4D NIfTI file, a DICOM folder, or two 3D volumes as "['a.nii.gz','b.nii.gz']"; none runs the
            embedded demo case (a deterministic cardiac phantom).
        series: with a DICOM folder that holds a whole study (several series), the one to read: its SeriesNumber
            (e.g. 7), its SeriesInstanceUID, or text of its SeriesDescription (any case, e.g. "cine sax"), or a list
            of these as "[7,8,9]" for a cine exported as one series per slice; by default every image in the folder.
        t: time point(s) in [0, 1], e.g. 0.5 or "[0.25,0.5,0.75]"; 0 is the start frame, 1 the end frame.
        num_frames: instead of --t, synthesise this many evenly spaced frames.
        start_frame: 0-based start frame of a 4D input (default: the first).
        end_frame: 0-based end frame (default: the last; negative counts from the end).
        upsample: instead of --t / --num_frames / --start_frame / --end_frame: the whole series K times finer in time,
            K - 1 new frames between every two consecutive acquired frames (writes upsampled_4d.nii.gz).
        cyclic: with --upsample, the series is one periodic cycle (cardiac or breathing): new frames also between
            the last frame and the first; False for a series that does not wrap around. The default, auto: a cycle
            unless the input says it is not one (a DICOM series timed by a clock, or over several heartbeats).
        motion_region: run the network only in the box where the series moves and keep the blend of the static
            surroundings, and of every voxel whose two acquired frames are equal (the default); False runs it on the
            whole field of view and keeps its frames as they are.
        neighbour_refinement: with --upsample, correct each pair's new frames with the acquired frames before and
            after the pair, for series of 6 or more frames (the cardiac default; trained with the shipped cardiac
            whole-series student, so off by default with --model unless --neighbour_model is given); False for the
            student alone.
        retiming: with --upsample of a cardiac cine that wraps around, make each new frame where the cycle's motion
            is at its time rather than evenly along its pair's motion (a speed of motion over the cycle learnt from
            training cines; it takes the first frame as the cycle's start, as ECG-gated cines are; the default);
            False gives the network the frames' own times.
        output_dir: folder to create for the results (NIfTI, DICOM, montage.png, summary.json).
        output_format: nifti, dicom (DICOM input only) or both.
        device: cpu, cuda, cuda:N or auto.
        amp: True runs the networks in reduced precision where the device has fast kernels for it: float16 on a GPU,
            bfloat16 on a CPU with AVX512-BF16 or AMX (about a third faster there; on real cines the frames were within
            0.001 dB of float32); elsewhere float32, with a warning. Default False.
        anatomy: which shipped student: cardiac (real ACDC, the default: ``models/model.pt`` between two frames,
            ``models/cine_model.pt`` for --upsample) or lung (``models/lung_model.pt``, trained on the lung 4D CT
            phantom only).
        model: weights file of the student for every job (default: the ones of ``anatomy``); overrides ``anatomy``.
        neighbour_model: weights file of the neighbour refinement for --upsample (default: the shipped cardiac one),
            such as ``cine_refinement_best.pt`` of a site's whole-cine fine-tuning (configs/finetune_cine.yaml) beside
            its ``cine_student_best.pt`` as --model.
        overwrite: replace output_dir if it exists and is an output folder of this bundle (it holds summary.json)
            that holds none of the inputs; True or False.
        config_file: the inference config (default: configs/inference.json of this bundle).
    """
    if neighbour_model is not None and upsample is None:
        raise InputError("--neighbour_model", "the neighbour refinement corrects whole series only: give --upsample K "
                                              "with it, or leave it out for frames between two chosen frames")
    source = _input(input)
    out = parse_path(output_dir, "--output_dir")
    replace = parse_bool(overwrite, "--overwrite")
    values = {
        "input": source,
        "series": parse_series(series, "--series"),
        "t": None if t is None else _times(t, num_frames),
        "num_frames": None if num_frames is None else parse_int(num_frames, "--num_frames", minimum=1),
        "start_frame": None if start_frame is None else parse_int(start_frame, "--start_frame"),
        "end_frame": None if end_frame is None else parse_int(end_frame, "--end_frame"),
        "upsample": None if upsample is None else parse_int(upsample, "--upsample", minimum=2),
        "cyclic": parse_cyclic(cyclic, "--cyclic"),
        "motion_region": None if motion_region is None else parse_bool(motion_region, "--motion_region"),
        "neighbour_refinement": (model is None or neighbour_model is not None if neighbour_refinement is None
                                 else parse_bool(neighbour_refinement, "--neighbour_refinement")),
        "retiming": None if retiming is None else parse_bool(retiming, "--retiming"),
        "neighbour_checkpoint": None if neighbour_model is None else parse_path(neighbour_model, "--neighbour_model"),
        "output_dir": out,
        "output_format": parse_choice(output_format, "--output_format", OUTPUT_FORMATS),
        "anatomy": None if anatomy is None else _anatomy(anatomy),
        "checkpoint": None if model is None else parse_path(model, "--model"),
        "cine_checkpoint": None if model is None else parse_path(model, "--model"),  # every job runs --model
        "overwrite": replace,
        "amp": parse_bool(amp, "--amp"),
    }
    config = ROOT / "configs" / "inference.json" if config_file is None else parse_path(config_file, "--config_file")
    if out.exists():
        if not replace:
            raise OutputExistsError(out)
        check_replaceable(out, OUTPUT_MARKER, keep=[] if source is None else [source] if isinstance(source, Path)
                          else source)
    check_parent(out)
    for name in ("checkpoint", "neighbour_checkpoint"):
        if values[name] is not None:
            check_weights_file(values[name])
    _check_headers(source)
    if values["output_format"] != "nifti" and not (isinstance(source, Path) and source.is_dir()):
        raise InputError("--output_format", f"{values['output_format']!r} needs a DICOM input (a folder of DICOM "
                                            f"files); {'the demo case' if source is None else source} is not")
    values["device"] = parse_device(device, "--device")
    if not config.is_file():
        raise InputError(config, "config file not found")
    return str(run_config(config, values))


def _anatomy(value) -> str:
    """An anatomy name: lower-case letters, digits and ``_`` (``cardiac``, ``lung``); it names the weights file."""
    if not isinstance(value, str) or not ANATOMY.fullmatch(value):
        raise InputError("--anatomy", f"must be the name of a shipped student such as cardiac or lung; got {value!r}")
    return value


def _times(t, num_frames) -> list[float]:
    from scripts.inference.times import resolve_times

    return resolve_times(parse_times(t, "--t"), num_frames)
