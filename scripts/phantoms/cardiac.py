"""Synthetic short-axis cine MR (bSSFP-like) of a beating heart with known motion.

Anatomy (reference = end-diastole, frame 0): LV blood pool (bright), LV myocardium (dark) with two papillary
muscles, RV crescent with a thin free wall, epicardial fat, chest wall (subcutaneous fat, muscle), lungs with a few
bright vessels, liver in the apical slices, spine with spinal canal, descending aorta; smooth multiplicative texture,
a coil-like intensity shading and Rician noise. Per seed: heart size, position, in-plane orientation, wall
thickness, RV size, intensities, noise, and the timing of the cycle.

The stack is planned like a real short-axis cine, from just above the base to just past the apex, so the long-axis
geometry is in slice units (``spacing[2]`` only enters the affine); slice 0 is on the apical side and the volume's
third axis runs towards the base (superior in the RAS affine).

Motion over one cycle of ``frames`` frames, ED at frame 0, ES at 35-45 % of the cycle. The displacement is a sum of
modes (see :mod:`scripts.phantoms.make`), each with its own time curve:

- radial contraction of four wall regions (septal/lateral x basal/apical), thickening the wall (incompressible
  profile), each with the LV volume curve delayed by its own lag (septum first, basal/apical offset);
- twist: base and apex rotate in opposite directions, peaking around ES and untwisting quickly in early diastole;
- base descent (through-plane), largest at the base, none at the apex, relaxing earlier than the volume;
- RV free-wall motion towards the septum, and a small whole-heart translation.

The volume curve is physiological, not a ramp: fast early ejection, rapid early filling, diastasis and an atrial kick.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from scripts.phantoms.base import (Phantom, centred_mm, ellipsoid_distance, lagged, paint, render_frames, smooth_noise,
                                   smoothstep, soft_inside, storable, voxel_affine)
from scripts.utils.errors import InputError

OUTER_REACH_MM = 30.0  # how far beyond the heart's surface its motion fades out


@dataclasses.dataclass(frozen=True)
class _Heart:
    """Everything a seed decides (mm, radians, cycle fractions, MR units)."""

    psi: float  # in-plane rotation of the whole anatomy
    centre: tuple[float, float]  # LV axis at the base, anatomy frame
    tilt: tuple[float, float]  # LV axis drift from base to apex
    r_endo: float  # ED endocardial radius at the base
    wall: float
    apex_cap: float  # long-axis position (base 0, endocardial apex 1) of the epicardial apex
    rv_angle: float  # direction LV -> RV
    rv_depth: float
    rv_span: float  # RV half-width across, as a multiple of the LV epicardial radius
    s_range: tuple[float, float]  # long-axis position of slice 0 and of the last slice
    body_offset: tuple[float, float]
    body_axes: tuple[float, float]
    fat: float
    muscle: float
    intensity: dict
    noise: float
    shading: tuple[float, float]  # coil shading gradient (per 100 mm) and its direction
    t_es: float
    skew: float  # systolic shape: < 1 ejects early
    e_share: float  # share of filling in the early (E) wave
    e_length: float  # length of rapid filling, fraction of diastole
    a_start: float  # start of atrial filling, fraction of diastole
    contraction: float  # endocardial radius shortening at ES, fraction
    regional: tuple[float, float]  # contraction factor septal, lateral
    lag_septal_lateral: float
    lag_base_apex: float
    twist: tuple[float, float]  # peak rotation base, apex
    untwist: float  # untwisting time, fraction of diastole
    descent: float  # base descent at ES, fraction of the LV length
    rv_motion: float
    rv_lag: float
    shift: tuple[float, float]  # whole-heart translation at ES (mm) and its direction
    rr_ms: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_Heart":
        u = rng.uniform
        blood = u(900, 1100)
        fat = u(750, 950)
        return cls(
            psi=math.radians(u(-20, 20)),
            centre=(u(-12, 12), u(-12, 12)),
            tilt=(u(-8, 8), u(-8, 8)),
            r_endo=u(21, 28),
            wall=u(7, 11),
            apex_cap=u(1.06, 1.12),
            rv_angle=math.radians(u(10, 40)),
            rv_depth=u(14, 22),
            rv_span=u(1.1, 1.35),
            s_range=(u(1.1, 1.2), u(-0.15, -0.05)),
            body_offset=(u(25, 45), -u(30, 40)),
            body_axes=(u(160, 185), u(105, 120)),
            fat=u(8, 16),
            muscle=u(8, 14),
            intensity={
                "lv_blood": blood,
                "rv_blood": blood * u(0.85, 0.98),
                "aorta": blood * u(0.8, 0.95),
                "myo": u(200, 300),
                "fat": fat,
                "epi_fat": fat * u(0.8, 0.95),
                "muscle": u(230, 320),
                "liver": u(320, 420),
                "lung": u(30, 70),
                "lung_vessel": u(250, 400),
                "bone": u(400, 520),
                "csf": u(950, 1150),
            },
            noise=u(15, 30),
            shading=(u(0.1, 0.3), u(0, 2 * math.pi)),
            t_es=u(0.35, 0.45),
            skew=u(0.5, 0.7),
            e_share=u(0.6, 0.85),
            e_length=u(0.3, 0.45),
            a_start=u(0.7, 0.8),
            contraction=u(0.36, 0.45),
            regional=(u(0.75, 0.9), u(1.0, 1.15)),
            lag_septal_lateral=u(0.06, 0.12),
            lag_base_apex=u(0.02, 0.06),
            twist=(math.radians(-u(3, 6)), math.radians(u(8, 14))),
            untwist=u(0.12, 0.2),
            descent=u(0.05, 0.09),
            rv_motion=u(4, 7),
            rv_lag=u(0.0, 0.05),
            shift=(u(1.5, 4), u(0, 2 * math.pi)),
            rr_ms=u(750, 1100),
        )


def cycle_curve(t: np.ndarray, t_es: float, skew: float, e_share: float, e_length: float, a_start: float):
    """Contraction over one cycle (``t`` in cycles, ED at 0): 0 at ED, 1 at ``t_es``, back to 0 at t = 1.

    Systole ``(1 - cos(pi tau^skew)) / 2`` (``skew`` < 1: fast early ejection); diastole loses ``e_share`` of the
    contraction in a rapid early wave lasting ``e_length`` of diastole and the rest in an atrial wave from
    ``a_start``. Smooth (zero slope) at ED and ES.
    """
    tau_s = np.clip(t / t_es, 0.0, 1.0)
    systole = 0.5 * (1.0 - np.cos(np.pi * tau_s**skew))
    tau_d = np.clip((t - t_es) / (1.0 - t_es), 0.0, 1.0)
    diastole = 1.0 - e_share * smoothstep(tau_d / e_length) - (1.0 - e_share) * smoothstep(
        (tau_d - a_start) / (1.0 - a_start))
    return np.where(t <= t_es, systole, diastole)


class _Geometry:
    """The heart's coordinates on the grid: anatomy-frame mm, polar about the LV axis, long-axis position."""

    def __init__(self, h: _Heart, shape: Sequence[int], spacing: Sequence[float]):
        x, y, _ = centred_mm(shape, spacing)
        c, s = math.cos(h.psi), math.sin(h.psi)
        self.u, self.v = c * x + s * y, -s * x + c * y  # (X, Y, 1) rotated into the anatomy frame
        k = np.arange(shape[2], dtype=np.float32) / max(shape[2] - 1, 1)
        self.s = (h.s_range[0] + (h.s_range[1] - h.s_range[0]) * k).reshape(1, 1, -1)  # base 0, apex 1
        self.slices_per_length = (shape[2] - 1) / (h.s_range[0] - h.s_range[1])
        s_in = np.clip(self.s, 0.0, 1.0)
        self.r_endo = h.r_endo * np.sqrt(np.clip(1.0 - self.s**2, 0.0, 1.0)) * (self.s <= 1)
        thinning = np.clip(1.0 + self.s / 0.08, 0.15, 1.0)  # myocardium thins to atrial wall above the base
        r_epi_ellipsoid = (h.r_endo + h.wall) * np.sqrt(np.clip(1.0 - (self.s / h.apex_cap) ** 2, 0.0, 1.0))
        self.r_epi = np.where(self.s < 0, h.r_endo + h.wall * thinning, r_epi_ellipsoid)
        self.p = self.u - (h.centre[0] + h.tilt[0] * s_in)
        self.q = self.v - (h.centre[1] + h.tilt[1] * s_in)
        self.r = np.sqrt(self.p**2 + self.q**2)
        self.theta = np.arctan2(self.q, self.p)
        # RV: an ellipse on the LV's septal side; the LV drawn over it leaves a crescent
        e_rv = math.cos(h.rv_angle), math.sin(h.rv_angle)
        self.xi = self.p * e_rv[0] + self.q * e_rv[1]  # along LV -> RV
        eta = -self.p * e_rv[1] + self.q * e_rv[0]
        rv_size = np.sqrt(np.clip(1.0 - (s_in / 0.85) ** 2, 0.0, 1.0)) * (self.s <= 0.85)
        r_epi_base = h.r_endo + h.wall
        self.rv_a = (0.5 * r_epi_base + h.rv_depth) * rv_size
        self.rv_b = h.rv_span * r_epi_base * np.maximum(rv_size, 0.3)
        self.rv_distance = ellipsoid_distance((self.xi - 0.5 * r_epi_base, eta), (self.rv_a, self.rv_b))
        self.rv_distance = np.where(rv_size > 0, self.rv_distance, np.inf)
        self.heart_distance = np.minimum(self.r - self.r_epi, self.rv_distance)
        # where the motion reaches: a smooth envelope of LV and RV (no atrial thinning, no sharp apex), fading
        # over OUTER_REACH_MM beyond it, so the displacement has no steep gradients anywhere
        narrowing = 1.0 - 0.5 * s_in**2
        rv_envelope = ellipsoid_distance((self.xi - 0.5 * r_epi_base, eta), (
            (0.5 * r_epi_base + h.rv_depth) * narrowing, h.rv_span * r_epi_base * narrowing))
        self.rv_reach = smoothstep(1.0 - np.maximum(rv_envelope, 0.0) / OUTER_REACH_MM)
        self.reach = smoothstep(1.0 - np.maximum(np.minimum(self.r - r_epi_base * narrowing, rv_envelope), 0.0)
                                / OUTER_REACH_MM)


