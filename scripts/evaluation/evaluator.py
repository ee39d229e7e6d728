"""The evaluation workflow: every method on the same test samples, the paper's metrics, tables and figures.

``configs/evaluate.json`` builds an :class:`Evaluator` and calls :meth:`Evaluator.run`; ``python -m scripts evaluate``
(:func:`evaluate`) runs the same config with its arguments as overrides. Outputs, in one folder that appears
atomically (:func:`scripts.utils.atomic.atomic_dir`; an existing one is refused unless ``overwrite``):

- ``metrics.csv``: one row per (subject, frame, method): ``t``, PSNR, NCC, SSIM, NMSE (:mod:`scripts.evaluation.metrics`) and, on
  phantoms, ``epe`` (mean endpoint error of the method's displacement I0 -> I_t against the truth, voxels) and
  ``folding`` (fraction of voxels with det(Jacobian) <= 0); empty where a method has no displacement or no truth;
- ``summary.json``: ``{method: {psnr, psnr_std, ..., n, seconds[, epe, folding, ..., n_truth]}}``, each
  (subject, frame) weighing the same (:func:`scripts.evaluation.metrics.summarise`); ``seconds`` is the method's total time;
  ``summary.md``, the same as a markdown table (mean ± std);
- ``error_maps.png`` (paper Fig. 2): the middle slice of one subject at the frame nearest t = 0.5, the truth and each
  method's prediction over its absolute error;
- ``psnr_over_t.png`` (paper Fig. 3): mean PSNR against t (bins of t over all subjects) per method.

Methods (:class:`~scripts.evaluation.methods.Method`): ``blend``; ``vm_linear`` (VoxelMorph velocities scaled linearly,
:mod:`scripts.baselines.voxelmorph`); ``elastix_linear`` (optional extra ``itk-elastix``); ``teacher`` (sees I_t);
``student`` (ours) and any named student variants (ablations). A method that cannot run here (weights file missing,
optional package absent) is skipped with a logged warning. All methods see the same preprocessed samples. Per subject,
each method prepares once (registration fields, once for every t) and the student encodes I0 and I1 once
(``Student.interpolate_series``). Predictions are clipped to [0, 1] before scoring, the range of the data and of the
metrics' data range (networks and warps can overshoot slightly).

Cases: :mod:`scripts.evaluation.cases`; reports: :mod:`scripts.evaluation.reports`. The paper's Tables 2 and 3 train
and evaluate student variants through this workflow: :mod:`scripts.research.ablations`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scripts.evaluation.cases import Case, case_to, eval_cases
from scripts.evaluation.methods import Method, MethodUnavailable
from scripts.evaluation.metrics import endpoint_error, folding_fraction, image_metrics
from scripts.evaluation.reports import (
    FigureSample,
    mid_slice,
    summarise_rows,
    summary_table,
    write_error_maps,
    write_metrics_csv,
    write_psnr_over_t,
    write_summary,
)
from scripts.utils.args import parse_device
from scripts.utils.atomic import atomic_dir
from scripts.utils.config import run_config
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT

logger = logging.getLogger(__name__)


class Evaluator:
    """Score ``methods`` on every subject of ``dataset`` and write the outputs (module docstring).

    Args:
        dataset: an (I0, I1, It, t) dataset (:func:`scripts.datasets.registry.make_dataset`), a case's items consecutive.
        methods: :class:`Method` objects with their ``name`` set (:func:`select_methods`).
        device: where the methods run; metrics are computed on the CPU in float64/float32 as :mod:`scripts.evaluation.metrics`.
        truth_dir: ACDC-layout folder whose phantom cases carry ``truth/`` (EPE and folding), or None.
        figure_subject: the case shown in ``error_maps.png`` (default: the first).
        t_bins: number of equal bins of t in ``psnr_over_t.png``.
    """

    def __init__(self, dataset, methods: Sequence[Method], device: str | torch.device = "cpu",
                 truth_dir: str | os.PathLike | None = None, figure_subject: str | None = None, t_bins: int = 10):
        self.dataset = dataset
        self.methods = list(methods)
        self.device = torch.device(device)
        self.truth_dir = truth_dir
        self.figure_subject = figure_subject
        self.t_bins = t_bins

    def _ready_methods(self) -> list[Method]:
        ready = []
        for method in self.methods:
            try:
                method.setup(self.device)
            except MethodUnavailable as err:
                logger.warning("skipping method %s: %s", method.name, err)
                continue
            ready.append(method)
        if not ready:
            raise InputError("methods", "none of the methods can run here (see the warnings above)")
        return ready

    @torch.no_grad()
    def score(self) -> tuple[list[dict], dict[str, float], FigureSample | None]:
        """Run every ready method on every subject: metric rows, seconds per method, and the figure's sample."""
        methods = self._ready_methods()
        rows: list[dict] = []
        seconds = dict.fromkeys((m.name for m in methods), 0.0)
        figure = None
        for subject in tqdm(eval_cases(self.dataset, self.truth_dir), desc="evaluate", unit="subject", disable=None):
            subject = case_to(subject, self.device)
            show = figure is None and self.figure_subject in (None, subject.case)
            k_show = int(torch.argmin((subject.ts - 0.5).abs()))
            if show:
                figure = FigureSample(subject.case, subject.frames[k_show], float(subject.ts[k_show]),
                                       mid_slice(subject.targets[k_show]), {})
            psnr = {}
            for method in methods:
                began = time.perf_counter()  # the method's own work: preparing and synthesising, not scoring
                state = method.prepare(subject)
                preds = method.predict(subject, state).float().clamp(0, 1).cpu()
                seconds[method.name] += time.perf_counter() - began
                fields = method.displacement(subject, state) if subject.truth is not None else None
                mine = self._rows(method.name, subject, preds, fields)
                rows.extend(mine)
                psnr[method.name] = np.mean([r["psnr"] for r in mine])
                if show:
                    figure.preds[method.name] = mid_slice(preds[k_show])
            logger.info("%s: %d frames; mean PSNR %s", subject.case, len(subject.frames),
                        ", ".join(f"{name} {value:.2f} dB" for name, value in psnr.items()))
        if self.figure_subject is not None and figure is None:
            raise InputError("figure_subject", f"case {self.figure_subject!r} is not in the evaluated split")
        return rows, seconds, figure

    @staticmethod
    def _rows(name: str, subject: Case, preds: torch.Tensor, fields: torch.Tensor | None) -> list[dict]:
        targets = subject.targets.cpu()
        rows = []
        for k, frame in enumerate(subject.frames):
            row = {"subject": subject.case, "frame": frame, "t": float(subject.ts[k]), "method": name,
                   **image_metrics(preds[k : k + 1], targets[k : k + 1])}
            if fields is not None:
                phi, truth = fields[k : k + 1].cpu(), subject.truth[k : k + 1].cpu()
                row["epe"] = float(endpoint_error(phi, truth)[0])
                row["folding"] = float(folding_fraction(phi)[0])
            rows.append(row)
        return rows

    def run(self, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Evaluate and write ``output_dir`` (module docstring); refuses an existing folder unless ``overwrite``."""
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            rows, seconds, figure = self.score()
            summary = summarise_rows(rows)
            for name, spent in seconds.items():
                summary[name]["seconds"] = round(spent, 3)
            write_metrics_csv(rows, tmp / "metrics.csv")
            write_summary(tmp, summary, summary_table(summary))
            write_error_maps(figure, tmp / "error_maps.png")
            write_psnr_over_t(rows, tmp / "psnr_over_t.png", self.t_bins)
            for name, values in summary.items():
                logger.info("%-16s PSNR %.2f  NCC %.3f  SSIM %.3f  NMSE %.3f  (n=%d)", name, values["psnr"],
                            values["ncc"], values["ssim"], values["nmse"], values["n"])
        logger.info("wrote %s", output_dir)
        return Path(output_dir)


# --- command line -----------------------------------------------------------------------------------------------------
def evaluate(
    dataset_dir: str,
    dataset: str = "acdc",
    output_dir: str = "eval",
    methods: Sequence[str] | None = None,
    variants: Mapping[str, Mapping] | None = None,
    split: str = "test",
    spatial_size: Sequence[int] | None = None,
    channels: Sequence[int] | None = None,
    model: str | None = None,
    teacher: str | None = None,
    voxelmorph: str | None = None,
    device: str | None = None,
    overwrite: bool = False,
    config_file: str | None = None,
) -> str:
    """Score the interpolation methods on a dataset's test split (the workflow of configs/evaluate.json).

    Args:
        dataset_dir: the dataset folder (ACDC layout, 4D-Lung DICOM, or a folder of 4D NIfTI).
        dataset: its kind: acdc, lung4d or nifti4d.
        output_dir: folder to create for metrics.csv, summary.json, error_maps.png, psnr_over_t.png.
        methods: which of blend, vm_linear, elastix_linear, teacher, student (default: the config's list).
        variants: extra students {name: {flag: value, ..., "weights": file}}, e.g. ablation checkpoints.
        split: train, test or all.
        spatial_size: protocol grid X,Y,Z (default: the config's, 128,128,32).
        channels: encoder channels of the teacher and the students (default: the config's, 16,32,64,64).
        model, teacher, voxelmorph: weights files (default: models/model.pt, models/teacher.pt, models/voxelmorph.pt).
        device: cpu or cuda (default: cuda when available).
        overwrite: replace output_dir if it exists.
        config_file: the evaluation config (default: configs/evaluate.json of this bundle).
    """
    overrides = {
        "dataset_dir": dataset_dir, "dataset": dataset, "output_dir": output_dir, "methods": methods,
        "variants": variants, "split": split, "spatial_size": spatial_size, "channels": channels,
        "student_weights": model,
        "teacher_weights": teacher, "vm_weights": voxelmorph, "overwrite": overwrite,
    }
    trusted = {} if device is None else {"device": f"$torch.device({parse_device(device)!r})"}
    return str(run_config(config_file or ROOT / "configs" / "evaluate.json", overrides, trusted))
