"""Which image warp a pair of acquired frames gets: sharp for near frames, smooth for far ones.

The student warps its endpoints to t either bilinearly (the paper) or with cubic convolution in plane
(:func:`~scripts.networks.warping.warp_cubic`). Cubic convolution keeps the detail a bilinear warp by a fraction of a
voxel blurs, which is what a whole cine made finer needs: neighbouring frames, small sure motion. Between frames far
apart in the cycle (ED -> ES, the paper's protocol) the position of each wall at t is uncertain, and there the
slightly smoother bilinear estimate scores better. Measured with the shipped cardiac student on ACDC 081-090 (gain of
cubic over bilinear, dB): pairs one dropped frame apart (x2) +0.10; pairs spanning 3 frames, mixed per patient;
spanning 5, 6 and 8 frames, and ED -> ES, bilinear ahead on 9 of 10 patients (ED -> ES: -0.03). Where the two cross
depends on the cine's frame count (the motion per frame): about a sixth of the cycle.

:class:`WarpBySpan` turns that into a rule on the share of the series a pair spans, ``span / T`` (consecutive frames of
a ``T``-frame series: ``1 / T``; a pair given as two volumes: ``1 / 2``).
"""

from __future__ import annotations

from scripts.networks.tmsdf import IMAGE_WARPS
from scripts.utils.errors import InputError

__all__ = ["WarpBySpan", "span_fraction"]


def span_fraction(start: int, end: int, num_frames: int) -> float:
    """The share of a ``num_frames``-frame series between frames ``start`` and ``end`` (either order), in (0, 1]."""
    return abs(int(end) - int(start)) / max(int(num_frames), 1)


class WarpBySpan:
    """The image warp for a pair spanning a share ``fraction`` of its series: ``near`` up to ``wide_above``,
    ``wide`` beyond it.

    Args:
        near: the warp of pairs spanning at most ``wide_above`` of the series (the cardiac student: ``"cubic"``).
        wide: the warp of pairs spanning more than ``wide_above``.
        wide_above: in (0, 1); 1/6 for the shipped cardiac student (module docstring).

    Raises:
        InputError: naming the setting when a warp is not one of :data:`~scripts.networks.tmsdf.IMAGE_WARPS` or
            ``wide_above`` is not in (0, 1).
    """

    def __init__(self, near: str = "cubic", wide: str = "bilinear", wide_above: float = 1 / 6):
        for name, value in (("near", near), ("wide", wide)):
            if value not in IMAGE_WARPS:
                raise InputError(f"warp_choice {name}", f"must be one of {', '.join(IMAGE_WARPS)}, got {value!r}")
        if isinstance(wide_above, bool) or not isinstance(wide_above, (int, float)) or not 0.0 < wide_above < 1.0:
            raise InputError("warp_choice wide_above", f"must be a share of the series in (0, 1), got {wide_above!r}")
        self.near, self.wide, self.wide_above = near, wide, float(wide_above)

    def __call__(self, fraction: float) -> str:
        """The warp for a pair spanning ``fraction`` of its series (:func:`span_fraction`)."""
        return self.wide if fraction > self.wide_above + 1e-9 else self.near

    def __repr__(self) -> str:
        return f"WarpBySpan(near={self.near!r}, wide={self.wide!r}, wide_above={self.wide_above:.4g})"