def _anatomy(h: _Heart, g: _Geometry, shape, spacing, rng: np.random.Generator):
    """ED image (noise-free, textured, shaded) and ACDC labels."""
    i = h.intensity
    edge = 0.4 * min(spacing[:2])
    img = np.zeros(shape, np.float32)
    body_u, body_v = g.u - (h.centre[0] + h.body_offset[0]), g.v - (h.centre[1] + h.body_offset[1])
    a, b = h.body_axes
    paint(img, soft_inside(ellipsoid_distance((body_u, body_v), (a, b)), edge), i["fat"])
    paint(img, soft_inside(ellipsoid_distance((body_u, body_v), (a - h.fat, b - h.fat)), edge), i["muscle"])
    inner = h.fat + h.muscle
    cavity = soft_inside(ellipsoid_distance((body_u, body_v), (a - inner, b - inner)), edge)
    fine = smooth_noise(rng, shape, (0.7, 0.7, 0.5))
    lung = i["lung"] + i["lung_vessel"] * smoothstep((fine - 2.2) / 0.6)
    paint(img, cavity, lung)
    liver_radius = 75.0 * np.clip((g.s - 0.45) / 0.7, 0.0, 1.0)
    liver_centre = 70.0 * math.cos(-0.7), 70.0 * math.sin(-0.7)
    paint(img, cavity * soft_inside(np.hypot(g.p - liver_centre[0], g.q - liver_centre[1]) - liver_radius, edge),
          i["liver"])
    spine_u, spine_v = body_u, body_v + b - 50.0
    paint(img, soft_inside(np.hypot(spine_u, spine_v) - 34.0, edge), i["muscle"])
    paint(img, soft_inside(np.hypot(spine_u, spine_v) - 18.0, edge), i["bone"])
    paint(img, soft_inside(np.hypot(spine_u, spine_v + 26.0) - 7.0, edge), i["csf"])
    aorta = np.hypot(spine_u + 28.0, spine_v - 20.0) - 11.0
    paint(img, soft_inside(aorta - 3.0, edge), i["epi_fat"])
    paint(img, soft_inside(aorta, edge), i["aorta"])
    coarse = smooth_noise(rng, shape, (5.0, 5.0, 1.5))
    paint(img, soft_inside(g.heart_distance - np.clip(1.5 + 2.5 * coarse, 0.0, 6.0), edge), i["epi_fat"])
    rv_wall = soft_inside(g.rv_distance - 3.0, edge)
    paint(img, rv_wall, i["myo"])
    rv_blood = soft_inside(g.rv_distance, edge)
    paint(img, rv_blood, i["rv_blood"])
    lv_myo = soft_inside(g.r - g.r_epi, edge)
    paint(img, lv_myo, i["myo"])
    lv_blood = soft_inside(g.r - g.r_endo, edge)
    paint(img, lv_blood, i["lv_blood"])
    papillary_span = smoothstep((g.s - 0.2) / 0.1) * smoothstep((0.85 - g.s) / 0.1)
    for side in (-1.0, 1.0):
        angle = h.rv_angle + math.pi + side * math.radians(50.0)
        radius = np.maximum(g.r_endo - 3.5, 0.0)
        centre = radius * math.cos(angle), radius * math.sin(angle)
        blob = soft_inside(np.hypot(g.p - centre[0], g.q - centre[1]) - 0.18 * g.r_endo, edge)
        paint(img, blob * papillary_span, i["myo"])
    ventricles = g.s >= 0  # ACDC labels stop at the base: no atria
    labels = np.where(lv_blood > 0.5, 3, np.where(lv_myo > 0.5, 2, np.where(rv_blood > 0.5, 1, 0))) * ventricles
    texture = 1.0 + 0.05 * coarse + 0.025 * smooth_noise(rng, shape, (1.5, 1.5, 0.7))
    gradient, direction = h.shading
    shading = np.exp(gradient * (math.cos(direction) * g.u + math.sin(direction) * g.v) / 100.0
                     + 0.08 * smooth_noise(rng, shape, (20.0, 20.0, 4.0)))
    return (img * texture * shading).astype(np.float32), labels.astype(np.uint8)


