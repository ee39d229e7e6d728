"""Parsing of command-line values shared by several verbs."""

from __future__ import annotations

from collections.abc import Sequence

from scripts.utils.errors import InputError


def parse_shape(shape: str | Sequence[int], source: str = "--shape") -> tuple[int, int, int]:
    """``"128,128,32"`` or ``(128, 128, 32)`` -> a tuple of three positive ints; :class:`InputError` otherwise."""
    parts = shape.replace("x", ",").split(",") if isinstance(shape, str) else list(shape)
    try:
        values = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 1 or any(float(p) != v for p, v in zip(parts, values)):
        raise InputError(source, f"expected three positive integers such as 128,128,32, got {shape!r}")
    return values
