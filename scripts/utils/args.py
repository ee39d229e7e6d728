"""Typing and checking of command-line values and request parameters: they are data, never code.

``fire`` turns an argument into a Python literal when it can (``--t True`` is a bool, ``--input "{...}"`` a dict,
``--overwrite false`` the string ``"false"``); each function here accepts only the types its value may have, returns
it as that type (paths as :class:`pathlib.Path`, numbers as float / int, booleans as bool) and raises
:class:`~scripts.utils.errors.InputError` naming the argument otherwise. A string that MONAI's config parser would
interpret (``$`` code, ``@`` reference, ``%`` macro) never comes out of :func:`parse_path` as a ``str``, and never
comes out of the others at all.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from scripts.utils.errors import InputError

__all__ = ["parse_bool", "parse_choice", "parse_device", "parse_int", "parse_path", "parse_series", "parse_shape",
           "parse_times"]

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_CUDA = re.compile(r"cuda(?::(\d{1,3}))?")


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


def parse_series(value: object, source: str = "--series") -> tuple[str, ...] | None:
    """Which series of a DICOM folder to read: a SeriesNumber (``7``), a SeriesInstanceUID, or text found in
    SeriesDescription (``"cine sax"``), or a list of these (``[7, 8, 9]``, or its JSON text ``"[7,8,9]"``: their
    union; on the command line a comma also separates items, as fire reads ``7,8,9``); None for every series.
    Returned as a tuple of non-empty strings; a value MONAI's config parser would interpret is refused."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().startswith("["):
        import json

        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(source, f"expected a list such as [7, 8, 9], got {value!r}") from None
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        number = isinstance(item, int) and not isinstance(item, bool)
        text = str(item).strip() if isinstance(item, str) or number and item >= 0 else ""
        if not text or text.startswith(("$", "@", "%")):
            raise InputError(source, f"expected a SeriesNumber, a SeriesInstanceUID or text of a SeriesDescription "
                                     f"(not empty, not starting with $, @ or %), or a list of these; got {value!r}")
        out.append(text)
    if not out:
        raise InputError(source, "an empty list selects no series; leave it out to read every series")
    return tuple(out)


def parse_bool(value: object, source: str) -> bool:
    """A strict boolean: ``True``/``False``, 1/0, or one of ``true yes on 1`` / ``false no off 0`` (any case).

    ``"false"`` and ``"no"`` are False (not a non-empty, hence true, string); anything else is refused.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(source, f"expected True or False, got {value!r}")


def parse_cyclic(value: object, source: str = "--cyclic") -> bool | None:
    """Whether a series wraps around: a strict boolean (:func:`parse_bool`), or None for ``"auto"`` / None (decided
    from the series: :func:`scripts.inference.workflow.resolve_cyclic`)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        return parse_bool(value, source)
    except InputError:
        raise InputError(source, f"expected True, False or auto, got {value!r}") from None


def parse_int(value: object, source: str, minimum: int | None = None) -> int:
    """A whole number (not a bool, not 2.5), at least ``minimum`` when given."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(source, f"expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(source, f"must be at least {minimum}, got {value}")
    return value


def parse_choice(value: object, source: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (exact, case-sensitive)."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(source, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def parse_path(value: object, source: str) -> Path:
    """A file or folder name as a :class:`~pathlib.Path` (``~`` expanded); numbers fire parsed are taken as names.

    Refused: anything else (a list, a dict, a bool, None), an empty name, a name with a NUL byte.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(source, f"expected a file or folder name, got {type(value).__name__} {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise InputError(source, f"expected a file or folder name, got {value!r}")
    return Path(text).expanduser()


def parse_times(value: object, source: str = "--t") -> list[float]:
    """A time point or a list of them as floats: a number, a list of numbers, or their JSON text (``"[0.25,0.5]"``).

    Booleans are refused (``--t True`` is not t = 1), and so is anything that is not a finite number; the range
    and duplicates are checked by :func:`scripts.inference.times.resolve_times`.
    """
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(source, f"not a number or a list of numbers: {value!r}") from None
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(source, f"expected a number in [0, 1] or a list of them, got {value!r}")
        if not math.isfinite(v):
            raise InputError(source, f"time points must lie in [0, 1] (0 = start frame, 1 = end frame), got {[v]}")
    return [float(v) for v in values]


def parse_device(value: object, source: str = "--device") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device must exist here (checked with torch, imported only
    then)."""
    if not isinstance(value, str) or not (value in ("auto", "cpu") or _CUDA.fullmatch(value)):
        raise InputError(source, f"must be auto, cpu, cuda or cuda:N; got {value!r}")
    if value.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(_CUDA.fullmatch(value).group(1) or 0)
        if index >= count:
            found = "no CUDA GPU is available" if count == 0 else f"only {count} CUDA GPU(s) are available"
            raise InputError(source, f"{value} was asked for but {found} here; use --device cpu or auto")
    return value
