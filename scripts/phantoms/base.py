"""Synthetic 4D phantoms with known motion: the shared machinery (the ``phantom`` verb and the ACDC-layout writer are in :mod:`scripts.phantoms.make`).

The content lives in :mod:`scripts.phantoms.cardiac` (short-axis cine MR) and :mod:`scripts.phantoms.lung`
(respiratory 4D CT). Both follow one recipe, which makes the true motion exact by construction:

1. draw the anatomy once, noise-free, in the reference configuration (frame ``ed``): an ``(X, Y, Z)`` image with
   partial-volume edges and smooth random texture;
2. write the motion as a few spatial *modes* ``(K, 3, X, Y, Z)`` (voxel units) and per-frame *weights* ``(T, K)``,
   so the displacement of frame ``f`` is ``u_f = sum_k weights[f, k] * modes[k]``. Each mode is one physiological
   component (a wall region contracting, twist, a hemidiaphragm) with its own nonlinear, phase-shifted time curve,
   so ``u_f`` is not ``s * u_es`` and the path out is not the path back;
3. render frame ``f`` as ``anatomy(x + u_f(x))`` (MONAI ``Warp`` arithmetic: bilinear, border padding) and add
   noise drawn independently per frame.

Hence ``frame_f ~= Warp(frame_ed, u_f)`` up to noise and interpolation: ``truth[f]`` follows MONAI ``Warp`` /
``DVF2DDF`` semantics (channel ``k`` = displacement along voxel axis ``k``).

Truth on disk (``<case>/truth/motion.npz``, read it with :func:`load_truth`): the arrays ``modes`` float16
``(K, 3, X, Y, Z)`` and ``weights`` float32 ``(T, K)``; ``truth = tensordot(weights, modes)``. The generators round the
modes to float16 before rendering, so the stored truth is exactly the one the frames were made with. The modes vanish
away from the moving organs, so the compressed file is a few MB where the dense float32 ``(T, 3, X, Y, Z)`` would be
126 MB at 128 x 128 x 32 x 20.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)


TRUTH_FILE = Path("truth") / "motion.npz"


FIELD_OF_VIEW_MM = 192.0  # in-plane field of view of the written cardiac phantoms


@dataclasses.dataclass(eq=False)
class Phantom:
    """A synthetic 4D series and its true motion.

    Attributes:
        array: ``(X, Y, Z, T)`` float32 frames in scanner units (cardiac: MR signal, about 0..1300; lung: HU).
        affine: ``(4, 4)`` voxel -> RAS mm (nibabel convention), diagonal with the spacing, centred on the volume.
        ed: 0-based reference frame (cardiac end-diastole, lung end-inhale); ``truth[ed]`` is zero.
        es: 0-based end frame of the interpolation interval (cardiac end-systole, lung end-exhale).
        modes: ``(K, 3, X, Y, Z)`` float32 spatial motion modes in voxel units (float16-exact).
        weights: ``(T, K)`` float32 time weights of the modes.
        frame_time_ms: time between frames in ms (cardiac: RR interval / T; lung: breathing period / T).
        labels: ``(X, Y, Z, T)`` uint8 label map moved with the anatomy, or ``None``. Cardiac: ACDC's convention
            (0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity); lung: 0 outside the body, 1 body,
            2 lung, 3 nodule.
    """

    array: np.ndarray
    affine: np.ndarray
    ed: int
    es: int
    modes: np.ndarray
    weights: np.ndarray
    frame_time_ms: float
    labels: np.ndarray | None = None

    def displacement(self, frame: int) -> np.ndarray:
        """``(3, X, Y, Z)`` float32 displacement of ``frame`` in voxels: ``frame(x) ~= frame_ed(x + u(x))``."""
        return np.tensordot(self.weights[frame], self.modes, axes=1)

    @functools.cached_property
    def truth(self) -> np.ndarray:
        """``(T, 3, X, Y, Z)`` float32 displacements of every frame (``displacement`` for all frames at once)."""
        return np.tensordot(self.weights, self.modes, axes=1)


def voxel_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """``(4, 4)`` RAS affine with ``spacing`` (mm) on the diagonal and world ``(0, 0, 0)`` at the volume centre."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -0.5 * (np.asarray(shape[:3]) - 1) * np.asarray(spacing, dtype=float)
    return affine


