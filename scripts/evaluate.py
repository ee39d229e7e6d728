"""The evaluation workflow: every method on the same test samples, the paper's metrics, tables and figures.

``configs/evaluate.json`` builds an :class:`Evaluator` and calls :meth:`Evaluator.run`; ``python -m scripts evaluate``
(:func:`evaluate`) runs the same config with its arguments as overrides. Outputs, in one folder that appears
atomically (:func:`scripts.atomic.atomic_dir`; an existing one is refused unless ``overwrite``):

- ``metrics.csv``: one row per (subject, frame, method): ``t``, PSNR, NCC, SSIM, NMSE (:mod:`scripts.metrics`) and, on
  phantoms, ``epe`` (mean endpoint error of the method's displacement I0 -> I_t against the truth, voxels) and
  ``folding`` (fraction of voxels with det(Jacobian) <= 0); empty where a method has no displacement or no truth;
- ``summary.json``: ``{method: {psnr, psnr_std, ..., n, seconds[, epe, folding, ..., n_truth]}}``, each
  (subject, frame) weighing the same (:func:`scripts.metrics.summarise`); ``seconds`` is the method's total time;
  ``summary.md``, the same as a markdown table (mean ± std);
- ``error_maps.png`` (paper Fig. 2): the middle slice of one subject at the frame nearest t = 0.5, the truth and each
  method's prediction over its absolute error;
- ``psnr_over_t.png`` (paper Fig. 3): mean PSNR against t (bins of t over all subjects) per method.

Methods (:class:`Method`): ``blend``; ``vm_linear`` (VoxelMorph velocities scaled linearly,
:mod:`scripts.vm_baseline`); ``elastix_linear`` (optional extra ``itk-elastix``); ``teacher`` (sees I_t);
``student`` (ours) and any named student variants (ablations). A method that cannot run here (weights file missing,
optional package absent) is skipped with a logged warning. All methods see the same preprocessed samples. Per subject,
each method prepares once (registration fields, once for every t) and the student encodes I0 and I1 once
(``Student.interpolate_series``). Predictions are clipped to [0, 1] before scoring, the range of the data and of the
metrics' data range (networks and warps can overshoot slightly).

Ablations (paper Tables 2 and 3): :func:`ablations` trains every row at a reduced budget through
``configs/train_student.json`` overrides and evaluates them as student variants (``python -m scripts.evaluate
ablations --dataset_dir D --epochs N``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.networks.blocks import DVF2DDF
from monai.transforms import ResizeWithPadOrCrop
from tqdm import tqdm

from scripts.atomic import atomic_dir, atomic_file
from scripts.baselines import ELASTIX_PIN, blend, elastix_fields, linear_scaling
from scripts.checkpoint import load_weights
from scripts.bundle_config import ROOT, run_config
from scripts.errors import InputError, OutputExistsError
from scripts.metrics import IMAGE_METRICS, endpoint_error, folding_fraction, image_metrics, summarise
from scripts.vm_baseline import velocities

logger = logging.getLogger(__name__)

__all__ = [
    "Subject", "Method", "MethodUnavailable", "Blend", "LinearScaling", "VoxelMorphLinear", "ElastixLinear",
    "TeacherMethod", "StudentMethod", "select_methods", "subjects", "Evaluator", "evaluate", "ablations",
    "ABLATIONS", "NETWORK_FLAGS", "ablation_table", "row_overrides", "summarise_rows", "summary_table",
]

FIELD_METRICS = ("epe", "folding")
CSV_FIELDS = ("subject", "frame", "t", "method", *IMAGE_METRICS, *FIELD_METRICS)


# --- samples ----------------------------------------------------------------------------------------------------------
@dataclass
class Subject:
    """One test series: its endpoints, every target frame, and (phantoms) the true displacements.

    Attributes:
        case: the case name (``patient091``).
        i0, i1: (1, 1, X, Y, Z) endpoints in [0, 1].
        targets: (N, 1, X, Y, Z) true volumes at ``ts``.
        ts: (N,) times in (0, 1).
        frames: the N frame indices of the targets in the series.
        truth: (N, 3, X, Y, Z) true displacements I0 -> target in voxels (``Warp`` semantics), or None.
    """

    case: str
    i0: torch.Tensor
    i1: torch.Tensor
    targets: torch.Tensor
    ts: torch.Tensor
    frames: list[int]
    truth: torch.Tensor | None = None

    def chunks(self, max_batch: int | None) -> list[slice]:
        """The targets in slices of at most ``max_batch`` (all at once when None)."""
        n = len(self.frames)
        step = max_batch or n
        return [slice(k, min(k + step, n)) for k in range(0, n, step)]

    def endpoints(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """I0 and I1 broadcast to ``n`` items, (n, 1, X, Y, Z) each (views, no copies)."""
        return self.i0.expand(n, -1, -1, -1, -1), self.i1.expand(n, -1, -1, -1, -1)


def phantom_truth(case_dir: Path, frames: Sequence[int], size: Sequence[int]) -> torch.Tensor | None:
    """The true displacements ED -> ``frames`` of a phantom case, on the protocol grid; None without ``truth/``.

    The phantom's truth lives on the written grid; the ACDC protocol only centre-crops and zero-pads (never resamples),
    so the same ``ResizeWithPadOrCrop`` moves the field onto the protocol grid with its vectors unchanged, and padding
    gets displacement 0. Returns (N, 3, X, Y, Z) float32 in voxels.
    """
    if not (case_dir / "truth").is_dir():
        return None
    from scripts.data.phantom import load_truth  # only phantoms carry a truth

    truth = load_truth(case_dir)[list(frames)]  # (N, 3, X', Y', Z')
    n = truth.shape[0]
    fitted = ResizeWithPadOrCrop(spatial_size=tuple(size))(truth.reshape(n * 3, *truth.shape[2:]))
    return torch.as_tensor(np.asarray(fitted), dtype=torch.float32).reshape(n, 3, *size)


def subjects(dataset, truth_dir: str | os.PathLike | None = None) -> Iterator[Subject]:
    """Group an (I0, I1, It, t) dataset's items (one per target frame, a case's items consecutive) into subjects.

    With ``truth_dir`` (an ACDC-layout folder), a case folder holding ``truth/`` adds its true displacements.

    Raises:
        InputError: a case's items are not consecutive (its frames would be scored as two subjects).
    """
    done: set[str] = set()
    items: list[dict] = []

    def emit() -> Subject:
        case = items[0]["case"]
        if case in done:
            raise InputError("dataset", f"the items of case {case} are not consecutive")
        done.add(case)
        image = items[0]["image"][None]
        frames = [int(item["frame"]) for item in items]
        size = tuple(image.shape[2:])
        truth = None if truth_dir is None else phantom_truth(Path(truth_dir) / case, frames, size)
        return Subject(
            case=case,
            i0=image[:, :1],
            i1=image[:, 1:2],
            targets=torch.stack([torch.as_tensor(item["target"]) for item in items]),
            ts=torch.tensor([float(item["t"]) for item in items], dtype=torch.float32),
            frames=frames,
            truth=truth,
        )

    for index in range(len(dataset)):
        item = dataset[index]
        if items and item["case"] != items[0]["case"]:
            yield emit()
            items = []
        items.append(item)
    if items:
        yield emit()


# --- methods ----------------------------------------------------------------------------------------------------------
class MethodUnavailable(RuntimeError):
    """A method cannot run here (its weights file is missing, an optional package is absent); it is skipped."""


class Method:
    """An interpolation method as the evaluator drives it.

    Per subject: ``state = prepare(subject)`` once (fields, encodings), then ``predict(subject, state)`` ->
    (N, 1, X, Y, Z) volumes at ``subject.ts`` and, on phantoms, ``displacement(subject, state)`` -> (N, 3, X, Y, Z) the
    displacement I0 -> I_t in voxels (``Warp`` semantics), or None when the method has none.
    """

    name: str = ""

    def setup(self, device: torch.device) -> None:
        """Get ready on ``device`` (load weights); raise :class:`MethodUnavailable` when that cannot be done here."""
        self.device = device

    def prepare(self, subject: Subject):
        return None

    def predict(self, subject: Subject, state) -> torch.Tensor:
        raise NotImplementedError

    def displacement(self, subject: Subject, state) -> torch.Tensor | None:
        return None


class Blend(Method):
    """Linear image blend (1 - t) I0 + t I1."""

    def predict(self, subject: Subject, state) -> torch.Tensor:
        return blend(*subject.endpoints(len(subject.frames)), subject.ts)


class LinearScaling(Method):
    """Linear scaling of one registration per subject (:func:`scripts.baselines.linear_scaling`).

    Subclasses give ``fields(i0, i1)``: displacements (``velocity=False``) or stationary velocities (``True``) I0 -> I1
    and I1 -> I0, (1, 3, X, Y, Z) in voxels, computed once per subject and reused for every t.
    """

    velocity = False
    num_steps = 7

    def __init__(self, max_batch: int | None = 4):
        self.max_batch = max_batch

    def fields(self, i0: torch.Tensor, i1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, subject: Subject) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fields(subject.i0, subject.i1)

    def predict(self, subject: Subject, state) -> torch.Tensor:
        f01, f10 = state
        out = []
        for part in subject.chunks(self.max_batch):
            ts = subject.ts[part]
            i0, i1 = subject.endpoints(len(ts))
            grow = lambda f: f.expand(len(ts), -1, -1, -1, -1)  # noqa: E731
            out.append(linear_scaling(i0, i1, grow(f01), grow(f10), ts, self.velocity, self.num_steps))
        return torch.cat(out)

    def displacement(self, subject: Subject, state) -> torch.Tensor:
        """phi_0t = t ddf_01, or exp(t v01) for velocities (the first term of the linear scaling)."""
        scaled = subject.ts.view(-1, 1, 1, 1, 1).to(state[0]) * state[0]
        if not self.velocity:
            return scaled
        return DVF2DDF(num_steps=self.num_steps, mode="bilinear", padding_mode="zeros")(scaled)


def _load_network(network: torch.nn.Module, weights: str | os.PathLike, device: torch.device) -> torch.nn.Module:
    """``network`` with ``weights`` loaded, on ``device``, in eval mode; :class:`MethodUnavailable` without the file."""
    if not Path(weights).is_file():
        raise MethodUnavailable(f"weights file {weights} not found")
    return load_weights(network, weights).to(device).eval()


class VoxelMorphLinear(LinearScaling):
    """The VM row: MONAI ``VoxelMorph`` velocities I0 -> I1 and I1 -> I0, scaled linearly in t and integrated.

    Args:
        network: a ``VoxelMorph`` (:func:`scripts.vm_baseline.voxelmorph_net`), ``weights`` its state dict.
    """

    velocity = True

    def __init__(self, network: torch.nn.Module, weights: str | os.PathLike, max_batch: int | None = 4):
        super().__init__(max_batch)
        self.network, self.weights = network, weights
        self.num_steps = network.integration_steps

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        self.network = _load_network(self.network, self.weights, device)

    @torch.no_grad()
    def fields(self, i0, i1):
        return velocities(self.network, i0, i1)


class ElastixLinear(LinearScaling):
    """Linear scaling of elastix B-spline registrations (optional extra ``itk-elastix``); ``elastix_args`` go to
    :func:`scripts.baselines.elastix_ddf` (``spacing`` stays 1 mm: the protocol grid has no physical spacing)."""

    def __init__(self, max_batch: int | None = 4, **elastix_args):
        super().__init__(max_batch)
        self.elastix_args = elastix_args

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        try:
            import itk

            itk.ElastixRegistrationMethod  # noqa: B018 (the lazy attribute loads the module or fails)
        except (ImportError, AttributeError) as err:
            raise MethodUnavailable(f"itk-elastix is not installed (pip install {ELASTIX_PIN})") from err

    def fields(self, i0, i1):
        return elastix_fields(i0, i1, **self.elastix_args)


class NetworkMethod(Method):
    """A TMSDF network (teacher or student) with its weights; ``max_batch`` target frames per forward pass."""

    def __init__(self, network: torch.nn.Module, weights: str | os.PathLike, max_batch: int | None = 4):
        self.network, self.weights, self.max_batch = network, weights, max_batch

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        self.network = _load_network(self.network, self.weights, device)

    def inputs(self, subject: Subject, part: slice) -> torch.Tensor:
        """The network's ``image`` for the targets in ``part``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, subject: Subject, state) -> torch.Tensor:
        return torch.cat([self.network(self.inputs(subject, p), subject.ts[p]) for p in subject.chunks(self.max_batch)])

    @torch.no_grad()
    def displacement(self, subject: Subject, state) -> torch.Tensor:
        """Phi_0t at full resolution (the finest scale of ``forward_intermediates``)."""
        return torch.cat([
            self.network.forward_intermediates(self.inputs(subject, p), subject.ts[p]).phi0[-1]
            for p in subject.chunks(self.max_batch)
        ])


