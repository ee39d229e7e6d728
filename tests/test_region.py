"""The motion-region step: the network runs in the box where the series moves, the blend stays exact outside it."""

import json

import nibabel as nib
import numpy as np
import pytest

from scripts.inference.cli import interpolate
from scripts.inference.region import MotionRegion
from scripts.phantoms.cardiac import cardiac_phantom
from scripts.transforms.motion_roi import motion_map

SPACING = (1.4, 1.4, 8.0)


@pytest.fixture(scope="module")
def full_fov():
    """A full field-of-view cine: a beating heart inside a static body, 160 x 160 x 4, 8 frames, in [0, 1]."""
    case = cardiac_phantom(3, shape=(160, 160, 4), frames=8, spacing=SPACING)
    array = case.array.astype(np.float32)
    return case, (array - array.min()) / (array.max() - array.min())


def _constant(value):
    return lambda frames: np.full((*frames.shape[:3], 1), value, dtype=np.float32)


def test_disabled_step_runs_the_network_on_the_whole_volume(full_fov):
    _, unit = full_fov
    seen = []
    out = MotionRegion(enabled=False).run(lambda f: seen.append(f.shape) or f[..., :1], unit[..., :2], SPACING,
                                          [(0, 1, 0.5)])
    assert seen == [unit[..., :2].shape]
    np.testing.assert_array_equal(out, unit[..., :1])


def test_outside_the_box_is_the_blend_inside_the_network(full_fov):
    _, unit = full_fov
    region = MotionRegion(training_spacing=(1.5, 1.5), tolerance=1.5)
    roi = region.find(unit, SPACING)
    assert roi is not None and roi.zoom == (1.0, 1.0)
    x0, x1, y0, y1 = roi.box
    assert (x1 - x0) * (y1 - y0) < 0.5 * unit.shape[0] * unit.shape[1]  # the static body is left out
    moving = motion_map(np.moveaxis(unit, -1, 0)).max(axis=2)
    inside = np.zeros(moving.shape, bool)
    inside[x0:x1, y0:y1] = True
    assert np.percentile(moving[~inside], 99) < 0.5 * np.percentile(moving[inside], 99)  # the box holds the motion
    out = region.run(_constant(0.123), unit[..., [2, 4]], SPACING, [(0, 1, 0.25)], motion=unit)[..., 0]
    blend = 0.75 * unit[..., 2] + 0.25 * unit[..., 4]
    np.testing.assert_allclose(out[~inside], blend[~inside], atol=1e-6)
    centre = (slice(x0 + 8, x1 - 8), slice(y0 + 8, y1 - 8))
    np.testing.assert_allclose(out[centre], 0.123, atol=1e-6)  # the network's result, unseamed, inside
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_resampled_crop_when_the_spacing_differs(full_fov):
    _, unit = full_fov
    region = MotionRegion(training_spacing=(2.8, 2.8), tolerance=1.5)  # the series is twice as fine
    grids = []
    # the "network" returns the blend of the cropped frames, 0.05 brighter
    out = region.run(lambda f: grids.append(f.shape) or (0.5 * (f[..., :1] + f[..., 1:2]) + 0.05),
                     unit[..., :2], SPACING, [(0, 1, 0.5)], motion=unit)
    roi = region.find(unit, SPACING)
    assert roi.zoom == (0.5, 0.5) and grids == [(*roi.network_size, 2)]
    assert out.shape == (*unit.shape[:3], 1)
    x0, x1, y0, y1 = roi.box
    blend = 0.5 * (unit[..., 0] + unit[..., 1])
    # its change to the blend arrives at full resolution; the blend's own detail is not resampled (not blurred)
    inner = (slice(x0 + 8, x1 - 8), slice(y0 + 8, y1 - 8))
    np.testing.assert_allclose(out[inner][..., 0], np.clip(blend[inner] + 0.05, 0, 1), atol=1e-5)
    np.testing.assert_allclose(out[:x0, :, :, 0], blend[:x0], atol=1e-6)


def test_still_voxels_inside_the_box_keep_the_blend(full_fov):
    """Inside the box, where the two acquired frames are equal, the frame is their blend (exact there), and where
    they differ it is the network's; without ``still_level`` the network's everywhere in the box."""
    rng = np.random.default_rng(1)
    i0 = rng.random((48, 48, 2)).astype(np.float32) * 0.5
    i1 = i0.copy()
    i1[:16] += 0.3  # the frames differ in the first third only
    frames = np.stack([i0, i1], axis=-1)
    network = lambda f: np.clip(0.5 * (f[..., :1] + f[..., 1:2]) + 0.1, 0, 1)  # the blend, brighter
    blend = 0.5 * (i0 + i1)
    gated = MotionRegion(training_spacing=None, still_level=0.05).run(network, frames, SPACING, [(0, 1, 0.5)])
    plain = MotionRegion(training_spacing=None).run(network, frames, SPACING, [(0, 1, 0.5)])
    roi = MotionRegion(training_spacing=None).find(frames, SPACING)
    assert roi is not None and roi.box[:2] == (0, 32)  # the moving third and its 15 mm margin
    np.testing.assert_allclose(gated[:13, ..., 0], blend[:13] + 0.1, atol=1e-6)  # moving: the network's frame
    np.testing.assert_allclose(plain[:13], gated[:13], atol=1e-6)
    np.testing.assert_allclose(gated[19:, ..., 0], blend[19:], atol=1e-6)  # still: the blend, in the box too
    assert np.abs(plain[19:24, ..., 0] - blend[19:24]).min() > 0.09  # where the box alone kept the network's
    assert np.isfinite(gated).all() and gated.min() >= 0 and gated.max() <= 1