def _modes(h: _Heart, g: _Geometry, spacing) -> np.ndarray:
    """Motion modes ``(9, 3, X, Y, Z)`` in voxels at full strength (what the weights scale), pull-back convention.

    Order: radial septal-base, septal-apex, lateral-base, lateral-apex; twist base, apex; RV; shift; base descent.
    """
    r = np.maximum(g.r, 1e-3)
    e_r = g.p / r, g.q / r
    e_theta = -e_r[1], e_r[0]
    septal = 0.5 * (1.0 + np.cos(g.theta - h.rv_angle))
    base = np.clip(1.0 - g.s, 0.0, 1.0)
    atrial = np.clip(1.0 + g.s / 0.3, 0.4, 1.0)  # less in-plane contraction above the base

    def radial(k: float):
        # where a point of the ES frame was at ED: linear inside the ES cavity, area-preserving in the wall
        r_es = np.maximum(g.r_endo * (1.0 - k), 1e-3)
        area = g.r_endo**2 - r_es**2
        outward = np.where(g.r < r_es, (g.r_endo - r_es) * g.r / r_es, np.sqrt(g.r**2 + area) - g.r)
        return outward * g.reach * atrial

    in_plane = []
    for region_weight, factor in ((septal, h.regional[0]), (1.0 - septal, h.regional[1])):
        outward = radial(h.contraction * factor) * region_weight
        in_plane += [(outward * base * e_r[0], outward * base * e_r[1]),
                     (outward * (1 - base) * e_r[0], outward * (1 - base) * e_r[1])]
    for angle, weight in zip(h.twist, (base, 1.0 - base)):
        along = angle * g.r * g.reach * weight
        in_plane.append((along * e_theta[0], along * e_theta[1]))
    e_rv = math.cos(h.rv_angle), math.sin(h.rv_angle)
    r_epi_base = h.r_endo + h.wall
    towards_free_wall = np.clip((g.xi - 0.3 * r_epi_base) / (0.7 * r_epi_base + h.rv_depth), 0.0, 1.0)
    rv = h.rv_motion * towards_free_wall * g.rv_reach * septal**2
    shift, direction = h.shift
    translation = shift * g.reach
    in_plane += [(rv * e_rv[0], rv * e_rv[1]), (translation * math.cos(direction), translation * math.sin(direction))]
    modes = np.zeros((len(in_plane) + 1, 3) + g.heart_distance.shape, np.float32)
    c, s = math.cos(h.psi), math.sin(h.psi)
    for m, (du, dv) in enumerate(in_plane):  # anatomy frame -> image axes, mm -> voxels
        modes[m, 0] = (c * du - s * dv) / spacing[0]
        modes[m, 1] = (s * du + c * dv) / spacing[1]
    # base descent: a point of the ES frame came from further towards the base (higher slice index)
    modes[-1, 2] = h.descent * g.slices_per_length * np.where(g.s < 0, 1.0, base) * g.reach
    return storable(modes)