class TeacherMethod(NetworkMethod):
    """The teacher, which sees the true I_t: an upper reference, not an interpolation method."""

    def inputs(self, subject: Subject, part: slice) -> torch.Tensor:
        target = subject.targets[part]
        i0, i1 = subject.endpoints(len(target))
        return torch.cat([i0, target, i1], dim=1)


class StudentMethod(NetworkMethod):
    """The student (ours, or an ablation variant): I0 and I1 encoded once per subject for every t."""

    def inputs(self, subject: Subject, part: slice) -> torch.Tensor:
        return torch.cat(subject.endpoints(part.stop - part.start), dim=1)

    @torch.no_grad()
    def predict(self, subject: Subject, state) -> torch.Tensor:
        return self.network.interpolate_series(subject.i0, subject.i1, subject.ts, max_batch=self.max_batch)


def select_methods(
    names: Sequence[str],
    available: Mapping[str, Method],
    variants: Mapping[str, Mapping] | None = None,
    channels: Sequence[int] = (16, 32, 64, 64),
    max_batch: int | None = 4,
) -> list[Method]:
    """The methods to run, named: ``names`` picked from ``available``, then one student per ``variants`` entry.

    Args:
        names: e.g. ``["blend", "vm_linear", "student"]``.
        available: the configured methods by name.
        variants: ``{name: {Student keyword: value, ..., "weights": path}}``, e.g.
            ``{"no_dfm": {"use_dfm": False, "weights": "runs/ablation_no_dfm/model.pt"}}``; ``channels`` is the
            default ``channels`` keyword.

    Raises:
        InputError: an unknown name, a variant without ``weights``, or a name used twice.
    """
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError("methods", f"unknown {unknown}; choose from {sorted(available)} or add student variants")
    chosen: dict[str, Method] = {name: available[name] for name in names}
    variants = variants or {}
    for name, spec in variants.items():
        if name in chosen:
            raise InputError("variants", f"{name!r} is already a method name")
        if "weights" not in spec:
            raise InputError("variants", f"{name!r} needs a 'weights' file")
    if variants:
        from scripts.networks import Student

        for name, spec in variants.items():
            flags = {k: v for k, v in spec.items() if k != "weights"}
            chosen[name] = StudentMethod(Student(**{"channels": tuple(channels), **flags}), spec["weights"], max_batch)
    for name, method in chosen.items():
        method.name = name
    return list(chosen.values())


