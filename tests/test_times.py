"""Time points: parsing, evenly spaced frames, and every invalid value refused with the argument named."""

import math

import pytest

from scripts.inference.times import resolve_times
from scripts.utils.errors import InputError


@pytest.mark.parametrize(
    "t, num_frames, expected",
    [
        (None, None, [0.5]),
        (None, 3, [0.25, 0.5, 0.75]),
        (0.3, None, [0.3]),
        ("[0.75, 0.25]", None, [0.25, 0.75]),
        ([0.9, 0.1, 0.5], None, [0.1, 0.5, 0.9]),
        ([0, 1], None, [0.0, 1.0]),
    ],
)
def test_valid(t, num_frames, expected):
    assert resolve_times(t, num_frames) == pytest.approx(expected)


@pytest.mark.parametrize(
    "t, num_frames, message",
    [
        (1.5, None, "--t: time points must lie in"),
        ([-0.1, 0.5], None, "--t: time points must lie in"),
        (math.nan, None, "--t: time points must lie in"),
        ([], None, "--t: the list of time points is empty"),
        ([0.5, 0.5], None, "--t: duplicate"),
        ("half", None, "--t: not a number"),
        (0.5, 3, "--t: give either"),
        (None, 0, "--num_frames: must be a positive"),
        (None, 2.5, "--num_frames: must be a positive"),
    ],
)
def test_invalid(t, num_frames, message):
    with pytest.raises(InputError, match=message):
        resolve_times(t, num_frames)
