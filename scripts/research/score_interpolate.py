"""Score the user-facing command on real series: ``python -m scripts interpolate`` on each test patient's ED and ES.

The evaluation harness (:mod:`scripts.evaluation.evaluator`) scores the networks on the protocol grid. This verb checks what a
user gets instead: for every patient of an ACDC split it runs the command line exactly as documented,

    python -m scripts interpolate --input patientNNN_4d.nii.gz --start_frame ED --end_frame ES --t "[t1,...]"

on the native grid (no crop, no padding), reads the 4D NIfTI the command wrote, and scores each synthesised frame
against the acquired one, next to the linear blend of the same endpoints. Both are put on [0, 1] with the min-max of
the patient's whole series (the protocol's one scale per series), and PSNR has data range 1
(:func:`scripts.evaluation.metrics.psnr`).
Every frame of every patient weighs the same in the means, as in the evaluation harness.

    python -m scripts.research score_interpolate --dataset_dir D --output_dir cli_acdc

writes ``cli_acdc/scores.csv`` (one row per frame), ``cli_acdc/summary.json`` and ``cli_acdc/summary.md``, and keeps
each patient's interpolation output in ``cli_acdc/patientNNN/``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scripts.datasets.acdc import acdc_case, acdc_cases, series_file
from scripts.evaluation.metrics import psnr
from scripts.evaluation.reports import write_metrics_csv, write_summary
from scripts.io.nifti_read import read_nifti_4d
from scripts.transforms.intensity import IntensityScale
from scripts.utils.atomic import atomic_dir
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT

__all__ = ["interpolate_command", "score_case", "score_interpolate"]

logger = logging.getLogger(__name__)



def interpolate_command(series: Path, start: int, end: int, ts: Sequence[float], output_dir: Path,
                        model: str | None, device: str) -> list[str]:
    """The documented command line that interpolates ``ts`` between 0-based frames ``start`` and ``end``."""
    command = [sys.executable, "-m", "scripts", "interpolate", "--input", str(series), "--start_frame", str(start),
               "--end_frame", str(end), "--t", json.dumps([float(v) for v in ts]), "--output_dir", str(output_dir),
               "--device", device]
    return command + (["--model", str(model)] if model else [])


def score_case(series: np.ndarray, frames: Sequence[int], ts: Sequence[float], start: int, end: int,
               synthesised: np.ndarray, source: str) -> list[dict]:
    """PSNR of each synthesised frame and of the linear blend against the acquired frame.

    Args:
        series: ``(X, Y, Z, T)`` the patient's whole series, input units.
        frames, ts: the target frames and their times.
        start, end: the endpoint frames.
        synthesised: ``(X, Y, Z, N)`` what the command wrote for ``ts``, input units.
        source: named in errors.

    Returns:
        one dict per frame: ``frame``, ``t``, ``psnr_student``, ``psnr_blend`` (dB, data range 1).
    """
    if synthesised.shape != (*series.shape[:3], len(ts)):
        raise InputError(source, f"holds {synthesised.shape}, expected {(*series.shape[:3], len(ts))}")
    scale = IntensityScale.of(series, source)
    unit = scale.to_unit(series.astype(np.float32))
    pred = np.clip(scale.to_unit(synthesised.astype(np.float32)), 0, 1)
    rows = []
    for n, (frame, t) in enumerate(zip(frames, ts)):
        blend = (1 - t) * unit[..., start] + t * unit[..., end]
        rows.append({"frame": int(frame), "t": float(t),
                     "psnr_student": float(psnr(pred[..., n], unit[..., frame])[0]),
                     "psnr_blend": float(psnr(blend, unit[..., frame])[0])})
    return rows


def _mean(rows: Sequence[dict], key: str) -> float:
    return float(np.mean([row[key] for row in rows]))


def _summary_md(per_case: dict[str, list[dict]], rows: Sequence[dict]) -> str:
    lines = ["| patient | frames | student PSNR (dB) | blend PSNR (dB) | gain (dB) |", "|---|---|---|---|---|"]
    for case, case_rows in [*per_case.items(), ("all (equal weight per frame)", rows)]:
        student, blend = _mean(case_rows, "psnr_student"), _mean(case_rows, "psnr_blend")
        lines.append(f"| {case} | {len(case_rows)} | {student:.2f} | {blend:.2f} | {student - blend:+.2f} |")
    return "\n".join(lines) + "\n"


def score_interpolate(dataset_dir: str, output_dir: str = "score_interpolate", split: str = "test", model: str | None = None,
               device: str = "cpu", overwrite: bool = False) -> dict:
    """Run ``python -m scripts interpolate`` on every patient of an ACDC split and score it (module docstring).

    Args:
        dataset_dir: the ACDC ``training`` folder (``patientNNN/patientNNN_4d.nii.gz`` + ``Info.cfg``).
        output_dir: the folder to create for the scores and each patient's interpolation output.
        split: ``test`` (091-100), ``train`` or ``all``.
        model: student weights (default: the shipped cardiac student).
        device: passed to the command (``cpu``, ``cuda``, ``auto``).
        overwrite: replace ``output_dir`` if it exists.

    Returns:
        the summary: mean PSNR of the student and of the blend, their difference, frame and patient counts.
    """
    cases = acdc_cases(dataset_dir, split)
    per_case: dict[str, list[dict]] = {}
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        for folder in cases:
            case = acdc_case(folder)  # ED, ES and the frames between, checked against the 4D file
            series_path = series_file(folder)
            series = read_nifti_4d(series_path).array
            start, end = case.start, case.end
            frames, ts = [f for f, _ in case.targets], [t for _, t in case.targets]
            out = tmp / folder.name
            command = interpolate_command(series_path, start, end, ts, out, model, device)
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)  # -m finds scripts/ in cwd
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            written = json.loads((out / "summary.json").read_text())["outputs"]["nifti"][0]
            synthesised = read_nifti_4d(out / written).array
            per_case[folder.name] = score_case(series, frames, ts, start, end, synthesised, str(out / written))
            logger.info("%s: student %.2f dB, blend %.2f dB (%d frames)", folder.name,
                        _mean(per_case[folder.name], "psnr_student"), _mean(per_case[folder.name], "psnr_blend"),
                        len(frames))
        rows = [{"case": case, **row} for case, case_rows in per_case.items() for row in case_rows]
        summary = {"psnr_student": _mean(rows, "psnr_student"), "psnr_blend": _mean(rows, "psnr_blend"),
                   "frames": len(rows), "patients": len(per_case), "model": model or "models/model.pt"}
        summary["gain_db"] = summary["psnr_student"] - summary["psnr_blend"]
        write_metrics_csv(rows, tmp / "scores.csv", fields=list(rows[0]))
        write_summary(tmp, summary, _summary_md(per_case, rows))
    logger.info("interpolate on %d patients, %d frames: student %.2f dB, blend %.2f dB (%+.2f dB); wrote %s",
                summary["patients"], summary["frames"], summary["psnr_student"], summary["psnr_blend"],
                summary["gain_db"], output_dir)
    return summary
