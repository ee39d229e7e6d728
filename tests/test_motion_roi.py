"""Full field of view: a static textured body around a beating heart; the box finds the heart, the paste keeps the
blend of the static surroundings exactly and has no seam."""

import numpy as np
import pytest
import torch

from scripts.transforms.motion_roi import (
    MotionROI,
    connected_components,
    crop,
    endpoint_motion,
    find_roi,
    main_motion,
    motion_map,
    paste,
    seam_weight,
)
from scripts.utils.errors import InputError

SHAPE = (128, 112, 4)
HEART = (70.0, 50.0)  # centre (voxels)


def phantom(num_frames=10, seed=0):
    """(T, X, Y, Z): a static body (smooth texture in an ellipse) and a bright disk whose radius beats 8..14."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    body = ((x - 64) / 60) ** 2 + ((y - 56) / 52) ** 2 < 1
    texture = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.random((1, *SHAPE[:2]), dtype=np.float32)), 5, 1, 2)
    static = (0.3 + 0.4 * texture[0].numpy()) * body
    frames = []
    for f in range(num_frames):
        radius = 11 + 3 * np.sin(2 * np.pi * f / num_frames)
        heart = np.hypot(x - HEART[0], y - HEART[1]) < radius
        frames.append(np.repeat(np.where(heart, 0.9, static)[..., None], SHAPE[2], axis=2).astype(np.float32))
    return np.stack(frames)


def test_the_box_holds_the_beating_heart_and_not_the_body():
    frames = phantom()
    roi = find_roi(motion_map(frames), spacing=(1.5, 1.5, 8.0), margin_mm=9.0)
    x0, x1, y0, y1 = roi.box
    # the heart's largest radius 14 plus the 6-voxel margin must be inside
    assert x0 <= HEART[0] - 20 and x1 >= HEART[0] + 20 and y0 <= HEART[1] - 20 and y1 >= HEART[1] + 20
    assert x1 - x0 <= 56 and y1 - y0 <= 56  # the static body around it is left out
    assert (x1 - x0) % 8 == 0 and (y1 - y0) % 8 == 0 and roi.zoom == (1.0, 1.0)
    assert all(type(bound) is int for bound in roi.box)
    endpoints = find_roi(endpoint_motion(frames[0], frames[2]), spacing=(1.5, 1.5, 8.0), margin_mm=9.0)
    assert endpoints.box[0] <= HEART[0] - 14 and endpoints.box[1] >= HEART[0] + 14


def test_paste_equals_the_blend_far_from_the_heart_and_is_finite():
    frames = phantom()
    roi = find_roi(motion_map(frames[::2]), spacing=(1.5, 1.5, 8.0))
    blend = 0.5 * frames[0] + 0.5 * frames[2]
    result = torch.rand(roi.network_size)  # whatever the network returns in the box
    out = paste(result, blend, roi, feather=6)
    assert out.shape == SHAPE and torch.isfinite(out).all()
    x0, x1, y0, y1 = roi.box
    outside = torch.ones(SHAPE[:2], dtype=torch.bool)
    outside[x0:x1, y0:y1] = False
    assert torch.equal(out[outside], torch.from_numpy(blend)[outside])
    assert torch.equal(out[:20], torch.from_numpy(blend)[:20])  # far from the heart
    centre = (int(HEART[0]) - x0, int(HEART[1]) - y0)
    assert torch.equal(out[int(HEART[0]), int(HEART[1])], result[centre])  # the network's own voxels inside


def test_crop_and_paste_of_the_blend_give_the_blend_back():
    frames = phantom()
    blend = 0.7 * frames[1] + 0.3 * frames[3]
    roi = find_roi(motion_map(frames), spacing=(1.5, 1.5, 8.0))
    assert torch.allclose(paste(crop(blend, roi), blend, roi), torch.from_numpy(blend), atol=1e-6)


def test_a_finer_series_is_resampled_to_the_training_spacing_and_back():
    frames = phantom()
    roi = find_roi(motion_map(frames), spacing=(1.0, 1.0, 8.0), training_spacing=(1.5, 1.5), margin_mm=9.0)
    assert roi.zoom == pytest.approx((2 / 3, 2 / 3))
    cropped = crop(frames[0], roi)
    assert tuple(cropped.shape) == roi.network_size
    assert roi.network_size[0] == round(roi.size[0] * 2 / 3) and roi.network_size[2] == SHAPE[2]
    # the network returning the cropped blend gives the full-resolution blend back, edges and all (resampling the
    # output itself down and up again blurred the heart's edge)
    out = paste(cropped, frames[0], roi)
    torch.testing.assert_close(out, torch.from_numpy(frames[0]), atol=1e-5, rtol=0)
    # a change made on the network's grid arrives on the series' grid, resampled
    x0, x1, y0, y1 = roi.box
    brighter = paste(cropped + 0.1, frames[0], roi)
    assert torch.equal(brighter[:x0], torch.from_numpy(frames[0])[:x0])
    change = (brighter - torch.from_numpy(frames[0]))[x0 + 8 : x1 - 8, y0 + 8 : y1 - 8]
    torch.testing.assert_close(change, torch.full_like(change, 0.1), atol=1e-5, rtol=0)
    assert find_roi(motion_map(frames), spacing=(1.4, 1.4, 8.0), training_spacing=(1.5, 1.5)).zoom == (1.0, 1.0)


def test_the_seam_weight_ramps_smoothly_from_inside_to_outside():
    roi = MotionROI((40, 88, 0, 48), (1.0, 1.0), (128, 112, 4))
    weight = seam_weight(roi, feather=8)[..., 0]
    assert weight[64, 24] == 1 and weight[39].abs().max() == 0 and weight[:, 48:].abs().max() == 0
    assert weight[64, 0] == 1  # the box touches the image border at y = 0: no ramp there
    steps = torch.cat([weight.diff(dim=0).abs().flatten(), weight.diff(dim=1).abs().flatten()])
    assert steps.max() <= np.pi / 16 + 1e-6  # a cosine over 8 voxels, no jump at the seam
    assert ((weight >= 0) & (weight <= 1)).all()


def test_faint_motion_far_from_the_heart_stretches_the_box_only_at_full_coverage():
    """A real cine's flow and banding artefacts change faintly from frame to frame across the field of view. Such a
    streak far from the heart stretches the box that holds every moving voxel; a box holding 95 % of the motion keeps
    to the heart (its largest radius inside with room to spare: the margin makes up for the tails it cuts)."""
    frames = phantom()
    frames[::2, 120:124, 30:50] += 0.1  # a faint streak flickering near the far edge of the plane
    motion = motion_map(frames)
    every = find_roi(motion, spacing=(1.5, 1.5, 8.0), margin_mm=9.0)
    assert every.box[1] >= 124  # stretched to the streak
    box = find_roi(motion, spacing=(1.5, 1.5, 8.0), margin_mm=9.0, coverage=0.95).box
    assert box[0] <= HEART[0] - 18 and box[1] >= HEART[0] + 18 and box[2] <= HEART[1] - 18 and box[3] >= HEART[1] + 18
    assert box[1] - box[0] <= 56 and box[3] - box[2] <= 56
    clean = motion_map(phantom())
    full = find_roi(clean, (1.5, 1.5, 8.0), margin_mm=9.0).box
    tight = find_roi(clean, (1.5, 1.5, 8.0), margin_mm=9.0, coverage=0.9).box
    assert full[0] <= tight[0] < tight[1] <= full[1] and full[2] <= tight[2] < tight[3] <= full[3]  # never larger
    assert tight != full  # the tails of a clean heart's motion are cut too: why the shipped coverage is 1
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(InputError, match="coverage"):
            find_roi(clean, coverage=bad)


def _flood_fill_labels(mask: np.ndarray) -> np.ndarray:
    """Reference 8-connected labelling, one flood fill per piece."""
    labels = np.zeros(mask.shape, dtype=int)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:
            x, y = stack.pop()
            for u in range(max(x - 1, 0), min(x + 2, mask.shape[0])):
                for v in range(max(y - 1, 0), min(y + 2, mask.shape[1])):
                    if mask[u, v] and not labels[u, v]:
                        labels[u, v] = count
                        stack.append((u, v))
    return labels


@pytest.mark.parametrize("seed, shape, density", [(0, (40, 33), 0.45), (1, (17, 64), 0.6), (2, (50, 50), 0.3)])
def test_connected_components_are_the_flood_fills_pieces(seed, shape, density):
    mask = np.random.default_rng(seed).random(shape) < density
    labels = connected_components(mask)
    reference = _flood_fill_labels(mask)
    assert (labels[~mask] == 0).all() and (labels[mask] > 0).all()
    pairs = set(zip(labels[mask].tolist(), reference[mask].tolist()))
    assert len(pairs) == len(np.unique(labels[mask])) == len(np.unique(reference[mask]))  # one to one


def test_a_long_winding_piece_is_one_component():
    """A serpentine of 1-voxel corridors, each joined to the next at alternate ends: one piece, however long."""
    mask = np.zeros((59, 61), dtype=bool)
    mask[::2] = True
    for row in range(1, 59, 2):
        mask[row, 60 if row % 4 == 1 else 0] = True
    labels = connected_components(mask)
    assert len(np.unique(labels[mask])) == 1
    mask[1::2] = False  # cut every joint: 30 corridors
    assert len(np.unique(connected_components(mask)[mask])) == 30


def test_main_motion_keeps_the_pieces_with_a_share_of_the_largest():
    moving = np.zeros((30, 30), dtype=bool)
    largest, middle, small = (slice(2, 12), slice(2, 12)), (slice(20, 24), slice(20, 24)), (slice(20, 22), slice(2, 4))
    for piece in (largest, middle, small):
        moving[piece] = True  # 100, 16 and 4 voxels
    weights = np.ones(moving.shape)
    only_largest = np.zeros_like(moving)
    only_largest[largest] = True
    np.testing.assert_array_equal(main_motion(moving, weights, 0.2), only_largest)
    kept = main_motion(moving, weights, 0.1)
    assert kept[largest].all() and kept[middle].all() and not kept[small].any()
    np.testing.assert_array_equal(main_motion(moving, weights, 0.0), moving)
    weights[small] = 100.0  # the motion, not the voxel count, decides
    np.testing.assert_array_equal(main_motion(moving, weights, 1.0), moving & (weights == 100.0))


def test_scattered_flicker_leaves_the_box_at_a_component_share_and_a_second_heart_stays():
    """A real cine's flow and banding artefacts flicker in small pieces across the field of view; the heart's motion
    is one connected piece. With ``component_share`` the box is the clean series' box; without, the flicker
    stretches it. A second moving structure as large as the heart is kept."""
    clean = motion_map(phantom())
    frames = phantom()
    for x, y in ((8, 8), (120, 10), (10, 100), (118, 104), (30, 95)):
        frames[::2, x:x + 3, y:y + 3] += 0.25  # small specks flickering far from the heart
    speckled = motion_map(frames)
    spacing = (1.5, 1.5, 8.0)
    every = find_roi(speckled, spacing, margin_mm=9.0)
    assert every.box == (0, SHAPE[0], 0, SHAPE[1])
    heart_only = find_roi(speckled, spacing, margin_mm=9.0, component_share=0.2)
    assert heart_only.box == find_roi(clean, spacing, margin_mm=9.0).box
    assert find_roi(clean, spacing, margin_mm=9.0, component_share=0.2).box == find_roi(clean, spacing,
                                                                                       margin_mm=9.0).box
    second = phantom()
    second[:, 10:34, 80:104] = second[:, 58:82, 38:62]  # a copy of the beating heart
    both = find_roi(motion_map(second), spacing, margin_mm=9.0, component_share=0.2).box
    assert both[0] <= 10 and both[3] >= 104
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match="component_share"):
            find_roi(clean, component_share=bad)


def test_a_heart_cropped_series_keeps_its_small_pieces_below_the_component_min_box():
    """On a heart-cropped series (the box of every moving voxel already small) a small piece at the crop's edge is
    the heart's own motion: ``component_min_box`` keeps it, so the box is the one that holds every moving voxel;
    a smaller ``component_min_box`` (or none) drops it."""
    frames = phantom()[:, 38:102, 18:82].copy()  # a 64 x 64 crop around the beating heart
    frames[::2, 0:3, 0:3] += 0.25  # a small piece of motion in the crop's corner
    cropped = motion_map(frames)
    spacing = (1.5, 1.5, 8.0)
    every = find_roi(cropped, spacing, margin_mm=9.0)
    assert every.box[0] == 0 and every.box[2] == 0
    dropped = find_roi(cropped, spacing, margin_mm=9.0, component_share=0.2)
    assert dropped.box[0] > 0 and dropped.box[2] > 0
    side = max(every.size)
    assert find_roi(cropped, spacing, margin_mm=9.0, component_share=0.2, component_min_box=side).box == every.box
    assert find_roi(cropped, spacing, margin_mm=9.0, component_share=0.2, component_min_box=side - 1).box == \
        dropped.box
    with pytest.raises(InputError, match="component_min_box"):
        find_roi(cropped, component_share=0.2, component_min_box=-1)


def test_a_still_series_keeps_the_whole_plane_and_bad_inputs_are_named():
    still = np.stack([np.ones(SHAPE, dtype=np.float32)] * 3)
    roi = find_roi(motion_map(still))
    assert roi.box == (0, SHAPE[0], 0, SHAPE[1])
    with pytest.raises(InputError, match="at least 2 volumes"):
        motion_map(still[:1])
    with pytest.raises(InputError, match="NaN"):
        find_roi(np.full(SHAPE, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="differs from the cropped grid"):
        paste(torch.zeros(3, 3, 4), still[0], roi)
    with pytest.raises(InputError, match="NaN"):
        paste(torch.full(roi.network_size, float("nan")), still[0], roi)


def test_still_weight_keeps_the_networks_change_where_the_pair_differs():
    """1 where the two frames differ by ``level`` or more over the window, 0 where they are equal, the window's mean
    difference over ``level`` between; ``level`` 0 keeps the change everywhere."""
    from scripts.transforms.motion_roi import still_weight

    rng = np.random.default_rng(0)
    i0 = rng.random((40, 30, 3)).astype(np.float32)
    i1 = i0.copy()
    i1[:20] += 0.2  # the first half moves
    weight = still_weight(i0, i1, level=0.05, width=7)
    assert weight.shape == (40, 30, 3) and weight.dtype == torch.float32
    assert torch.equal(weight[:17], torch.ones(17, 30, 3))  # every window there holds only moving voxels
    assert torch.equal(weight[23:], torch.zeros(17, 30, 3))  # and only still ones there
    assert bool(((weight[17:23] > 0) & (weight[17:23] < 1)).any())
    one = np.zeros((15, 15, 1), np.float32)
    spot = one.copy()
    spot[7, 7] = 0.49  # one voxel: its window's mean is 0.49 / 49 = 0.01, a fifth of the level
    assert float(still_weight(one, spot, 0.05, 7)[7, 7, 0]) == pytest.approx(0.2)
    assert float(still_weight(one, spot, 0.05, 7)[0, 0, 0]) == 0.0
    assert torch.equal(still_weight(i0, i0, 0.0), torch.ones(40, 30, 3))