def test_the_still_weight_is_computed_once_per_acquired_pair(monkeypatch):
    """Frames at several t between one pair (a pair job, or one pair of --upsample 4) share their pair's weight."""
    import scripts.inference.region as region_module

    calls = []
    weight = region_module.still_weight
    monkeypatch.setattr(region_module, "still_weight", lambda *a, **k: calls.append(1) or weight(*a, **k))
    rng = np.random.default_rng(2)
    frames = rng.random((24, 24, 2, 3)).astype(np.float32)
    region = MotionRegion(training_spacing=None, still_level=0.05)
    region.run(lambda f: np.repeat(f[..., :1], 4, axis=-1), frames, SPACING,
               [(0, 1, 0.25), (0, 1, 0.5), (1, 2, 0.5), (0, 1, 0.75)])
    assert len(calls) == 2


def test_interpolate_keeps_the_blend_outside_the_moving_box(full_fov, tmp_path):
    """Through the user's command: with the step (default) the voxels far from the heart are the blend; without it
    the network changes them."""
    case, _ = full_fov
    path = tmp_path / "fov.nii.gz"
    nib.save(nib.Nifti1Image(case.array.astype(np.float32), case.affine), path)
    with_region = interpolate(input=str(path), t="[0.5]", start_frame=2, end_frame=4, device="cpu",
                              output_dir=str(tmp_path / "on"))
    without = interpolate(input=str(path), t="[0.5]", start_frame=2, end_frame=4, device="cpu",
                          motion_region=False, output_dir=str(tmp_path / "off"))
    blend = 0.5 * (case.array[..., 2] + case.array[..., 4])
    on = nib.load(f"{with_region}/interp_4d.nii.gz").get_fdata()[..., 0]
    off = nib.load(f"{without}/interp_4d.nii.gz").get_fdata()[..., 0]
    corner = (slice(0, 12), slice(0, 12))
    np.testing.assert_allclose(on[corner], blend[corner], rtol=1e-5, atol=1e-3 * np.ptp(case.array))
    assert np.abs(off[corner] - blend[corner]).max() > np.abs(on[corner] - blend[corner]).max()
    assert json.loads((tmp_path / "on" / "summary.json").read_text())["t"] == [0.5]


def test_the_shipped_region_keeps_to_the_heart_when_flow_artefacts_flicker_across_the_field(full_fov):
    """Real cines' flow and banding artefacts flicker in small pieces across the field of view; the shipped region
    (``configs/inference.json``: ``component_share``) leaves them to the blend, so the box is the clean series',
    and holding every moving voxel (``component_share`` 0) stretches it."""
    from monai.bundle import ConfigParser

    from scripts.utils.paths import ROOT

    _, unit = full_fov
    speckled = unit.copy()
    for x, y in ((6, 6), (150, 8), (8, 150), (150, 150)):
        speckled[x:x + 3, y:y + 3, :, ::2] += 0.2  # small specks far from the heart, on every other frame
    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "inference.json"))
    shipped = parser.get_parsed_content("region")
    clean_box = shipped.find(unit, SPACING).box
    assert shipped.find(speckled, SPACING).box == clean_box
    kwargs = {"training_spacing": shipped.training_spacing, "margin_mm": shipped.margin_mm,
              "tolerance": shipped.tolerance}
    every = MotionRegion(**kwargs, component_share=0.0).find(speckled, SPACING)
    assert every is None or (every.box[1] - every.box[0]) * (every.box[3] - every.box[2]) > \
        2 * (clean_box[1] - clean_box[0]) * (clean_box[3] - clean_box[2])
    # a heart-cropped series of the training's size keeps every piece: its box of every moving voxel is small
    cropped = speckled[max(0, clean_box[0] - 8):clean_box[1] + 8, max(0, clean_box[2] - 8):clean_box[3] + 8].copy()
    cropped[:3, :3, :, ::2] += 0.2
    assert max(cropped.shape[:2]) <= shipped.component_min_box
    every_piece = MotionRegion(**kwargs, component_share=0.0).find(cropped, SPACING)
    assert shipped.find(cropped, SPACING) == every_piece
    assert MotionRegion(**kwargs, component_share=shipped.component_share).find(cropped, SPACING) != every_piece


@pytest.mark.parametrize("value, enabled", [(False, False), ("false", False), ("False", False), ("no", False),
                                            (True, True), ("true", True), (1, True)])
def test_the_switch_reads_false_from_a_command_line_as_false(value, enabled):
    """``monai.bundle run ... --motion_region false`` passes the string "false", which bool() would read as True."""
    assert MotionRegion(value).enabled is enabled


def test_a_switch_that_is_not_a_boolean_is_refused_by_name():
    from scripts.utils.errors import InputError

    with pytest.raises(InputError, match="motion_region: expected True or False, got 'maybe'"):
        MotionRegion("maybe")
