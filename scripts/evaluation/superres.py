"""Temporal super-resolution of whole series: keep every k-th frame, synthesise the rest, score the dropped frames.

The job a user brings most often is a whole cine made finer, not one ED -> ES pair. For each test series of
``T`` frames and each factor ``k`` (default 2 and 4):

- the acquired frames are ``0, k, 2k, ...``; every other frame is dropped;
- each dropped frame ``f`` is synthesised from its two acquired neighbours ``a < f < c`` at ``t = (f - a) / (c - a)``
  (the student at the motion clock's time for it, as ``interpolate --upsample`` makes a cine's frames, knowing where
  ``a`` and ``c`` lie in the cycle: ``a / T``, ``c / T``);
  the frames after the last acquired one lie between it and frame 0 of the next cycle (``cyclic=True``, a periodic
  cine; their gap is ``T - a``) or are not scored (``cyclic=False``);
- each method (the blend, the shipped student, any student variant) is scored against the true dropped frames with
  the evaluation's image metrics (PSNR with peak 1 on the protocol series, which is min-max scaled to [0, 1]).

Results: ``metrics.csv`` (one row per factor, method, series, frame), ``summary.json`` with, per factor and method,
the pooled means (every dropped frame weighing the same), the per-series mean PSNR, and how many series fall below the
blend; ``summary.md`` (tables), ``psnr_by_case_x<k>.png`` (PSNR per series, one line per method).

``grid="native"`` (``--grid native``) scores the same frames the way ``interpolate --upsample K`` makes them: each
series at its own resolution and spacing, the student through the motion region, the PSNR also over the moving region
(:mod:`scripts.evaluation.superres_native`).

Command line::

    python -m scripts superres --dataset_dir /data/ACDC/training --output_dir superres \\
        [--factors "[2,4]"] [--variants "{'cycle': {'blend_candidate': True, 'weights': 'runs/cycle/model.pt'}}"]
    python -m scripts superres --dataset nifti4d --dataset_dir cines/ --split all --grid native \\
        [--motion_region False] --output_dir superres_native
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scripts.datasets.dropped_frames import acquired_pairs, series_cases
from scripts.evaluation import superres_native as native
from scripts.evaluation.cases import Case
from scripts.evaluation.methods import (
    Blend,
    ElastixLinear,
    Method,
    StudentMethod,
    VoxelMorphLinear,
    ready_methods,
    select_methods,
)
from scripts.evaluation.metrics import IMAGE_METRICS, image_metrics
from scripts.evaluation.reports import _canvas, write_metrics_csv, write_summary
from scripts.inference.warp_choice import span_fraction
from scripts.networks.neighbours import pair_context
from scripts.utils.args import parse_bool, parse_choice, parse_int, parse_path, parse_shape
from scripts.utils.atomic import atomic_dir, atomic_file
from scripts.utils.checkpoint import check_weights_file
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT

__all__ = ["acquired_pairs", "score_superres", "series_cases", "summarise_superres", "superres"]

logger = logging.getLogger(__name__)

FIELDS = ("factor", "subject", "frame", "t", "method", *IMAGE_METRICS)


def _subjects(name: str, series: np.ndarray, factor: int, cyclic: bool) -> list[Case]:
    """One :class:`Case` per acquired pair of ``series`` ``(X, Y, Z, T)``."""
    volumes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(series, -1, 0)))[:, None]  # (T, 1, X, Y, Z)
    num_frames = volumes.shape[0]
    span = span_fraction(0, 1, len(range(0, num_frames, factor)))  # consecutive frames of the kept series
    subjects = []
    for a, c, dropped in acquired_pairs(num_frames, factor, cyclic):
        around = pair_context(a, num_frames, factor, cyclic)
        context = None if around is None else torch.stack([volumes[around[0]], volumes[around[1]]])
        subjects.append(Case(
            case=name, i0=volumes[a][None], i1=volumes[c % num_frames][None],
            targets=volumes[dropped], ts=torch.tensor([(f - a) / (c - a) for f in dropped], dtype=torch.float32),
            frames=dropped, span=span, context=context, phases=(a / num_frames, c / num_frames),
        ))
    return subjects


@torch.no_grad()
def score_superres(cases: Sequence[tuple[str, callable]], methods: Sequence[Method], factors: Sequence[int] = (2, 4),
                   cyclic: bool = True) -> list[dict]:
    """Score ``methods`` (set up already) on every series and factor: one row per factor, method, series and frame.

    Each subject carries its ``span`` (consecutive frames of the ``ceil(T / factor)`` kept), so a student with a
    ``warp_choice`` warps as ``interpolate --upsample`` would on the kept frames."""
    rows = []
    for name, load in tqdm(cases, desc="superres", unit="series", disable=None):
        series = load()
        for factor in factors:
            psnr = defaultdict(list)
            for subject in _subjects(name, series, factor, cyclic):
                for method in methods:
                    preds = method.predict(subject, method.prepare(subject)).float().clamp(0, 1).cpu()
                    for k, frame in enumerate(subject.frames):
                        metrics = image_metrics(preds[k : k + 1], subject.targets[k : k + 1])
                        rows.append({"factor": factor, "subject": name, "frame": frame, "t": float(subject.ts[k]),
                                     "method": method.name, **metrics})
                        psnr[method.name].append(metrics["psnr"])
            logger.info("%s x%d: %s", name, factor,
                        ", ".join(f"{m} {np.mean(v):.2f} dB" for m, v in psnr.items()))
    return rows


def summarise_superres(rows: Sequence[Mapping], reference: str = "blend",
                       metrics: Sequence[str] = IMAGE_METRICS) -> dict:
    """Per factor and method: pooled mean and std of each of ``metrics`` over the dropped frames, the mean PSNR per
    series, and (beside ``reference``) the pooled gain and the series below it; with ``psnr_region`` among
    ``metrics`` (native grid) the same three for the moving region's PSNR.

    Returns:
        ``{"x2": {method: {"psnr": .., "psnr_std": .., ..., "n": frames, "per_case": {case: psnr},
        "gain_db": .., "cases_below": [..]}}}``; plus ``per_case_region``, ``gain_region_db`` and
        ``cases_below_region`` with ``psnr_region``.
    """
    ranked = [m for m in metrics if m.startswith("psnr")]  # psnr -> per_case, psnr_region -> per_case_region
    summary: dict = {}
    for factor in sorted({int(r["factor"]) for r in rows}):
        mine = [r for r in rows if int(r["factor"]) == factor]
        table = {}
        for method in dict.fromkeys(r["method"] for r in mine):
            own = [r for r in mine if r["method"] == method]
            entry = {}
            for metric in metrics:
                values = np.array([float(r[metric]) for r in own])
                entry[metric], entry[f"{metric}_std"] = float(values.mean()), float(values.std())
            entry["n"] = len(own)
            cases = dict.fromkeys(r["subject"] for r in own)
            for metric in ranked:
                entry[f"per_case{metric[4:]}"] = {
                    c: float(np.mean([float(r[metric]) for r in own if r["subject"] == c])) for c in cases}
            table[method] = entry
        if reference in table:
            base = table[reference]
            for method, entry in table.items():
                for metric in ranked:
                    suffix, per_case = metric[4:], f"per_case{metric[4:]}"
                    entry[f"gain{suffix}_db"] = entry[metric] - base[metric]
                    entry[f"cases_below{suffix}"] = [c for c, v in entry[per_case].items() if v < base[per_case][c]]
        summary[f"x{factor}"] = table
    return summary


def summary_markdown(summary: Mapping) -> str:
    """The pooled table and the per-series PSNR table of every factor, in markdown (with the moving region's PSNR
    beside the whole volume's where the rows have it)."""
    lines = []
    for factor, table in summary.items():
        region = all("psnr_region" in e for e in table.values())
        header = "| method | PSNR (dB) | SSIM | NCC | NMSE | gain over blend (dB) | series below blend | frames |"
        if region:
            header = header.replace(" frames |", " moving region PSNR (dB) | its gain over blend (dB) | "
                                                 "series below blend in it | frames |")
        lines += [f"### {factor}", "", header, "|---|---|---|---|---|---|---|" + "---|" * (1 + 3 * region)]
        for method, e in table.items():
            below = len(e.get("cases_below", []))
            cells = (f"| {method} | {e['psnr']:.2f} ± {e['psnr_std']:.2f} | {e['ssim']:.3f} | {e['ncc']:.3f} | "
                     f"{e['nmse']:.4f} | {e.get('gain_db', 0.0):+.2f} | {below} of {len(e['per_case'])} | ")
            if region:
                cells += (f"{e['psnr_region']:.2f} ± {e['psnr_region_std']:.2f} | {e.get('gain_region_db', 0.0):+.2f}"
                          f" | {len(e.get('cases_below_region', []))} of {len(e['per_case'])} | ")
            lines.append(f"{cells}{e['n']} |")
        cases = list(next(iter(table.values()))["per_case"])
        lines += ["", *(["PSNR per series (dB), whole volume / moving region:", ""] if region else []),
                  "| series | " + " | ".join(table) + " |", "|---|" + "---|" * len(table)]
        for case in cases:
            values = [f"{table[m]['per_case'][case]:.2f}" + (f" / {table[m]['per_case_region'][case]:.2f}"
                                                            if region else "") for m in table]
            lines.append(f"| {case} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def write_psnr_by_case(table: Mapping, path: Path, title: str) -> None:
    """PSNR per series (x axis: series in order), one line per method."""
    figure = _canvas(720, 420)
    ax = figure.add_subplot()
    for method, entry in table.items():
        cases = list(entry["per_case"])
        ax.plot(range(len(cases)), list(entry["per_case"].values()), marker="o", label=method)
    ax.set_xticks(range(len(cases)), cases, rotation=45, fontsize=7)
    ax.set_ylabel("PSNR (dB), mean over the dropped frames")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png")


def superres(
    dataset_dir: str,
    dataset: str = "acdc",
    output_dir: str = "superres",
    factors: Sequence[int] = (2, 4),
    methods: Sequence[str] = ("blend", "student"),
    variants: Mapping[str, Mapping] | None = None,
    split: str = "test",
    spatial_size: Sequence[int] = (96, 96, 8),
    model: str | None = None,
    neighbour_model: str | None = None,
    cyclic: bool = True,
    threads: int | None = None,
    overwrite: bool = False,
    grid: str = "protocol",
    motion_region: bool = True,
) -> str:
    """Benchmark temporal super-resolution x2, x4 of whole series (module docstring); writes ``output_dir``.

    Args:
        dataset_dir: the dataset folder (ACDC layout, or a folder of 4D NIfTI).
        dataset: acdc or nifti4d.
        output_dir: folder to create for metrics.csv, summary.json, summary.md and the plots.
        factors: keep every k-th frame, for each k.
        methods: any of blend, elastix_linear (B-spline registrations of each acquired pair, scaled linearly in t;
            extra ``itk-elastix``; protocol grid only), vm_linear (the shipped VoxelMorph, scaled linearly; protocol
            grid only), student (configs/inference.json's ``network_def`` with the weights of its whole-series job,
            ``cine_checkpoint``, or ``model``,
            warped per factor as ``interpolate --upsample`` warps the kept frames: its ``warp_choice``; refined with
            the acquired frames around each pair by the config's neighbour refinement, as ``--upsample`` refines
            them, unless ``model`` is given without ``neighbour_model``; each dropped frame made at the config's
            motion clock time, ``cycle_clock``, from where its pair lies in the cycle), student_pairwise (the same
            student and clock without the neighbour refinement).
        variants: more students ``{name: {Student flag: value, ..., "weights": file}}``.
        split: train, test or all.
        spatial_size: the protocol grid X, Y, Z (default: the cropped cardiac grid the shipped student was trained on).
        model: the student's weights (default: the config's ``cine_checkpoint``, models/cine_model.pt).
        neighbour_model: the neighbour refinement's weights for ``student`` (default: the config's,
            models/neighbour_refinement.pt), e.g. a site's whole-cine fine-tuning (configs/finetune_cine.yaml) with its
            student as ``model``, as ``interpolate --upsample --model ... --neighbour_model ...`` runs them.
        cyclic: the series are periodic: the frames after the last acquired one are synthesised towards frame 0.
        threads: torch CPU threads (default: torch's).
        overwrite: replace output_dir if it exists.
        grid: ``protocol`` (every series resampled to ``spatial_size``, the methods pair by pair) or ``native`` (as
            ``interpolate --upsample K`` runs: each series at its own resolution and spacing, one min-max over all
            its frames, the student through the motion region of configs/inference.json; PSNR also over the moving
            region, the voxels whose temporal standard deviation over the true series exceeds 20 % of its 99.5th
            percentile; :mod:`scripts.evaluation.superres_native`).
        motion_region: native grid: run the student in the moving box with the blend around it (the product's
            default), or on the whole volume (False).
    """
    grid = parse_choice(grid, "grid", ("protocol", "native"))
    factors = list(factors) if isinstance(factors, (list, tuple)) else [factors]
    if not factors or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in factors):
        raise InputError("factors", f"expected integers >= 2 (keep every k-th frame), got {factors!r}")
    dataset_dir, output_dir = parse_path(dataset_dir, "dataset_dir"), parse_path(output_dir, "output_dir")
    dataset = parse_choice(dataset, "dataset", ("acdc", "nifti4d"))
    split = parse_choice(split, "split", ("train", "test", "all"))
    spatial_size = parse_shape(spatial_size, "spatial_size")
    model = None if model is None else parse_path(model, "model")
    neighbour_model = None if neighbour_model is None else check_weights_file(parse_path(neighbour_model,
                                                                                         "neighbour_model"))
    cyclic, overwrite = parse_bool(cyclic, "cyclic"), parse_bool(overwrite, "overwrite")
    motion_region = parse_bool(motion_region, "motion_region")
    if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise InputError("methods", f"expected a list of names such as ['blend', 'student'], got {methods!r}")
    if variants is not None and (not isinstance(variants, Mapping)
                                 or not all(isinstance(v, Mapping) for v in variants.values())):
        raise InputError("variants", f"expected {{name: {{flag: value, ..., 'weights': file}}}}, got {variants!r}")
    if threads is not None:
        torch.set_num_threads(parse_int(threads, "threads", minimum=1))
    from scripts.baselines.voxelmorph import voxelmorph_net

    steps = native.product_steps(motion_region, neighbour_checkpoint=neighbour_model)  # as configs/inference.json
    weights = model or steps.cine_weights
    available = {
        "blend": Blend(),
        "elastix_linear": ElastixLinear(max_batch=None),
        "vm_linear": VoxelMorphLinear(voxelmorph_net(), ROOT / "models" / "voxelmorph.pt", max_batch=None),
        "student": StudentMethod(steps.network, weights, None, steps.warp_choice,
                                 steps.neighbours if model is None or neighbour_model is not None else None,
                                 steps.retiming),
        "student_pairwise": StudentMethod(copy.deepcopy(steps.network), weights, None, steps.warp_choice,
                                          retiming=steps.retiming),
    }
    if grid == "native":
        chosen = native.native_methods(select_methods(list(methods), available, variants, max_batch=None),
                                       steps.region)
        cases = native.native_series(dataset, dataset_dir, split, factors)
        score, fields, metrics = native.score_native, (*FIELDS, "psnr_region"), (*IMAGE_METRICS, "psnr_region")
        settings = {"grid": "native", "motion_region": motion_region, "moving_region": native.MOVING_REGION}
        preface = f"grid native, motion region {'on' if motion_region else 'off'}; {native.MOVING_REGION}\n\n"
    else:
        chosen = select_methods(list(methods), available, variants, max_batch=None)
        cases = series_cases(dataset, dataset_dir, split, spatial_size)
        score, fields, metrics, settings, preface = score_superres, FIELDS, IMAGE_METRICS, {}, ""
    ready = ready_methods(chosen, torch.device("cpu"))
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        rows = score(cases, ready, factors, cyclic)
        summary = summarise_superres(rows, metrics=metrics)
        write_metrics_csv(rows, tmp / "metrics.csv", fields)
        write_summary(tmp, {**summary, **settings}, preface + summary_markdown(summary))
        for factor, table in summary.items():
            write_psnr_by_case(table, tmp / f"psnr_by_case_{factor}.png",
                               f"temporal super-resolution {factor}: PSNR of the dropped frames per series")
        for factor, table in summary.items():
            for method, e in table.items():
                logger.info("%s %-12s PSNR %.2f dB (%+.2f over blend, %d of %d series below)", factor, method,
                            e["psnr"], e.get("gain_db", 0.0), len(e.get("cases_below", [])), len(e["per_case"]))
    return str(output_dir)
