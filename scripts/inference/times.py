"""The time points to synthesise, from ``--t`` or ``--num_frames``, validated."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

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