def _weights(h: _Heart, t: np.ndarray) -> np.ndarray:
    """``(T, 9)`` time weights of the modes (same order as :func:`_modes`)."""

    def volume(x):
        return cycle_curve(x, h.t_es, h.skew, h.e_share, h.e_length, h.a_start)

    def twist(x):  # peaks at ES, untwists before the filling waves
        return cycle_curve(x, h.t_es, 0.85 * h.skew, 1.0, h.untwist, h.a_start)

    def descent(x):  # long-axis relaxation leads the volume
        return cycle_curve(x, h.t_es, h.skew, min(h.e_share + 0.1, 1.0), 0.8 * h.e_length, h.a_start)

    half_sl, half_ba = 0.5 * h.lag_septal_lateral, 0.5 * h.lag_base_apex
    lags = [-half_sl + half_ba, -half_sl - half_ba, half_sl + half_ba, half_sl - half_ba]  # septum, apex first
    columns = [lagged(volume, t, lag) for lag in lags]
    columns += [lagged(twist, t, half_ba), lagged(twist, t, -half_ba)]
    columns += [lagged(volume, t, h.rv_lag), lagged(volume, t, 0.0), lagged(descent, t, 0.0)]
    return np.stack(columns, axis=1).astype(np.float32)


def _rician(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``clean`` plus complex Gaussian noise of std ``sigma`` (Rayleigh where ``clean`` is 0); reuses
    ``clean``'s memory."""
    clean += sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    np.square(clean, out=clean)
    imaginary = rng.standard_normal(clean.shape, dtype=np.float32)
    imaginary *= sigma
    clean += np.square(imaginary, out=imaginary)
    return np.sqrt(clean, out=clean)


def cardiac_phantom(
    seed: int,
    shape: Sequence[int] = (128, 128, 32),
    frames: int = 20,
    spacing: Sequence[float] = (1.5, 1.5, 10.0),
) -> Phantom:
    """A short-axis cine MR stack of one cardiac cycle with its true motion (see the module docstring).

    Args:
        seed: decides anatomy, intensities, timing and noise; the same seed gives the same phantom.
        shape: ``(X, Y, Z)`` voxels; in-plane at least 16 and at least 4 slices.
        frames: frames over the cycle, at least 6. ED is frame 0, ES the frame nearest 35-45 % of the cycle.
        spacing: voxel size in mm; the anatomy is in mm in-plane, so ``shape * spacing`` is the field of view
            (the default 192 mm shows the heart and its surroundings).

    Returns:
        :class:`~scripts.phantoms.base.Phantom` with ``array`` in MR units (background noise ~ 20-40, myocardium
        ~ 250, blood ~ 1000, fat ~ 850), ACDC labels, ``ed`` = 0.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape[:2]) < 16 or shape[2] < 4:
        raise InputError("--shape", f"a cardiac phantom needs at least 16 x 16 x 4 voxels, got {shape}")
    if int(frames) < 6:
        raise InputError("--frames", f"a cardiac cycle needs at least 6 frames, got {frames}")
    rng = np.random.default_rng(seed)
    h = _Heart.draw(rng)
    g = _Geometry(h, shape, spacing)
    anatomy, labels = _anatomy(h, g, shape, spacing, rng)
    modes = _modes(h, g, spacing)
    weights = _weights(h, np.arange(frames) / frames)
    clean, moved_labels = render_frames(anatomy, modes, weights, labels)
    return Phantom(
        array=_rician(clean, h.noise, rng),
        affine=voxel_affine(shape, spacing),
        ed=0,
        es=int(np.clip(round(h.t_es * frames), 2, frames - 2)),
        modes=modes,
        weights=weights,
        frame_time_ms=h.rr_ms / frames,
        labels=moved_labels,
    )