# --- evaluation -------------------------------------------------------------------------------------------------------
@dataclass
class _FigureSample:
    """What ``error_maps.png`` shows: the middle slice (X, Y) of the truth and of each method's prediction."""

    case: str
    frame: int
    t: float
    truth: np.ndarray
    preds: dict[str, np.ndarray]


class Evaluator:
    """Score ``methods`` on every subject of ``dataset`` and write the outputs (module docstring).

    Args:
        dataset: an (I0, I1, It, t) dataset (:func:`scripts.data.datasets.make_dataset`), a case's items consecutive.
        methods: :class:`Method` objects with their ``name`` set (:func:`select_methods`).
        device: where the methods run; metrics are computed on the CPU in float64/float32 as :mod:`scripts.metrics`.
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
    def score(self) -> tuple[list[dict], dict[str, float], _FigureSample | None]:
        """Run every ready method on every subject: metric rows, seconds per method, and the figure's sample."""
        methods = self._ready_methods()
        rows: list[dict] = []
        seconds = dict.fromkeys((m.name for m in methods), 0.0)
        figure = None
        for subject in tqdm(subjects(self.dataset, self.truth_dir), desc="evaluate", unit="subject", disable=None):
            subject = _to(subject, self.device)
            show = figure is None and self.figure_subject in (None, subject.case)
            k_show = int(torch.argmin((subject.ts - 0.5).abs()))
            if show:
                figure = _FigureSample(subject.case, subject.frames[k_show], float(subject.ts[k_show]),
                                       _mid_slice(subject.targets[k_show]), {})
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
                    figure.preds[method.name] = _mid_slice(preds[k_show])
            logger.info("%s: %d frames; mean PSNR %s", subject.case, len(subject.frames),
                        ", ".join(f"{name} {value:.2f} dB" for name, value in psnr.items()))
        if self.figure_subject is not None and figure is None:
            raise InputError("figure_subject", f"case {self.figure_subject!r} is not in the evaluated split")
        return rows, seconds, figure

    @staticmethod
    def _rows(name: str, subject: Subject, preds: torch.Tensor, fields: torch.Tensor | None) -> list[dict]:
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


