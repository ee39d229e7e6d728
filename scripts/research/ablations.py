"""The paper's Table 2 and Table 3 ablations: train every row at a reduced budget, evaluate them side by side."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.evaluation.evaluator import evaluate
from scripts.utils.atomic import atomic_file
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.paths import ROOT

logger = logging.getLogger(__name__)


# Ablation rows (paper Tables 2 and 3) as train_student.json overrides: network flags + loss flags. "full" is the
# last row of both tables (one training).
NETWORK_FLAGS = ("use_dfm", "time_modulation", "use_refinement", "multi_scale_dfm")


_FULL = {"use_dfm": True, "time_modulation": True, "use_refinement": True, "multi_scale_dfm": True,
         "use_align": True, "use_distill": True}


ABLATIONS = {
    "none": {**_FULL, "use_dfm": False, "time_modulation": False, "use_refinement": False, "multi_scale_dfm": False},
    "dfm": {**_FULL, "time_modulation": False, "use_refinement": False, "multi_scale_dfm": False},
    "dfm_tm": {**_FULL, "use_refinement": False, "multi_scale_dfm": False},
    "dfm_tm_ref": {**_FULL, "multi_scale_dfm": False},
    "full": _FULL,
    "recon": {**_FULL, "use_align": False, "use_distill": False},
    "recon_align": {**_FULL, "use_distill": False},
}


TABLES = {
    "Table 2 (modules)": (("DFM", "use_dfm"), ("TM_DFGen", "time_modulation"), ("Ref.", "use_refinement"),
                          ("MsDFM", "multi_scale_dfm")),
    "Table 3 (losses)": (("L_recon", None), ("L_align", "use_align"), ("L_distill", "use_distill")),
}


_TABLE_ROWS = {"Table 2 (modules)": ("none", "dfm", "dfm_tm", "dfm_tm_ref", "full"),
               "Table 3 (losses)": ("recon", "recon_align", "full")}


TEACHER_CONFIGS = ("train_teacher.json",)
STUDENT_CONFIGS = ("train_teacher.json", "train_student.json")  # the student config holds what differs


def _train(configs: Sequence[str], overrides: Mapping[str, object]) -> None:
    """Run this bundle's training configs (merged in order, from any working directory) with ``overrides``."""
    from monai.bundle import run

    run(config_file=[str(ROOT / "configs" / name) for name in configs], **{"bundle_root": str(ROOT), **overrides})


def ablation_table(summary: Mapping[str, Mapping], rows: Sequence[str] | None = None) -> str:
    """The Table 2 / Table 3 markdown of ``summary`` (as ``summary.json``): flags as check marks, then the metrics."""
    lines = []
    for title, columns in TABLES.items():
        names = [n for n in _TABLE_ROWS[title] if n in summary and (rows is None or n in rows)]
        if not names:
            continue
        header = ["row", *(c for c, _ in columns), "PSNR", "NCC", "SSIM", "NMSE", "n"]
        lines += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name in names:
            marks = ["✓" if key is None or ABLATIONS[name][key] else "" for _, key in columns]
            s = summary[name]
            numbers = [f"{s['psnr']:.2f}", f"{s['ncc']:.3f}", f"{s['ssim']:.3f}", f"{s['nmse']:.3f}", str(s["n"])]
            lines.append("| " + " | ".join([name, *marks, *numbers]) + " |")
        lines.append("")
    return "\n".join(lines)


def row_overrides(name: str) -> dict[str, object]:
    """The overrides of the student's training configs of ablation row ``name``: its flags and, without ``L_distill``,
    no frozen teacher in the loop (``"$None"``: monai's ``run`` drops overrides whose value is None)."""
    flags = dict(ABLATIONS[name])
    if not flags["use_distill"]:
        flags.update({"train#inferer#teacher": "$None", "train#prepare_batch#with_teacher": False})
    return flags