def centred_mm(shape: Sequence[int], spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of the voxel centres along each axis, broadcastable: ``(X,1,1), (1,Y,1), (1,1,Z)``."""
    axes = [(np.arange(n) - 0.5 * (n - 1)) * s for n, s in zip(shape, spacing)]
    return tuple(a.astype(np.float32).reshape([-1 if i == k else 1 for i in range(3)]) for k, a in enumerate(axes))


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: Sequence[float]) -> np.ndarray:
    """Gaussian-filtered white noise with zero mean and unit standard deviation, float32 ``shape``.

    ``sigma`` is the filter width in voxels per axis (periodic boundaries, done in the Fourier domain).
    """
    spectrum = np.fft.rfftn(rng.standard_normal(shape, dtype=np.float32))
    for axis, (n, s) in enumerate(zip(shape, sigma)):
        freq = np.fft.rfftfreq(n) if axis == len(shape) - 1 else np.fft.fftfreq(n)
        gain = np.exp(-2.0 * (np.pi * freq * s) ** 2).reshape([-1 if i == axis else 1 for i in range(len(shape))])
        spectrum *= gain
    field = np.fft.irfftn(spectrum, s=shape, axes=range(len(shape)))
    return ((field - field.mean()) / max(field.std(), 1e-12)).astype(np.float32)


def soft_inside(distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume occupancy in [0, 1] from a signed distance (mm, negative inside): 0.5 on the boundary."""
    return (0.5 * (1.0 - np.tanh(distance / (2.0 * width)))).astype(np.float32)


def ellipsoid_distance(offsets: Sequence[np.ndarray], semi_axes: Sequence[float | np.ndarray]) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to the ellipse/ellipsoid ``sum (offset_i / a_i)^2 = 1``.

    First-order, ``(rho - 1) / |grad rho|``: exact on the boundary and for circles and spheres, good within a few mm
    of the boundary, which is where partial-volume edges need it.
    """
    semi_axes = [np.maximum(a, 1e-3) for a in semi_axes]
    rho = np.sqrt(sum((o / a) ** 2 for o, a in zip(offsets, semi_axes)))
    grad = np.sqrt(sum((o / a**2) ** 2 for o, a in zip(offsets, semi_axes))) / np.maximum(rho, 1e-6)
    return (rho - 1.0) / np.maximum(grad, 1e-6)


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """``3x^2 - 2x^3`` on ``x`` clipped to [0, 1]: 0 -> 0, 1 -> 1, zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def paint(image: np.ndarray, occupancy: np.ndarray, value: np.ndarray | float) -> None:
    """Cover ``image`` in place with ``value`` where ``occupancy`` (in [0, 1]) says, blending at partial volumes."""
    image += occupancy * (value - image)


def lagged(curve: Callable[[np.ndarray], np.ndarray], t: np.ndarray, lag: float) -> np.ndarray:
    """``curve`` of a periodic cycle (``t`` in cycles, [0, 1)) delayed by ``lag`` cycles, minus its value at t = 0.

    Subtracting the t = 0 value keeps the reference frame at zero displacement while a lagging region is still
    moving there.
    """
    return curve(np.mod(t - lag, 1.0)) - curve(np.array([-lag % 1.0]))


def storable(modes: np.ndarray) -> np.ndarray:
    """``modes`` rounded to float16 and back to float32, so the truth file reproduces them exactly."""
    return modes.astype(np.float16).astype(np.float32)


def render_frames(
    anatomy: np.ndarray, modes: np.ndarray, weights: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Move the reference anatomy: frame ``f`` = ``anatomy(x + u_f(x))``, ``u_f = sum_k weights[f, k] modes[k]``.

    The arithmetic of MONAI ``Warp(mode, padding_mode="border")`` (``grid_sample``, ``align_corners=True``), with
    the modes converted to ``grid_sample``'s normalised ``(z, y, x)`` units once instead of once per frame.

    Args:
        anatomy: ``(X, Y, Z)`` float32 noise-free reference image.
        modes: ``(K, 3, X, Y, Z)`` float32 motion modes in voxels; weights: ``(T, K)`` float32.
        labels: ``(X, Y, Z)`` uint8 reference label map, moved with nearest-neighbour sampling, or ``None``.

    Returns:
        ``(X, Y, Z, T)`` float32 frames and ``(X, Y, Z, T)`` uint8 labels (or ``None``).
    """
    size = anatomy.shape
    axes = [torch.linspace(-1.0, 1.0, n) if n > 1 else torch.full((1,), -1.0) for n in size]
    identity = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)  # (X, Y, Z, 3) as (z, y, x)
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in size[::-1]])
    modes_grid = (torch.from_numpy(modes).flip(1).permute(0, 2, 3, 4, 1) * scale).contiguous()
    weights_t = torch.from_numpy(weights)
    image = torch.from_numpy(anatomy)[None, None]
    label_image = None if labels is None else torch.from_numpy(labels.astype(np.float32))[None, None]
    frames = np.empty(size + (len(weights),), np.float32)
    moved_labels = None if labels is None else np.empty(size + (len(weights),), np.uint8)
    sample = functools.partial(torch.nn.functional.grid_sample, padding_mode="border", align_corners=True)
    with torch.no_grad():
        for f in range(len(weights)):
            grid = (identity + torch.tensordot(weights_t[f], modes_grid, dims=1))[None]
            frames[..., f] = sample(image, grid, mode="bilinear")[0, 0].numpy()
            if label_image is not None:
                moved_labels[..., f] = sample(label_image, grid, mode="nearest")[0, 0].numpy().astype(np.uint8)
    return frames, moved_labels


def case_seed(seed: int, patient: int) -> int:
    """Seed of case ``patient`` of a dataset drawn with ``seed``: independent of how many cases are written."""
    return int(np.random.SeedSequence([int(seed), int(patient)]).generate_state(1)[0])


def save_truth(phantom: Phantom, case_dir: str | os.PathLike) -> Path:
    """Write ``phantom``'s motion to ``case_dir/truth/motion.npz`` (format in the module docstring)."""
    path = Path(case_dir) / TRUTH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, modes=phantom.modes.astype(np.float16), weights=phantom.weights.astype(np.float32))
    return path


def load_truth(case_dir: str | os.PathLike) -> np.ndarray:
    """True displacements of a written phantom case: ``(T, 3, X, Y, Z)`` float32, voxel units, ``Warp`` semantics.

    ``truth[f]`` maps the reference frame (ED, 1-based ``ED`` of ``Info.cfg``) onto frame ``f`` (0-based).
    """
    path = Path(case_dir) / TRUTH_FILE
    if not path.is_file():
        raise InputError(path, "no phantom truth here (only phantoms written by `python -m scripts phantom` have it)")
    with np.load(path) as stored:
        modes, weights = stored["modes"], stored["weights"]
    if modes.ndim != 5 or modes.shape[1] != 3 or weights.ndim != 2 or weights.shape[1] != modes.shape[0]:
        raise InputError(path, f"modes {modes.shape} and weights {weights.shape} do not form a truth")
    return np.tensordot(weights.astype(np.float32), modes.astype(np.float32), axes=1)