def _to(subject: Subject, device: torch.device) -> Subject:
    move = lambda x: None if x is None else x.to(device)  # noqa: E731
    return Subject(subject.case, move(subject.i0), move(subject.i1), move(subject.targets), move(subject.ts),
                   subject.frames, move(subject.truth))


def _mid_slice(volume: torch.Tensor) -> np.ndarray:
    """(1, X, Y, Z) -> the (X, Y) slice at Z // 2 as a float32 array."""
    return volume[0, :, :, volume.shape[-1] // 2].float().cpu().numpy()


def summarise_rows(rows: Sequence[Mapping]) -> dict[str, dict]:
    """:func:`scripts.metrics.summarise` of the image metrics, plus EPE and folding over the rows that have them
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


def write_error_maps(sample: _FigureSample, path: Path, panel_px: int = 160) -> None:
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
        "device": None if device is None else f"$torch.device({device!r})",
    }
    return str(run_config(config_file or ROOT / "configs" / "evaluate.json", overrides))


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


def _train(config: str, overrides: Mapping[str, object]) -> None:
    """Run a training config of this bundle with ``overrides`` (from the bundle root: configs refer to each other
    by relative path)."""
    from monai.bundle import run

    with contextlib.chdir(ROOT):
        run(config_file=str(ROOT / "configs" / config), **{"bundle_root": str(ROOT), **overrides})


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
    """The ``configs/train_student.json`` overrides of ablation row ``name``: its flags and, without ``L_distill``,
    no frozen teacher in the loop (``"$None"``: monai's ``run`` drops overrides whose value is None)."""
    flags = dict(ABLATIONS[name])
    if not flags["use_distill"]:
        flags.update({"train_inferer#teacher": "$None", "train_prepare_batch#with_teacher": False})
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
            _train("train_teacher.json", {**common, "output_dir": str(teacher_dir), "weights_file": str(teacher)})
    variants = {}
    for name in rows:
        flags = ABLATIONS[name]
        out = runs / f"ablation_{name}"
        weights = out / "model.pt"
        if weights.is_file():
            logger.info("ablations: %s already trained (%s)", name, weights)
        else:
            logger.info("ablations: training %s (%d epochs) in %s", name, epochs, out)
            _train("train_student.json", {**common, **row_overrides(name), "output_dir": str(out),
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


if __name__ == "__main__":  # python -m scripts.evaluate {evaluate,ablations} --help
    import logging.config

    import fire

    logging.config.fileConfig(ROOT / "configs" / "logging.conf", disable_existing_loggers=False)
    fire.Fire({"evaluate": evaluate, "ablations": ablations}, name="python -m scripts.evaluate")
