"""``python -m scripts interpolate``: the inference workflow of ``configs/inference.json`` from the command line."""

from __future__ import annotations

from collections.abc import Sequence

from scripts.utils.config import run_config
from scripts.utils.paths import ROOT

__all__ = ["interpolate"]


def interpolate(
    input: str | Sequence[str] | None = None,
    t: float | Sequence[float] | str | None = None,
    num_frames: int | None = None,
    start_frame: int | None = None,
    end_frame: int | None = None,
    upsample: int | None = None,
    cyclic: bool | None = None,
    output_dir: str = "output",
    output_format: str = "nifti",
    device: str = "auto",
    anatomy: str | None = None,
    model: str | None = None,
    overwrite: bool = False,
    config_file: str | None = None,
) -> str:
    """Interpolate the phases between two frames of a 4D series (the same workflow as configs/inference.json).

    Args:
        input: a 4D NIfTI file, a DICOM folder, or two 3D volumes as "['a.nii.gz','b.nii.gz']"; none runs the
            embedded demo case (a deterministic cardiac phantom).
        t: time point(s) in [0, 1], e.g. 0.5 or "[0.25,0.5,0.75]"; 0 is the start frame, 1 the end frame.
        num_frames: instead of --t, synthesise this many evenly spaced frames.
        start_frame: 0-based start frame of a 4D input (default: the first).
        end_frame: 0-based end frame (default: the last; negative counts from the end).
        upsample: instead of --t / --num_frames / --start_frame / --end_frame: the whole series K times finer in time,
            K - 1 new frames between every two consecutive acquired frames (writes upsampled_4d.nii.gz).
        cyclic: with --upsample, the series is one periodic cycle (cardiac or breathing; the default): new frames
            also between the last frame and the first. --cyclic False for a series that does not wrap around.
        output_dir: folder to create for the results (NIfTI, DICOM, montage.png, summary.json).
        output_format: nifti, dicom (DICOM input only) or both.
        device: cpu, cuda, or auto.
        anatomy: which shipped student: cardiac (``models/model.pt``, real ACDC, the default) or lung
            (``models/lung_model.pt``, trained on the lung 4D CT phantom only).
        model: weights file of the student (default: the one of ``anatomy``); overrides ``anatomy``.
        overwrite: replace output_dir if it exists.
        config_file: the inference config (default: configs/inference.json of this bundle).
    """
    overrides = {"input": input, "t": t, "num_frames": num_frames, "start_frame": start_frame,
                 "end_frame": end_frame, "upsample": upsample, "cyclic": cyclic, "output_dir": output_dir,
                 "output_format": output_format, "device": device, "overwrite": overwrite, "anatomy": anatomy,
                 "checkpoint": model}
    return str(run_config(config_file or ROOT / "configs" / "inference.json", overrides))