def ablations(
    dataset_dir: str,
    dataset: str = "acdc",
    epochs: int = 20,
    epoch_length: int | None = None,
    runs_dir: str = "runs",
    rows: Sequence[str] | None = None,
    teacher: str | None = None,
    spatial_size: Sequence[int] | None = None,
    channels: Sequence[int] | None = None,
    device: str | None = None,
    learning_rate: float | None = None,
    lambda_r: float | None = None,
    test_dataset_dir: str | None = None,
    overwrite: bool = False,
) -> str:
    """Train the ablation rows of paper Tables 2 and 3 at a reduced budget, evaluate them, write one table.

    Each row is ``configs/train_student.json`` with its flags (``ABLATIONS``), ``--num_epochs epochs`` and
    ``--output_dir <runs_dir>/ablation_<row>``; a row whose ``model.pt`` exists is not trained again (and an interrupted
    one resumes from its checkpoint). The rows share one teacher: ``teacher`` if given, else
    ``configs/train_teacher.json`` trained for ``epochs`` into ``<runs_dir>/ablation_teacher``. Rows without
    ``L_distill`` run without the teacher. Then every row is evaluated as a student variant beside ``blend``
    (``<runs_dir>/ablation_eval``) and the tables go to ``<runs_dir>/ablations.md``.

    Args:
        dataset_dir, dataset: the training/evaluation data (as for training).
        epochs: epochs per training (the paper trains 200).
        epoch_length: iterations per epoch (default: one pass over the training split).
        runs_dir: parent folder of the runs.
        rows: a subset of ``ABLATIONS`` (default: all).
        teacher: a trained teacher's weights (skips training one).
        spatial_size, channels: protocol grid and encoder channels (default: the configs').
        device: cpu or cuda (default: cuda when available).
        learning_rate: Adam's learning rate (default: the configs' 1e-4).
        lambda_r: weight of the diffusion regulariser (default: the configs' 0.01).
        test_dataset_dir: evaluate on every case of this folder (e.g. phantoms of another seed) instead of the test
            split of ``dataset_dir``.
        overwrite: replace the evaluation folder and the table if they exist (trained rows are kept).

    Returns:
        the path of the markdown table.
    """
    rows = list(ABLATIONS) if rows is None else list(rows)
    unknown = [r for r in rows if r not in ABLATIONS]
    if unknown:
        raise InputError("rows", f"unknown {unknown}; choose from {list(ABLATIONS)}")
    runs = Path(runs_dir).resolve()
    table_path = runs / "ablations.md"
    if table_path.exists() and not overwrite:  # checked before hours of training, not only when writing it
        raise OutputExistsError(table_path)
    # no validation during training: every row keeps its last weights, so none is picked on the test split
    common = {"dataset_dir": str(Path(dataset_dir).resolve()), "dataset": dataset, "num_epochs": int(epochs),
              "val_interval": int(epochs) + 1}
    optional = {"spatial_size": spatial_size and list(spatial_size), "channels": channels and list(channels),
                "epoch_length": epoch_length, "device": device and f"$torch.device({device!r})",
                "learning_rate": learning_rate, "lambda_r": lambda_r}
    common.update({key: value for key, value in optional.items() if value is not None})
    if test_dataset_dir is None:
        test_dir, split = common["dataset_dir"], "test"
    else:  # every case of another folder; the configs' (unused) validation set must exist too: the same folder
        test_dir, split = str(Path(test_dataset_dir).resolve()), "all"
        common.update({"val_dataset_dir": test_dir, "val_split": split})
    if teacher is None:
        teacher_dir = runs / "ablation_teacher"
        teacher = teacher_dir / "teacher.pt"
        if not teacher.is_file():
            logger.info("ablations: training the shared teacher (%d epochs) in %s", epochs, teacher_dir)
            _train(TEACHER_CONFIGS, {**common, "output_dir": str(teacher_dir), "weights_file": str(teacher)})
    variants = {}
    for name in rows:
        flags = ABLATIONS[name]
        out = runs / f"ablation_{name}"
        weights = out / "model.pt"
        if weights.is_file():
            logger.info("ablations: %s already trained (%s)", name, weights)
        else:
            logger.info("ablations: training %s (%d epochs) in %s", name, epochs, out)
            _train(STUDENT_CONFIGS, {**common, **row_overrides(name), "output_dir": str(out),
                                          "weights_file": str(weights), "teacher_weights": str(teacher)})
        variants[name] = {**{k: flags[k] for k in NETWORK_FLAGS}, "weights": str(weights)}
    eval_dir = evaluate(test_dir, dataset=dataset, output_dir=str(runs / "ablation_eval"), methods=["blend"],
                        variants=variants, split=split, spatial_size=spatial_size, channels=channels, device=device,
                        overwrite=overwrite)
    summary = json.loads((Path(eval_dir) / "summary.json").read_text())
    with atomic_file(table_path, overwrite=overwrite) as tmp:
        tmp.write_text(f"# Ablations ({epochs} epochs, {dataset} {common['dataset_dir']}, tested on {test_dir})\n\n"
                       f"blend: PSNR {summary['blend']['psnr']:.2f}\n\n" + ablation_table(summary, rows))
    logger.info("wrote %s", table_path)
    return str(table_path)
