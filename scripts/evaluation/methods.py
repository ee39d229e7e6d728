"""Interpolation methods scored side by side: the blend, registration baselines scaled linearly, teacher and student."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.networks.blocks import DVF2DDF

from scripts.baselines.elastix import ELASTIX_PIN, elastix_fields
from scripts.baselines.linear import blend, linear_scaling
from scripts.baselines.voxelmorph import velocities
from scripts.evaluation.cases import Case
from scripts.inference.neighbour_refiner import NeighbourRefiner
from scripts.inference.warp_choice import WarpBySpan
from scripts.networks.refine import warm_start
from scripts.transforms.retiming import CycleRetiming
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)


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

    def prepare(self, subject: Case):
        return None

    def predict(self, subject: Case, state) -> torch.Tensor:
        raise NotImplementedError

    def displacement(self, subject: Case, state) -> torch.Tensor | None:
        return None


class Blend(Method):
    """Linear image blend (1 - t) I0 + t I1."""

    def predict(self, subject: Case, state) -> torch.Tensor:
        return blend(*subject.endpoints(len(subject.frames)), subject.ts)


class LinearScaling(Method):
    """Linear scaling of one registration per subject (:func:`scripts.baselines.linear.linear_scaling`).

    Subclasses give ``fields(i0, i1)``: displacements (``velocity=False``) or stationary velocities (``True``) I0 -> I1
    and I1 -> I0, (1, 3, X, Y, Z) in voxels, computed once per subject and reused for every t.
    """

    velocity = False
    num_steps = 7

    def __init__(self, max_batch: int | None = 4):
        self.max_batch = max_batch

    def fields(self, i0: torch.Tensor, i1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, subject: Case) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fields(subject.i0, subject.i1)

    def predict(self, subject: Case, state) -> torch.Tensor:
        f01, f10 = state
        out = []
        for part in subject.chunks(self.max_batch):
            ts = subject.ts[part]
            i0, i1 = subject.endpoints(len(ts))
            f01_n, f10_n = (f.expand(len(ts), -1, -1, -1, -1) for f in (f01, f10))
            out.append(linear_scaling(i0, i1, f01_n, f10_n, ts, self.velocity, self.num_steps))
        return torch.cat(out)

    def displacement(self, subject: Case, state) -> torch.Tensor:
        """phi_0t = t ddf_01, or exp(t v01) for velocities (the first term of the linear scaling)."""
        scaled = subject.ts.view(-1, 1, 1, 1, 1).to(state[0]) * state[0]
        if not self.velocity:
            return scaled
        return DVF2DDF(num_steps=self.num_steps, mode="bilinear", padding_mode="zeros")(scaled)


def ready_methods(methods: Sequence[Method], device: torch.device) -> list[Method]:
    """The ``methods`` that :meth:`Method.setup` could prepare on ``device``; the others are skipped with a warning.

    Raises:
        InputError: none of them can run here.
    """
    ready = []
    for method in methods:
        try:
            method.setup(device)
        except MethodUnavailable as err:
            logger.warning("skipping method %s: %s", method.name, err)
            continue
        ready.append(method)
    if not ready:
        raise InputError("methods", "none of the methods can run here (see the warnings above)")
    return ready


def load_network(network: torch.nn.Module, weights: str | os.PathLike, device: torch.device) -> torch.nn.Module:
    """``network`` with ``weights`` loaded, on ``device``, in eval mode; :class:`MethodUnavailable` without the file.
    Weights without the refinement's blend candidate load into a network with it, gate at zero (:func:`warm_start`)."""
    if not Path(weights).is_file():
        raise MethodUnavailable(f"weights file {weights} not found")
    return warm_start(network, weights).to(device).eval()


