"""Training curves of one or more runs from their TensorBoard logs, as one PNG (for the model card).

    python -m scripts.research plot_curves --runs "{'teacher': 'runs/teacher', 'student': 'runs/student'}" --out curves.png
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.utils.atomic import atomic_file


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of the TensorBoard event files in ``run_dir``: tag -> (steps, values), in step order."""
    found: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(run_dir)):
        if not name.startswith("events.out.tfevents."):
            continue
        acc = EventAccumulator(os.path.join(run_dir, name))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: tuple(np.array(v) for v in zip(*sorted(points))) for tag, points in found.items()}


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_curves(runs: dict[str, str], out: str, window: int = 100, overwrite: bool = False) -> str:
    """Plot the total training loss (moving average over ``window`` iterations) and the validation PSNR of each run.

    Args:
        runs: {label: run folder with TensorBoard event files}.
        out: the PNG to write.
        window: iterations in the moving average of the loss.
        overwrite: replace ``out``.
    """
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, psnr_ax = fig.subplots(1, 2)
    for label, folder in runs.items():
        scalars = read_scalars(folder)
        loss = scalars.get("loss")  # the total, logged by scripts.training.adapters.loss_terms
        if loss is not None:
            steps, values = loss
            smooth = _smooth(values, window)
            loss_ax.plot(steps[len(steps) - len(smooth):], smooth, label=label)
        if "val_psnr" in scalars:
            psnr_ax.plot(*scalars["val_psnr"], marker="o", label=label)
    loss_ax.set(title=f"training loss (moving average, {window} it)", xlabel="iteration", yscale="log")
    psnr_ax.set(title="validation PSNR (test split)", xlabel="epoch", ylabel="dB")
    for ax in (loss_ax, psnr_ax):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return out

