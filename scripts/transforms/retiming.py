"""The cardiac cycle's motion clock: where in a pair of acquired frames the motion between them happens.

A whole-cine job makes the frame a share ``t`` of the way in time from acquired frame a to frame b. The student,
given ``t``, places it ``t`` of the way along the pair's motion, as if the heart moved at one speed from a to b. Over
a cycle it does not: it contracts fast early in systole, fills fast early in diastole and hardly moves in diastasis.
Measured with the shipped whole-cine student on ACDC 081-090 at x4, the time that best matched each dropped frame
was up to 0.14 from its ``t`` (late in the cycle, the motion of a pair happens early in it) and choosing it frame by
frame, an oracle, was worth 0.36 dB.

:class:`CycleRetiming` turns a speed of motion over the cycle into the network's time: with ``s(phi) > 0`` the speed
at phase ``phi`` (the share of the cycle since its first frame, in [0, 1)) and the motion clock
``tau(phi) = int_0^phi s / int_0^1 s`` (periodic: ``tau(phi + 1) = tau(phi) + 1``), the frame at phase ``phi_t``
between acquired frames at ``phi_a`` and ``phi_b`` is made at

    t' = (tau(phi_t) - tau(phi_a)) / (tau(phi_b) - tau(phi_a)),

which keeps the acquired frames where they are (0 -> 0, 1 -> 1) and every t' in [0, 1], increasing in t. ``s`` is
``exp`` of a short Fourier series whose coefficients are learnt from training cines
(:mod:`scripts.training.retiming`); no coefficients give ``s = 1``, ``t' = t``. It presumes what an ECG-gated cine is:
one cycle, its first frame at the trigger (end diastole). The inference config applies it to cardiac whole cines that
wrap around (``--upsample`` with ``--cyclic``; ``--retiming False`` turns it off).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from scripts.utils.errors import InputError

__all__ = ["CycleRetiming"]


class CycleRetiming:
    """A motion clock over one cycle, from the Fourier coefficients of its log speed.

    Args:
        speed: ``[a_1, b_1, a_2, b_2, ...]``: ``log s(phi) = sum_k a_k cos(2 pi k phi) + b_k sin(2 pi k phi)``
            (a tensor keeps its autograd graph, so :mod:`scripts.training.retiming` fits it through this class);
            empty: uniform speed, ``t' = t``.
        samples: grid points over the cycle on which the clock is integrated (trapezoids) and interpolated.

    Raises:
        InputError: naming ``speed`` when it is not an even number of finite values.
    """

    def __init__(self, speed: Sequence[float] | torch.Tensor = (), samples: int = 720):
        speed = torch.as_tensor(speed, dtype=torch.float64).reshape(-1)
        if speed.numel() % 2 or not bool(torch.isfinite(speed).all()):
            raise InputError("speed", f"expected pairs of finite Fourier coefficients [a_1, b_1, ...], got "
                                      f"{speed.tolist()}")
        self.speed, self.samples = speed, int(samples)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CycleRetiming:
        """The clock stored in a JSON file with a ``speed`` list (``models/cycle_clock.json``).

        Raises:
            InputError: naming the file when it is missing, not JSON or has no valid ``speed``.
        """
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "the motion clock file was not found") from None
        except (OSError, ValueError) as err:
            raise InputError(path, f"not a readable JSON file ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("speed"), list):
            raise InputError(path, "expected a JSON object with a 'speed' list of Fourier coefficients")
        return cls(record["speed"])

    def __repr__(self) -> str:
        return f"CycleRetiming({self.speed.numel() // 2} harmonics)"

    def _table(self) -> torch.Tensor:
        """``tau`` at ``samples + 1`` phases evenly over one cycle, 0 -> 1 (trapezoids of the speed), float64."""
        grid = torch.linspace(0.0, 1.0, self.samples + 1, dtype=torch.float64)
        k = torch.arange(1, self.speed.numel() // 2 + 1, dtype=torch.float64)
        angle = 2 * math.pi * grid[:, None] * k
        speed = torch.exp(torch.cos(angle) @ self.speed[0::2] + torch.sin(angle) @ self.speed[1::2])
        steps = (speed[1:] + speed[:-1]) / 2
        return torch.cat([speed.new_zeros(1), torch.cumsum(steps, 0)]) / steps.sum()

    def _read(self, table: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """``tau(phase)`` from :meth:`_table`, linearly between its phases, cycles counted on."""
        whole = torch.floor(phase)
        x = (phase - whole) * self.samples
        i = x.floor().clamp(max=self.samples - 1).long()
        return whole + table[i] + (x - i) * (table[i + 1] - table[i])

    def clock(self, phase: torch.Tensor) -> torch.Tensor:
        """``tau(phase)``: the share of the cycle's motion done by ``phase`` (any real values, cycles counted on:
        ``tau(phi + 1) = tau(phi) + 1``); same shape, float64."""
        phase = torch.as_tensor(phase, dtype=torch.float64)
        return phase if self.speed.numel() == 0 else self._read(self._table(), phase)

    def moved(self, start, span, ts) -> torch.Tensor:
        """``t'`` of frames at ``ts`` between acquired frames at phase ``start`` and ``start + span``, float64, with
        broadcasting (scalars, or one value per frame as :mod:`scripts.training.retiming` fits them) and the
        autograd graph of ``speed``; no checks, no clamp (:meth:`__call__` is the checked form)."""
        start, span, ts = (torch.as_tensor(v, dtype=torch.float64) for v in (start, span, ts))
        if self.speed.numel() == 0:
            return ts
        table = self._table()  # one integral per call, read three times
        first, last = self._read(table, start), self._read(table, start + span)
        return (self._read(table, start + span * ts) - first) / (last - first)

    def __call__(self, start: float, span: float, ts: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The network's times for frames at ``ts`` of the way in time between two acquired frames.

        Args:
            start: the first acquired frame's phase, the share of the cycle before it (``a / T`` for frame ``a`` of a
                ``T``-frame cine).
            span: the share of the cycle from the first acquired frame to the second, in (0, 1].
            ts: ``(N,)`` times in [0, 1] between the two.

        Returns:
            ``(N,)`` float32 times in [0, 1], equal to ``ts`` without coefficients.

        Raises:
            InputError: naming ``span`` when it is not in (0, 1] (two frames at one place make no pair to retime).
        """
        if not 0.0 < float(span) <= 1.0 + 1e-9:
            raise InputError("span", f"expected the pair's share of the cycle in (0, 1], got {span!r}")
        ts = torch.as_tensor(ts, dtype=torch.float32)
        if self.speed.numel() == 0:
            return ts
        return self.moved(start, span, ts).clamp(0, 1).float()