class VoxelMorphLinear(LinearScaling):
    """The VM row: MONAI ``VoxelMorph`` velocities I0 -> I1 and I1 -> I0, scaled linearly in t and integrated.

    Args:
        network: a ``VoxelMorph`` (:func:`scripts.baselines.voxelmorph.voxelmorph_net`), ``weights`` its state dict.
    """

    velocity = True

    def __init__(self, network: torch.nn.Module, weights: str | os.PathLike, max_batch: int | None = 4):
        super().__init__(max_batch)
        self.network, self.weights = network, weights
        self.num_steps = network.integration_steps

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        self.network = load_network(self.network, self.weights, device)

    @torch.no_grad()
    def fields(self, i0, i1):
        return velocities(self.network, i0, i1)


class ElastixLinear(LinearScaling):
    """Linear scaling of elastix B-spline registrations (optional extra ``itk-elastix``); ``elastix_args`` go to
    :func:`scripts.baselines.elastix.elastix_ddf` (``spacing`` stays 1 mm: the protocol grid has no physical spacing)."""

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
        self.network = load_network(self.network, self.weights, device)

    def inputs(self, subject: Case, part: slice) -> torch.Tensor:
        """The network's ``image`` for the targets in ``part``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, subject: Case, state) -> torch.Tensor:
        return torch.cat([self.network(self.inputs(subject, p), subject.ts[p]) for p in subject.chunks(self.max_batch)])

    @torch.no_grad()
    def displacement(self, subject: Case, state) -> torch.Tensor:
        """Phi_0t at full resolution (the finest scale of ``forward_intermediates``)."""
        return torch.cat([
            self.network.forward_intermediates(self.inputs(subject, p), subject.ts[p]).phi0[-1]
            for p in subject.chunks(self.max_batch)
        ])


class TeacherMethod(NetworkMethod):
    """The teacher, which sees the true I_t: an upper reference, not an interpolation method."""

    def inputs(self, subject: Case, part: slice) -> torch.Tensor:
        target = subject.targets[part]
        i0, i1 = subject.endpoints(len(target))
        return torch.cat([i0, target, i1], dim=1)


class StudentMethod(NetworkMethod):
    """The student (ours, or an ablation variant): I0 and I1 encoded once per subject for every t.

    With ``warp_choice`` (:class:`~scripts.inference.warp_choice.WarpBySpan`) it warps each subject that knows its
    ``span`` as the inference would; otherwise with the network's own warp. With ``neighbours`` (a
    :class:`~scripts.inference.neighbour_refiner.NeighbourRefiner`) the frames of each subject that carries its
    acquired ``context`` and spans a share of its series the refiner refines are refined with it, as
    ``interpolate --upsample`` refines them. With ``retiming`` (a :class:`~scripts.transforms.retiming.CycleRetiming`)
    the frames of each subject that knows where its pair lies in its cycle (``phases``) are made at the motion clock's
    times, as ``interpolate --upsample`` makes a cine's.
    """

    def __init__(self, network: torch.nn.Module, weights: str | os.PathLike, max_batch: int | None = 4,
                 warp_choice: WarpBySpan | None = None, neighbours: NeighbourRefiner | None = None,
                 retiming: CycleRetiming | None = None):
        super().__init__(network, weights, max_batch)
        self.warp_choice = warp_choice
        self.neighbours = neighbours
        self.retiming = retiming

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        if self.neighbours is not None:
            if not self.neighbours.checkpoint.is_file():
                raise MethodUnavailable(f"neighbour refinement weights {self.neighbours.checkpoint} not found")
            self.neighbours.load(device)

    def inputs(self, subject: Case, part: slice) -> torch.Tensor:
        return torch.cat(subject.endpoints(part.stop - part.start), dim=1)

    @torch.no_grad()
    def predict(self, subject: Case, state) -> torch.Tensor:
        if self.warp_choice is not None and subject.span is not None:
            self.network.image_warp = self.warp_choice(subject.span)
        ts = subject.ts
        if self.retiming is not None and subject.phases is not None:
            start, end = subject.phases
            ts = self.retiming(start, end - start, ts).to(ts)
        pred = self.network.interpolate_series(subject.i0, subject.i1, ts, max_batch=self.max_batch)
        if self.neighbours is None or subject.context is None or not self.neighbours.applies(subject.span):
            return pred
        return self.neighbours(pred, [subject.context[:1], subject.i0, subject.i1, subject.context[1:]], ts)


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
