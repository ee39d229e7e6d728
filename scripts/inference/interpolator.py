"""INTERPDOC"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from scripts.evaluation.metrics import psnr
from scripts.inference.inputs import load_input
from scripts.inference.times import resolve_times
from scripts.io.dicom_write import write_derived_series
from scripts.io.montage import write_montage
from scripts.io.nifti_write import write_nifti_frames
from scripts.io.time_labels import t_label
from scripts.transforms.intensity import IntensityScale
from scripts.utils.atomic import atomic_dir, atomic_file
from scripts.utils.checkpoint import load_weights
from scripts.utils.config import run_config
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.memory import check_memory
from scripts.utils.paths import ROOT

logger = logging.getLogger(__name__)


OUTPUT_FORMATS = ("nifti", "dicom", "both")


class SeriesInterpolator:
    """The student, its weights and device, ready to interpolate series.

    Args:
        network: a :class:`scripts.networks.Student` (any ablation), moved to ``device`` here.
        checkpoint: its weights (a state dict, read with ``weights_only=True``).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or ``"auto"`` (CUDA when available).
        amp: autocast (float16) on CUDA.
        max_batch: how many t values go through the decoder at once (memory vs speed); None lets the network choose
            (one at a time on CPU, where that is fastest; all at once on a GPU).
    """

    def __init__(self, network: torch.nn.Module, checkpoint: str | os.PathLike, device="auto", amp: bool = False,
                 max_batch: int | None = None):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.network = load_weights(network, checkpoint).to(self.device).eval()
        self.checkpoint = str(checkpoint)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.max_batch = max_batch

    @torch.no_grad()
    def synthesise(self, i0: np.ndarray, i1: np.ndarray, ts: Sequence[float]) -> np.ndarray:
        """(X, Y, Z) endpoints in [0, 1] and N time points -> (X, Y, Z, N) synthesised volumes in [0, 1]."""
        check_memory(i0.shape, len(ts), self.max_batch, self.device)
        i0_t, i1_t = (torch.as_tensor(v, dtype=torch.float32, device=self.device)[None, None] for v in (i0, i1))
        times = torch.as_tensor(ts, dtype=torch.float32, device=self.device)
        with torch.autocast(self.device.type, enabled=self.amp):
            frames = self.network.interpolate_series(i0_t, i1_t, times, max_batch=self.max_batch)
        return frames[:, 0].float().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy()

    def run(
        self,
        input: str | Sequence[str] | None = None,
        t: float | Sequence[float] | str | None = None,
        num_frames: int | None = None,
        start_frame: int | None = None,
        end_frame: int | None = None,
        output_dir: str | os.PathLike = "output",
        output_format: str = "nifti",
        overwrite: bool = False,
    ) -> Path:
        """Interpolate one series and write the outputs to ``output_dir`` (see the module docstring).

        Args:
            input: a 4D NIfTI file, a DICOM folder, a list of two 3D volumes, or None for the embedded demo case.
            t: time point(s) in [0, 1] between the start (0) and end (1) frame.
            num_frames: instead of ``t``, this many evenly spaced time points (default: 1, t = 0.5).
            start_frame, end_frame: 0-based endpoint frames of a 4D input (default first and last; the demo uses its
                ED and ES and, without ``t``/``num_frames``, the times of the true frames in between).
            output_dir: the folder to create; refused if it exists unless ``overwrite``.
            output_format: ``nifti``, ``dicom`` (DICOM inputs) or ``both``.

        Returns:
            ``output_dir``.
        """
        if output_format not in OUTPUT_FORMATS:
            raise InputError("--output_format", f"must be one of {OUTPUT_FORMATS}, got {output_format!r}")
        if Path(output_dir).exists() and not overwrite:  # before the work, not only when writing
            raise OutputExistsError(output_dir)
        loaded = load_input(input, start_frame, end_frame)
        if output_format != "nifti" and loaded.series.dicom_template is None:
            raise InputError("--output_format", f"{output_format!r} needs a DICOM input; {loaded.series.source} is not")
        if t is None and num_frames is None and loaded.truth_times is not None:
            t = loaded.truth_times
        ts = resolve_times(t, num_frames)
        series = loaded.series
        i0, i1 = series.array[..., loaded.start], series.array[..., loaded.end]
        scale = IntensityScale.of(np.stack([i0, i1], axis=-1), series.source)
        logger.info("%s: grid %s, frames %d -> %d, t = %s on %s", series.source, i0.shape, loaded.start, loaded.end,
                    [round(v, 4) for v in ts], self.device)
        started = time.perf_counter()
        frames_unit = self.synthesise(scale.to_unit(i0), scale.to_unit(i1), ts)
        seconds = time.perf_counter() - started
        logger.info("synthesised %d frames in %.2f s (%.2f s per frame)", len(ts), seconds, seconds / len(ts))
        frames = scale.from_unit(frames_unit).astype(np.float32)
        summary = {
            "input": series.source, "start_frame": loaded.start, "end_frame": loaded.end, "t": ts,
            "grid": list(i0.shape), "spacing_mm": list(series.spacing), "device": str(self.device),
            "checkpoint": self.checkpoint, "seconds": round(seconds, 3), "outputs": {},
        }
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            if output_format in ("nifti", "both"):
                nifti = write_nifti_frames(frames, series.affine, tmp, ts)
                summary["outputs"]["nifti"] = [os.path.relpath(p, tmp) for p in (nifti.series, *nifti.volumes)]
            if output_format in ("dicom", "both"):
                summary["outputs"]["dicom"] = [self._write_dicom(frames[..., n], series, tmp, v, n)
                                               for n, v in enumerate(ts)]
            truth = None if loaded.truth is None else scale.to_unit(loaded.truth)
            write_montage(scale.to_unit(i0), frames_unit, scale.to_unit(i1), ts, tmp / "montage.png", truth=truth)
            summary["outputs"]["montage"] = "montage.png"
            if truth is not None:
                summary["demo"] = demo_scores(scale.to_unit(i0), scale.to_unit(i1), frames_unit, truth, ts)
                logger.info("demo: %s", summary["demo"])
            with atomic_file(tmp / "summary.json") as path:
                path.write_text(json.dumps(summary, indent=2))
        logger.info("wrote %s", output_dir)
        return Path(output_dir)

    @staticmethod
    def _write_dicom(volume: np.ndarray, series, out: Path, t: float, index: int) -> str:
        name = f"dicom_{t_label(t)}"
        write_derived_series(volume, series.affine, out / name, series.dicom_template,
                             series_description=f"TMSDF-KD interpolated t={t:.3f}", series_number=9000 + index)
        return name


def demo_scores(i0: np.ndarray, i1: np.ndarray, frames: np.ndarray, truth: np.ndarray,
                ts: Sequence[float]) -> dict[str, float]:
    """Mean PSNR (dB, data range 1) of the synthesised frames and of the linear blend against the true frames."""

    ours = [float(psnr(frames[..., n], truth[..., n])[0]) for n in range(len(ts))]
    blend = [float(psnr((1 - v) * i0 + v * i1, truth[..., n])[0]) for n, v in enumerate(ts)]
    return {"psnr_student": float(np.mean(ours)), "psnr_blend": float(np.mean(blend))}


def interpolate(
    input: str | Sequence[str] | None = None,
    t: float | Sequence[float] | str | None = None,
    num_frames: int | None = None,
    start_frame: int | None = None,
    end_frame: int | None = None,
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
                 "end_frame": end_frame, "output_dir": output_dir, "output_format": output_format, "device": device,
                 "overwrite": overwrite, "anatomy": anatomy, "checkpoint": model}
    return str(run_config(config_file or ROOT / "configs" / "inference.json", overrides))
