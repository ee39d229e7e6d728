"""Synthetic respiratory 4D CT of the chest, in Hounsfield units, with known motion.

Anatomy (reference = end-inhale, phase 0): air (-1000) around a body of subcutaneous fat (-100) and muscle (~50)
with ribs, on a CT couch; lungs (~ -850, denser towards the back) with branching vessels (~40 HU, tubes whose radius
shrinks at every bifurcation) and a lobulated nodule (~30 HU, 1-2 cm) in a lower lobe; mediastinal fat around the
heart, descending aorta, trachea and main bronchi; diaphragm domes (the right one higher) over the liver and the
stomach with its air bubble; spine with discs and spinal canal; smooth texture and Gaussian noise per phase.

Axes: RAS, axis 0 towards the patient's right, axis 1 anterior, axis 2 superior.

Motion over ``phases`` phases, phase 0 end-inhale and phase ``phases // 2`` end-exhale (the 4D-Lung convention):
each hemidiaphragm moves 10-20 mm superior-inferior (the two sides differ in amplitude and slightly in phase), the
motion fading towards the apex and sliding at the chest wall; the chest wall moves anterior-posterior (and a little
sideways) with a phase shift against the diaphragm, so inhalation and exhalation follow different paths. The time
course is Lujan's ``1 - cos^2n`` breathing curve (long end-exhale rest), skewed so inhalation and exhalation differ.
The lung density does not change with breathing, which keeps ``phase_f(x) = phase_0(x + u_f(x))`` exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from scripts.phantoms.base import (Phantom, centred_mm, ellipsoid_distance, lagged, paint, render_frames, smooth_noise,
                                   smoothstep, soft_inside, storable, voxel_affine)
from scripts.utils.errors import InputError

HU = {"air": -1000.0, "fat": -100.0, "muscle": 50.0, "soft": 40.0, "liver": 60.0, "bone": 300.0, "cortex": 700.0,
      "disc": 80.0, "csf": 15.0, "mediastinal_fat": -90.0, "couch": -500.0, "couch_shell": 300.0}


@dataclasses.dataclass(frozen=True)
class _Chest:
    """Everything a seed decides (mm in the RAS frame centred on the volume, HU, breathing cycle fractions)."""

    body_centre: tuple[float, float]
    body_axes: tuple[float, float]
    fat: float
    muscle: float
    apex: float  # height of the lung apices
    domes: tuple[float, float]  # height of the right and left diaphragm domes
    carina: float
    heart: tuple[tuple[float, float, float], tuple[float, float, float]]  # centre, semi-axes
    lung_hu: float
    gravity_hu: float  # the dependent (posterior) lung is denser by this much
    nodule_hu: float
    nodule_radius: float
    noise: float
    amplitude: tuple[float, float]  # superior-inferior diaphragm motion, right and left
    fade: float  # exponent of the decay of the superior-inferior motion towards the apex
    chest_wall: tuple[float, float]  # anterior-posterior and lateral chest wall motion
    sharpness: float  # n of Lujan's 1 - cos^2n curve
    skew: float
    lags: tuple[float, float, float]  # right diaphragm, left diaphragm, chest wall
    period_ms: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_Chest":
        u = rng.uniform
        right = u(10, 20)
        left = float(np.clip(right + float(rng.choice([-1, 1])) * u(2, 5), 10, 20))
        left = left if abs(left - right) >= 2 else right - 2 if right >= 12 else right + 2
        dome_right = u(-70, -50)
        bx, by = u(-8, 8), u(-10, 5)
        return cls(
            body_centre=(bx, by),
            body_axes=(u(135, 150), u(95, 110)),
            fat=u(8, 20),
            muscle=u(10, 16),
            apex=u(125, 145),
            domes=(dome_right, dome_right - u(8, 20)),
            carina=u(40, 60),
            heart=((bx - u(20, 30), by + u(15, 30), dome_right - u(0, 10) + u(40, 55)),
                   (u(50, 60), u(40, 50), u(50, 60))),
            lung_hu=u(-875, -850),
            gravity_hu=u(40, 80),
            nodule_hu=u(20, 45),
            nodule_radius=u(5, 10),
            noise=u(8, 18),
            amplitude=(right, left),
            fade=u(1.0, 1.6),
            chest_wall=(u(3, 8), u(1, 3)),
            sharpness=u(1.5, 3.0),
            skew=u(-0.4, 0.4),
            lags=(u(-0.03, 0.03), u(-0.03, 0.03), float(rng.choice([-1, 1])) * u(0.06, 0.12)),
            period_ms=u(3500, 5500),
        )

    def diaphragm(self, x, y):
        """Height (mm) of the diaphragm under ``(x, y)``: two domes, lower towards the sides and the back."""
        bx, by = self.body_centre
        right = 0.5 * (1.0 + np.tanh((x - bx) / 10.0))
        bowl = -0.006 * ((np.abs(x - bx) - 55.0) ** 2 + (y - by - 5.0) ** 2) + 0.15 * (y - by)
        return right * self.domes[0] + (1.0 - right) * self.domes[1] + bowl

    def apex_height(self, x, y):
        """Height (mm) of the lung top over ``(x, y)``: a dome over each hemithorax."""
        bx, by = self.body_centre
        return self.apex - 0.01 * ((np.abs(x - bx) - 50.0) ** 2 + (y - by) ** 2)

    def spine(self) -> tuple[float, float]:
        bx, by = self.body_centre
        return bx, by - self.body_axes[1] + 45.0

    def cavity_distance(self, x, y):
        """Signed distance (mm) to the inside of the rib cage."""
        bx, by = self.body_centre
        inset = self.fat + self.muscle
        return ellipsoid_distance((x - bx, y - by), (self.body_axes[0] - inset, self.body_axes[1] - inset))

    def mediastinum_distance(self, x, y, z):
        """Signed distance (mm) to the mediastinum, narrower above the carina."""
        bx, by = self.body_centre
        upper = smoothstep((z - self.carina) / 30.0)
        return ellipsoid_distance((x - bx + 5.0, y - by - 10.0), (40.0 - 15.0 * upper, 70.0 - 20.0 * upper))

    def lung(self, x, y, z, edge: float) -> np.ndarray:
        """Occupancy of the lungs in [0, 1] at points ``(x, y, z)`` (mm, broadcastable arrays)."""
        sx, sy = self.spine()
        centre, axes = self.heart
        return (soft_inside(self.cavity_distance(x, y), edge)
                * soft_inside(self.diaphragm(x, y) - z, edge)
                * soft_inside(z - self.apex_height(x, y), edge)
                * soft_inside(-self.mediastinum_distance(x, y, z), edge)
                * soft_inside(-ellipsoid_distance((x - centre[0], y - centre[1], z - centre[2]), axes), edge)
                * soft_inside(32.0 - np.hypot(x - sx, y - sy), edge))


def breathing_curve(t: np.ndarray, sharpness: float, skew: float) -> np.ndarray:
    """Exhaled fraction over one cycle (``t`` in cycles): 0 at end-inhale (t = 0), 1 at end-exhale (t = 0.5).

    Lujan's ``1 - cos^(2n)(pi w)`` with ``n = sharpness``, on the skewed time ``w = t + skew sin(2 pi t) / (2 pi)``
    (``w`` keeps 0, 0.5 and 1 in place).
    """
    w = t + skew * np.sin(2.0 * np.pi * t) / (2.0 * np.pi)
    return 1.0 - np.abs(np.cos(np.pi * w)) ** (2.0 * sharpness)


def _segment_distance(points: Sequence[np.ndarray], start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance (mm) from broadcastable ``points`` (x, y, z) to the segment ``start``-``end``."""
    d = end - start
    rel = [p - s for p, s in zip(points, start)]
    along = np.clip(sum(r * di for r, di in zip(rel, d)) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.sqrt(sum((r - along * di) ** 2 for r, di in zip(rel, d)))


def _vessel_tree(c: _Chest, rng: np.random.Generator, edge: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Segments ``(start, end, radius)`` of each lung's vessel tree, from the hilum outwards, kept inside the lung.

    Five trunks per lung; each segment, 4-7 radii long, splits in two at 20-40 degrees, leaning away from the
    hilum, with the radius shrinking by 0.7-0.82 at each split, down to 0.7 mm.
    """
    bx, by = c.body_centre
    segments = []

    def grow(start, direction, radius, hilum):
        if radius < 0.7:
            return
        end = start + min(rng.uniform(4, 7) * radius, 40.0) * direction
        if c.lung(*end, edge) < 0.5:
            return
        segments.append((start, end, radius))
        outward = (end - hilum) / max(np.linalg.norm(end - hilum), 1e-9)
        normal = np.cross(direction, rng.standard_normal(3))
        normal /= max(np.linalg.norm(normal), 1e-9)
        for sign in (1.0, -1.0):
            angle = np.deg2rad(rng.uniform(20, 40))
            child = np.cos(angle) * direction + sign * np.sin(angle) * normal + 0.3 * outward
            grow(end, child / np.linalg.norm(child), radius * rng.uniform(0.7, 0.82), hilum)

    for side in (1.0, -1.0):
        hilum = np.array([bx + side * 40.0, by + 5.0, c.carina - 25.0])
        for trunk in ((0.4, 0.2, 0.9), (0.5, -0.3, 0.8), (1.0, 0.3, 0.0), (1.0, -0.4, -0.2), (0.5, -0.4, -0.8)):
            direction = np.array([side * trunk[0], trunk[1], trunk[2]])
            grow(hilum, direction / np.linalg.norm(direction), rng.uniform(4.5, 6.0), hilum)
    return segments


def _draw_tubes(shape, spacing, segments, edge: float) -> np.ndarray:
    """Occupancy in [0, 1] of the union of tubes ``(start, end, radius)`` (mm), each drawn in its bounding box."""
    axes = centred_mm(shape, spacing)
    origin = np.array([float(a.ravel()[0]) for a in axes])
    occupancy = np.zeros(shape, np.float32)
    for start, end, radius in segments:
        reach = radius + 3.0 * edge
        low = np.maximum(np.floor((np.minimum(start, end) - reach - origin) / spacing).astype(int), 0)
        high = np.minimum(np.ceil((np.maximum(start, end) + reach - origin) / spacing).astype(int) + 1, shape)
        if np.any(high <= low):
            continue
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        points = [a[tuple(box[k] if k == i else slice(None) for k in range(3))] for i, a in enumerate(axes)]
        tube = soft_inside(_segment_distance(points, start, end) - radius, edge)
        np.maximum(occupancy[box], tube, out=occupancy[box])
    return occupancy


def _nodule(c: _Chest, rng: np.random.Generator, edge: float) -> np.ndarray:
    """Centre (mm) of a nodule that fits, with a margin, in a lower lobe."""
    bx, by = c.body_centre
    margin = c.nodule_radius + 6.0
    for _ in range(200):
        side = float(rng.choice([-1.0, 1.0]))
        x, y = bx + side * rng.uniform(40, 80), by - rng.uniform(0, 45)
        centre = np.array([x, y, c.diaphragm(x, y) + c.nodule_radius + rng.uniform(15, 40)])
        probes = centre + margin * np.vstack([np.zeros(3), np.eye(3), -np.eye(3)])
        if np.all(c.lung(probes[:, 0], probes[:, 1], probes[:, 2], edge) > 0.99):
            return centre
    raise RuntimeError("no room for a nodule in the lower lobes")  # the drawn anatomy always has room


def _anatomy(c: _Chest, shape, spacing, rng: np.random.Generator):
    """End-inhale image in HU (noise-free, textured) and labels (0 outside, 1 body, 2 lung, 3 nodule)."""
    x, y, z = centred_mm(shape, spacing)
    edge = 0.4 * min(spacing)
    bx, by = c.body_centre
    a, b = c.body_axes
    img = np.full(shape, HU["air"], np.float32)
    couch_top = by - b - 10.0
    couch = soft_inside(np.abs(y - couch_top + 5.0) - 5.0, edge) * soft_inside(np.abs(x - bx) - a - 30.0, edge)
    paint(img, couch, HU["couch"])
    paint(img, couch * soft_inside(np.abs(y - couch_top + 1.0) - 1.0, edge), HU["couch_shell"])
    body = soft_inside(ellipsoid_distance((x - bx, y - by), (a, b)), edge)
    coarse = smooth_noise(rng, shape, [12.0 / s for s in spacing])
    fine = smooth_noise(rng, shape, [2.5 / s for s in spacing])
    paint(img, body, HU["fat"] + 15.0 * fine)
    muscle = soft_inside(ellipsoid_distance((x - bx, y - by), (a - c.fat, b - c.fat)), edge)
    paint(img, muscle, HU["muscle"] + 10.0 * fine)
    ribs = np.clip((np.cos(2.0 * np.pi * (z + 0.4 * (by - y)) / 28.0) - 0.55) / 0.2, 0.0, 1.0)
    thorax = smoothstep((z - c.domes[1] + 50.0) / 20.0) * smoothstep((c.apex + 20.0 - z) / 20.0)
    cavity = soft_inside(c.cavity_distance(x, y), edge)
    paint(img, muscle * (1.0 - cavity) * ribs * thorax, HU["bone"])
    below = cavity * soft_inside(z - c.diaphragm(x, y), edge)
    paint(img, cavity, HU["mediastinal_fat"] + 20.0 * coarse)
    paint(img, below, HU["soft"] + 10.0 * coarse)
    paint(img, below * soft_inside(bx - 25.0 - x, edge) * smoothstep((z - c.domes[0] + 150.0) / 10.0),
          HU["liver"] + 5.0 * coarse)
    stomach = (bx - 60.0, by + 10.0, c.domes[1] - 45.0)
    paint(img, below * soft_inside(ellipsoid_distance((x - stomach[0], y - stomach[1], z - stomach[2]),
                                                      (40.0, 35.0, 40.0)), edge), HU["soft"])
    bubble = np.sqrt((x - stomach[0]) ** 2 + (y - stomach[1] - 12.0) ** 2 + (z - stomach[2] - 25.0) ** 2)
    paint(img, below * soft_inside(bubble - 15.0, edge), HU["air"])
    sx, sy = c.spine()
    paint(img, soft_inside(np.hypot(x - sx, y - sy) - 32.0, edge), HU["muscle"] + 10.0 * fine)
    vertebra = np.hypot(x - sx, y - sy)
    discs = np.clip((np.cos(2.0 * np.pi * z / 28.0) - 0.85) / 0.1, 0.0, 1.0)
    paint(img, soft_inside(vertebra - 17.0, edge), HU["cortex"])
    paint(img, soft_inside(vertebra - 15.0, edge), HU["bone"] + 30.0 * fine)
    paint(img, soft_inside(vertebra - 17.5, edge) * discs, HU["disc"])
    canal = np.hypot(x - sx, y - sy + 25.0)
    paint(img, soft_inside(canal - 13.0, edge), HU["cortex"])
    paint(img, soft_inside(canal - 8.0, edge), HU["csf"])
    centre, axes = c.heart
    heart = soft_inside(ellipsoid_distance((x - centre[0], y - centre[1], z - centre[2]), axes), edge)
    paint(img, heart * (cavity - below), HU["soft"] + 8.0 * coarse)
    aorta = _segment_distance((x, y, z), np.array([sx - 22.0, sy + 28.0, -1e4]),
                              np.array([sx - 22.0, sy + 28.0, c.carina + 25.0]))
    paint(img, soft_inside(aorta - 12.0, edge), HU["soft"])
    lung = c.lung(x, y, z, edge)
    dependent = np.clip((by + b - y) / (2.0 * b), 0.0, 1.0)
    paint(img, lung, c.lung_hu + c.gravity_hu * (dependent - 0.5) + 12.0 * coarse + 10.0 * fine)
    vessels = _draw_tubes(shape, spacing, _vessel_tree(c, rng, edge), edge)
    paint(img, lung * vessels, HU["soft"] + 10.0 * fine)
    carina = np.array([bx, by + 10.0, c.carina])
    airways = [(np.array([bx, by + 15.0, 1e4]), carina, 9.0)]
    airways += [(carina, np.array([bx + side * 40.0, by + 5.0, c.carina - 25.0]), 6.0) for side in (1.0, -1.0)]
    paint(img, _draw_tubes(shape, spacing, [(p, q, r + 2.0) for p, q, r in airways], edge), HU["soft"])
    paint(img, _draw_tubes(shape, spacing, airways, edge), HU["air"])
    nodule_centre = _nodule(c, rng, edge)
    offset = [x - nodule_centre[0], y - nodule_centre[1], z - nodule_centre[2]]
    distance = np.sqrt(sum(o**2 for o in offset))
    lobulation = 1.0 + 0.15 * np.sin(3.0 * np.arctan2(offset[1], offset[0])) * offset[2] / np.maximum(distance, 1e-3)
    nodule = soft_inside(distance - c.nodule_radius * lobulation, edge)
    paint(img, nodule, c.nodule_hu + 10.0 * fine)
    labels = np.where(nodule > 0.5, 3, np.where(lung > 0.5, 2, np.where(body > 0.5, 1, 0)))
    return img, labels.astype(np.uint8)


def _modes(c: _Chest, shape, spacing) -> np.ndarray:
    """Motion modes ``(3, 3, X, Y, Z)`` in voxels at full strength, pull-back convention (where a point of the
    end-exhale phase was at end-inhale): right hemidiaphragm, left hemidiaphragm, chest wall."""
    x, y, z = centred_mm(shape, spacing)
    bx, by = c.body_centre
    a, b = c.body_axes
    sx, sy = c.spine()
    # superior-inferior: full at and under the diaphragm, fading towards the apex, sliding at the rib cage
    floor, top = c.diaphragm(x, y), c.apex_height(x, y)
    height = z - floor
    above = np.clip((top - floor - height) / np.maximum(top - floor, 1.0), 0.0, 1.0) ** c.fade
    under = 1.0 - 0.6 * np.clip((-height - 60.0) / 100.0, 0.0, 1.0)
    profile = np.where(height >= 0, above, under)
    moving = (soft_inside(c.cavity_distance(x, y), 2.0)
              * (1.0 - soft_inside(np.hypot(x - sx, y - sy) - 30.0, 3.0))
              * (1.0 - 0.4 * soft_inside(c.mediastinum_distance(x, y, z), 5.0)))
    right = 0.5 * (1.0 + np.tanh((x - bx) / 20.0))
    modes = np.zeros((3, 3) + tuple(shape), np.float32)
    modes[0, 2] = -c.amplitude[0] * profile * moving * right / spacing[2]  # it came from below
    modes[1, 2] = -c.amplitude[1] * profile * moving * (1.0 - right) / spacing[2]
    # chest wall: the inhaled chest was larger, most in front, not at the spine and the couch
    anterior = np.clip((y - sy) / (by + b - sy), 0.0, 1.0)
    lateral = np.clip((y - by + b) / b, 0.0, 1.0)
    upper_fade = 0.4 + 0.6 * smoothstep((c.apex + 20.0 - z) / 60.0)
    modes[2, 0] = c.chest_wall[1] * (x - bx) / a * lateral * upper_fade / spacing[0]
    modes[2, 1] = c.chest_wall[0] * anterior * upper_fade / spacing[1]
    return storable(modes)


def lung_phantom(
    seed: int,
    shape: Sequence[int] = (128, 128, 128),
    phases: int = 10,
    spacing: Sequence[float] = (2.5, 2.5, 2.5),
) -> Phantom:
    """A respiratory 4D CT of the chest with its true motion (see the module docstring).

    Args:
        seed: decides anatomy, vessels, nodule, breathing and noise; the same seed gives the same phantom.
        shape: ``(X, Y, Z)`` voxels, at least 16 each.
        phases: respiratory phases, even and at least 4; phase 0 is end-inhale, ``phases // 2`` end-exhale.
        spacing: voxel size in mm; the anatomy is in mm, so ``shape * spacing`` is the field of view (the default
            320 mm holds the whole chest).

    Returns:
        :class:`~scripts.phantoms.base.Phantom` in HU (air -1000, lung ~ -850, soft tissue ~40, bone up to 700),
        labels 0 outside, 1 body, 2 lung, 3 nodule; ``ed`` = 0, ``es`` = ``phases // 2``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise InputError("--shape", f"a lung phantom needs at least 16 x 16 x 16 voxels, got {shape}")
    if int(phases) < 4 or int(phases) % 2:
        raise InputError("--frames", f"a breathing cycle needs an even number of phases, at least 4, got {phases}")
    rng = np.random.default_rng(seed)
    c = _Chest.draw(rng)
    anatomy, labels = _anatomy(c, shape, spacing, rng)
    modes = _modes(c, shape, spacing)
    t = np.arange(phases) / phases
    weights = np.stack([lagged(lambda s: breathing_curve(s, c.sharpness, c.skew), t, lag) for lag in c.lags],
                       axis=1).astype(np.float32)
    clean, moved_labels = render_frames(anatomy, modes, weights, labels)
    clean += c.noise * rng.standard_normal(clean.shape, dtype=np.float32)
    return Phantom(
        array=np.maximum(clean, -1024.0, out=clean),  # CT stores nothing below -1024
        affine=voxel_affine(shape, spacing),
        ed=0,
        es=phases // 2,
        modes=modes,
        weights=weights,
        frame_time_ms=c.period_ms / phases,
        labels=moved_labels,
    )
