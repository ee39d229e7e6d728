"""The time points to synthesise: from ``--t`` / ``--num_frames`` between two endpoints, or the frames of a whole series
made ``--upsample`` times finer; validated, and placed in time."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from scripts.io.time_labels import t_label
from scripts.utils.errors import InputError


def resolve_times(t: float | Sequence[float] | str | None, num_frames: int | None) -> list[float]:
    """The time points to synthesise, ascending: ``t`` as given, or ``num_frames`` evenly spaced strictly inside (0, 1).

    Raises InputError (naming ``--t`` / ``--num_frames``) for both or neither given, booleans (``True`` is not 1),
    values outside [0, 1] or NaN, an empty list, or duplicates, also after rounding to the three decimals of the
    output file names.
    """
    if t is not None and num_frames is not None:
        raise InputError("--t", "give either --t or --num_frames, not both")
    if t is None:
        n = 1 if num_frames is None else num_frames
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError("--num_frames", f"must be a positive whole number, got {num_frames!r}")
        if n > 999:  # more would share output file names at three decimals
            raise InputError("--num_frames", f"at most 999 frames between two endpoints, got {n}")
        return [(i + 1) / (n + 1) for i in range(n)]
    if isinstance(t, str):
        try:
            t = json.loads(t)
        except json.JSONDecodeError as err:
            raise InputError("--t", f"not a number or a list of numbers: {t!r}") from err
    values = [t] if isinstance(t, (int, float)) else list(t)
    if any(isinstance(v, bool) for v in values):
        raise InputError("--t", f"expected a number in [0, 1] or a list of them, got {t!r}")
    if not values:
        raise InputError("--t", "the list of time points is empty")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise InputError("--t", f"not a list of numbers: {t!r}") from err
    bad = [v for v in values if math.isnan(v) or not 0.0 <= v <= 1.0]
    if bad:
        raise InputError("--t", f"time points must lie in [0, 1] (0 = start frame, 1 = end frame), got {bad}")
    if len(set(values)) != len(values):
        raise InputError("--t", f"duplicate time points in {values}")
    labels = [t_label(v) for v in values]
    if len(set(labels)) != len(labels):
        raise InputError("--t", f"time points {values} would share an output file name ({labels}: three decimals); "
                                "give time points at least 0.001 apart")
    return sorted(values)


class CineFrame(NamedTuple):
    """One frame of an output cine, placed between two acquired frames.

    Attributes:
        previous, next: 0-based acquired frames it lies between (``previous == next`` for an acquired frame kept as
            it is; ``next < previous`` where a periodic cine wraps from its last frame to its first).
        fraction: where it lies between them, in [0, 1) (0 for an acquired frame).
    """

    previous: int
    next: int
    fraction: float

    @property
    def acquired(self) -> bool:
        return self.previous == self.next


def check_upsample(upsample, t, num_frames, start_frame, end_frame) -> int:
    """``upsample`` as a whole number >= 2; InputError naming ``--upsample`` when it is not or when it is combined
    with the two-endpoint arguments (``--t``, ``--num_frames``, ``--start_frame``, ``--end_frame``)."""
    given = [name for name, value in (("--t", t), ("--num_frames", num_frames), ("--start_frame", start_frame),
                                      ("--end_frame", end_frame)) if value is not None]
    if given:
        raise InputError("--upsample", f"works on the whole series; it cannot be combined with {', '.join(given)}")
    if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < 2:
        raise InputError("--upsample", f"must be a whole number >= 2 (frames per acquired frame), got {upsample!r}")
    return upsample


def upsample_plan(num_frames: int, factor: int, cyclic: bool) -> list[CineFrame]:
    """The frames of a series made ``factor`` times finer in time, in time order.

    Between every two consecutive acquired frames (and, for a ``cyclic`` series, from the last back to the first)
    ``factor - 1`` new frames at fractions ``1/factor ... (factor-1)/factor``; acquired frames kept. Length
    ``num_frames * factor`` when cyclic, ``(num_frames - 1) * factor + 1`` otherwise.
    """
    plan = []
    for a in range(num_frames):
        plan.append(CineFrame(a, a, 0.0))
        if a + 1 < num_frames or cyclic:
            b = (a + 1) % num_frames
            plan.extend(CineFrame(a, b, k / factor) for k in range(1, factor))
    return plan


def endpoints_plan(start: int, end: int, ts: Sequence[float]) -> list[CineFrame]:
    """The cine of the two-endpoint path: the start frame, the frames at ``ts`` strictly inside (0, 1), the end
    frame (a t of 0 or 1 is the acquired frame itself)."""
    inside = [CineFrame(start, end, float(t)) for t in ts if 0.0 < t < 1.0]
    return [CineFrame(start, start, 0.0), *inside, CineFrame(end, end, 0.0)]


def cycle_period_ms(times: Sequence[float] | None, nominal_ms: float | None = None) -> float | None:
    """The length (ms) of the cycle whose acquired frames lie at ``times`` (ms, increasing).

    The nominal R-R interval ``nominal_ms`` (DICOM NominalInterval) where the images give one that holds every frame
    (longer than ``times[-1] - times[0]``) and is at most twice ``T`` mean frame steps: a prospectively triggered cine
    acquires frames over part of the cycle only, and the pair from its last frame back to its first spans the rest.
    Otherwise ``T`` mean frame steps: the frames cover the cycle evenly, as a retrospectively gated cine's do. None
    when the times are unknown, fewer than 2 or not increasing.
    """
    if times is None or len(times) < 2:
        return None
    times = np.asarray(times, dtype=np.float64)
    if not np.all(np.diff(times) > 0):
        return None
    span = float(times[-1] - times[0])
    even = span * len(times) / (len(times) - 1)
    if nominal_ms is not None and math.isfinite(nominal_ms) and span < nominal_ms <= 2 * even:
        return float(nominal_ms)
    return even


def cycle_phases(times: Sequence[float] | None, period_ms: float | None) -> np.ndarray | None:
    """``(T,)`` where each acquired frame lies in its cycle, shares of ``period_ms`` in [0, 1) since the first frame
    (:func:`cycle_period_ms`); None when either is unknown."""
    if times is None or period_ms is None:
        return None
    times = np.asarray(times, dtype=np.float64)
    return (times - times[0]) / period_ms


def cine_times_ms(plan: Sequence[CineFrame], times: Sequence[float] | None,
                  nominal_ms: float | None = None) -> np.ndarray | None:
    """Time (ms) of each cine frame, linear between its acquired frames' ``times``; across the wrap of a periodic
    cine, one period is :func:`cycle_period_ms` of ``times`` and the nominal R-R interval ``nominal_ms``. None when
    the acquired times are unknown or not increasing."""
    period = cycle_period_ms(times, nominal_ms)
    if period is None:
        return None
    times = np.asarray(times, dtype=np.float64)
    out = []
    for frame in plan:
        t0, t1 = times[frame.previous], times[frame.next]
        if frame.next < frame.previous:
            t1 = t1 + period
        out.append(t0 + frame.fraction * (t1 - t0))
    return np.array(out)
