"""Evaluation reports: metrics CSV, summary JSON and markdown, error maps and PSNR over t."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scripts.evaluation.metrics import IMAGE_METRICS, summarise
from scripts.utils.atomic import atomic_file

FIELD_METRICS = ("epe", "folding")


CSV_FIELDS = ("subject", "frame", "t", "method", *IMAGE_METRICS, *FIELD_METRICS)


# --- evaluation -------------------------------------------------------------------------------------------------------
@dataclass
class FigureSample:
    """What ``error_maps.png`` shows: the middle slice (X, Y) of the truth and of each method's prediction."""

    case: str
    frame: int
    t: float
    truth: np.ndarray
    preds: dict[str, np.ndarray]


def mid_slice(volume: torch.Tensor) -> np.ndarray:
    """(1, X, Y, Z) -> the (X, Y) slice at Z // 2 as a float32 array."""
    return volume[0, :, :, volume.shape[-1] // 2].float().cpu().numpy()


def summarise_rows(rows: Sequence[Mapping]) -> dict[str, dict]:
    """:func:`scripts.evaluation.metrics.summarise` of the image metrics, plus EPE and folding over the rows that have them
    (their count as ``n_truth``)."""
    summary = summarise(rows, IMAGE_METRICS)
    with_truth = [r for r in rows if r.get("epe") is not None]
    for name, values in summarise(with_truth, FIELD_METRICS).items():
        values["n_truth"] = values.pop("n")
        summary[name].update(values)
    return summary


def summary_table(summary: Mapping[str, Mapping]) -> str:
    """``summary.json`` as a markdown table: one row per method, mean +- std of each metric; EPE (voxels) and the
    folding fraction (%) where the data have a true displacement."""
    fields = [*IMAGE_METRICS, *(m for m in FIELD_METRICS if any(m in s for s in summary.values()))]
    digits = {"psnr": 2, "epe": 3, "folding": 4}
    header = ["method", *(f"{m.upper()}{' (%)' if m == 'folding' else ''}" for m in fields), "n", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in summary.items():
        cells = []
        for metric in fields:
            scale = 100.0 if metric == "folding" else 1.0
            d = digits.get(metric, 3)
            cells.append(f"{values[metric] * scale:.{d}f} ± {values[metric + '_std'] * scale:.{d}f}"
                         if metric in values else "-")
        lines.append("| " + " | ".join([name, *cells, str(values["n"]), f"{values.get('seconds', 0):.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def write_metrics_csv(rows: Sequence[Mapping], path: Path, fields: Sequence[str] = CSV_FIELDS) -> None:
    """A CSV of ``rows`` with the columns ``fields`` (default: ``metrics.csv``'s); a value a row lacks is left empty."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_summary(folder: Path, summary: Mapping, table: str) -> None:
    """``summary.json`` (``summary``) and ``summary.md`` (``table``, its markdown) in ``folder``, each atomically."""
    with atomic_file(folder / "summary.json") as path:
        path.write_text(json.dumps(summary, indent=2))
    with atomic_file(folder / "summary.md") as path:
        path.write_text(table)


def _canvas(width_px: int, height_px: int, dpi: int = 100) -> Figure:
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def write_error_maps(sample: FigureSample, path: Path, panel_px: int = 160) -> None:
    """Paper Fig. 2: row 1 the truth and each method's prediction (one grey window), row 2 the absolute error of
    each (one colour scale, 0 to the largest error of any method); axis 0 of the slice runs left to right."""
    names = list(sample.preds)
    errors = {name: np.abs(pred - sample.truth) for name, pred in sample.preds.items()}
    vmax = max(float(e.max()) for e in errors.values()) or 1.0
    figure = _canvas(panel_px * (len(names) + 1), 2 * panel_px + 40)
    figure.suptitle(f"{sample.case}, frame {sample.frame}, t = {sample.t:.3f} (middle slice)", fontsize=9)
    axes = figure.subplots(2, len(names) + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
    axes[0, 0].imshow(sample.truth.T, **grey)
    axes[0, 0].set_title("ground truth", fontsize=8)
    for col, name in enumerate(names, start=1):
        axes[0, col].imshow(sample.preds[name].T, **grey)
        axes[0, col].set_title(name, fontsize=8)
        image = axes[1, col].imshow(errors[name].T, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        axes[1, col].set_title(f"|error| mean {errors[name].mean():.3f}", fontsize=7)
    figure.colorbar(image, ax=axes[1, 0], fraction=0.5)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png")


def write_psnr_over_t(rows: Sequence[Mapping], path: Path, t_bins: int = 10) -> None:
    """Paper Fig. 3 as a curve: per method, the mean PSNR of the frames whose t falls in each of ``t_bins`` equal
    bins of [0, 1], drawn at the mean t of those frames (empty bins are left out)."""
    figure = _canvas(640, 420)
    ax = figure.add_subplot()
    edges = np.linspace(0.0, 1.0, t_bins + 1)
    for name in dict.fromkeys(r["method"] for r in rows):
        t = np.array([r["t"] for r in rows if r["method"] == name])
        psnr = np.array([r["psnr"] for r in rows if r["method"] == name])
        which = np.clip(np.digitize(t, edges) - 1, 0, t_bins - 1)
        used = [b for b in range(t_bins) if (which == b).any()]
        ax.plot([t[which == b].mean() for b in used], [psnr[which == b].mean() for b in used], marker="o", label=name)
    ax.set_xlabel("t (0 = I0, 1 = I1)")
    ax.set_ylabel("PSNR (dB), mean per t bin")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png")
