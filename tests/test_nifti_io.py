"""NIfTI reading (4D series, two volumes, endpoints) and the [0, 1] intensity scale."""

import nibabel as nib
import numpy as np
import pytest
import torch

from scripts.io.nifti_read import (
    frame_endpoints,
    nifti_4d_shape,
    read_nifti_4d,
    read_two_volumes,
    select_endpoints,
)
from scripts.io.series import Series4D
from scripts.transforms.intensity import IntensityScale, normalise_frames
from scripts.utils.errors import InputError

AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -20.0], [0.0, 0.0, 3.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def save(path, array, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), path)
    return path


def ramp(shape):
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_read_4d_keeps_voxels_affine_and_times(tmp_path):
    data = ramp((4, 3, 2, 5))
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_xyzt_units(xyz="mm", t="sec")
    image.header["pixdim"][4] = 0.05
    nib.save(image, tmp_path / "cine.nii.gz")
    series = read_nifti_4d(tmp_path / "cine.nii.gz")
    assert series.array.dtype == np.float32
    np.testing.assert_array_equal(series.array, data)
    np.testing.assert_allclose(series.affine, AFFINE, atol=1e-6)
    np.testing.assert_allclose(series.times, [0, 50, 100, 150, 200])
    assert series.spacing == pytest.approx((2.0, 1.5, 3.0))
    assert series.source.endswith("cine.nii.gz")


def test_read_4d_applies_nifti_scaling(tmp_path):
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 2, 2, 3), AFFINE)
    image.header.set_slope_inter(2.0, 10.0)
    nib.save(image, tmp_path / "scaled.nii")
    series = read_nifti_4d(tmp_path / "scaled.nii")
    np.testing.assert_array_equal(series.array, 2.0 * np.arange(24).reshape(2, 2, 2, 3) + 10.0)
    assert series.times is None  # no time unit in the header


def test_read_4d_squeezes_singleton_fourth_dimension(tmp_path):
    data = ramp((3, 2, 2, 1, 4))
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_xyzt_units(xyz="mm", t="sec")  # pixdim[4] belongs to the singleton axis, not to time
    nib.save(image, tmp_path / "xyz1t.nii.gz")
    series = read_nifti_4d(tmp_path / "xyz1t.nii.gz")
    np.testing.assert_array_equal(series.array, data[:, :, :, 0, :])
    assert series.times is None
    assert nifti_4d_shape(tmp_path / "xyz1t.nii.gz") == (3, 2, 2, 4)


def _bad_file(tmp_path, kind):
    """Write one kind of unusable 4D input; return (path, words the error must contain)."""
    path = tmp_path / f"{kind}.nii.gz"
    if kind == "missing":
        return path, ["file not found"]
    if kind == "empty":
        path.write_bytes(b"")
        return path, ["cannot read"]
    if kind == "not_gzip":
        path.write_bytes(b"plain text, not a NIfTI")
        return path, ["cannot read"]
    if kind == "truncated":
        save(path, np.random.default_rng(0).random((20, 20, 10, 4)).astype(np.float32))
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 9 // 10])
        return path, ["cannot read", "truncated"]
    if kind == "corrupt_gzip":
        save(path, np.random.default_rng(0).random((20, 20, 10, 4)).astype(np.float32))
        raw = bytearray(path.read_bytes())
        middle = len(raw) // 2
        raw[middle : middle + 64] = bytes(64)  # decodes to wrong voxels; only the gzip CRC tells
        path.write_bytes(bytes(raw))
        return path, ["cannot read"]
    if kind == "2d":
        save(path, ramp((4, 5)))
        return path, ["2D", "(4, 5)", "expected a 4D"]
    if kind == "3d":
        save(path, ramp((4, 5, 3)))
        return path, ["3D", "(4, 5, 3)", "expected a 4D"]
    if kind == "5d":
        save(path, ramp((4, 5, 3, 2, 3)))
        return path, ["5D", "(4, 5, 3, 2, 3)", "expected a 4D"]
    if kind == "one_frame":
        save(path, ramp((4, 5, 3, 1)))
        return path, ["1 frame", "at least 2"]
    if kind == "nan":
        data = ramp((4, 5, 3, 2))
        data[1, 1, 1, 1] = np.nan
        data[2, 2, 2, 0] = np.inf
        save(path, data)
        return path, ["2 voxel(s)", "NaN or infinite"]
    if kind == "constant":
        save(path, np.full((4, 5, 3, 2), 7.0, dtype=np.float32))
        return path, ["constant", "7.0"]
    raise AssertionError(kind)


BAD_KINDS = [
    "missing", "empty", "not_gzip", "truncated", "corrupt_gzip", "2d", "3d", "5d", "one_frame", "nan", "constant"
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_read_4d_rejects_bad_file_naming_it(tmp_path, kind):
    path, words = _bad_file(tmp_path, kind)
    with pytest.raises(InputError) as caught:
        read_nifti_4d(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    for word in words:
        assert word in message


@pytest.mark.parametrize("kind", ["missing", "empty", "3d", "5d", "one_frame"])
def test_header_shape_rejects_what_the_reader_rejects(tmp_path, kind):
    path, words = _bad_file(tmp_path, kind)
    with pytest.raises(InputError, match=words[0]) as caught:
        nifti_4d_shape(path)
    assert caught.value.source == str(path)


def test_read_two_volumes_stacks_in_order_on_the_first_grid(tmp_path):
    first, second = ramp((4, 3, 2)), 100 + ramp((4, 3, 2))
    save(tmp_path / "a.nii.gz", first)
    save(tmp_path / "b.nii.gz", second[..., None])  # a single-frame 4D file counts as 3D
    series = read_two_volumes(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    assert series.array.shape == (4, 3, 2, 2)
    np.testing.assert_array_equal(series.array[..., 0], first)
    np.testing.assert_array_equal(series.array[..., 1], second)
    np.testing.assert_allclose(series.affine, AFFINE, atol=1e-6)


def _shifted(affine, spacing=None, flip=False, origin=None):
    out = affine.copy()
    if spacing is not None:
        out[:3, 0] *= spacing
    if flip:
        out[:3, 0] *= -1
    if origin is not None:
        out[:3, 3] += origin
    return out


@pytest.mark.parametrize(
    "shape, affine, words",
    [
        ((4, 3, 3), AFFINE, ["shapes differ", "(4, 3, 2) vs (4, 3, 3)"]),
        ((4, 3, 2), _shifted(AFFINE, spacing=1.1), ["spacing differs", "2.0", "2.2"]),
        ((4, 3, 2), _shifted(AFFINE, flip=True), ["orientation differs", "(ALS) vs", "(PLS)"]),
        ((4, 3, 2), _shifted(AFFINE, origin=[0.0, 0.0, 1.0]), ["position differs", "5.0", "6.0"]),
    ],
)
def test_read_two_volumes_rejects_different_grids_naming_both(tmp_path, shape, affine, words):
    save(tmp_path / "a.nii.gz", ramp((4, 3, 2)))
    save(tmp_path / "b.nii.gz", ramp(shape) + 1, affine)
    with pytest.raises(InputError) as caught:
        read_two_volumes(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    message = str(caught.value)
    assert str(tmp_path / "a.nii.gz") in message and str(tmp_path / "b.nii.gz") in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "kind, words", [("series", ["4D", "(4, 3, 2, 3)", "expected one 3D"]), ("constant", ["constant"])]
)
def test_read_two_volumes_rejects_a_bad_volume_naming_it(tmp_path, kind, words):
    save(tmp_path / "a.nii.gz", ramp((4, 3, 2)))
    bad = ramp((4, 3, 2, 3)) if kind == "series" else np.ones((4, 3, 2), np.float32)
    save(tmp_path / "b.nii.gz", bad)
    with pytest.raises(InputError) as caught:
        read_two_volumes(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    assert caught.value.source == str(tmp_path / "b.nii.gz")
    for word in words:
        assert word in str(caught.value)


def _series(num_frames):
    return Series4D(array=np.zeros((2, 2, 2, num_frames), np.float32), affine=np.eye(4), source="cine.nii.gz")


@pytest.mark.parametrize("start, end, expected", [(0, 4, (0, 4)), (-1, 1, (4, 1)), (-5, -2, (0, 3)), (3, 2, (3, 2))])
def test_select_endpoints_accepts_python_indices(start, end, expected):
    assert select_endpoints(_series(5), start, end) == expected


@pytest.mark.parametrize(
    "start, end, source, words",
    [
        (5, 1, "--start_frame", ["frame 5 is out of range", "5 frames"]),
        (0, -6, "--end_frame", ["frame -6 is out of range"]),
        (1.0, 2, "--start_frame", ["integer"]),
        (0, True, "--end_frame", ["integer"]),
        (1, -4, "--start_frame/--end_frame", ["both select frame 1"]),
    ],
)
def test_select_endpoints_errors_name_the_argument(start, end, source, words):
    with pytest.raises(InputError) as caught:
        select_endpoints(_series(5), start, end)
    assert caught.value.source == source
    for word in words:
        assert word in caught.value.problem


def test_frame_endpoints_uses_the_given_names():
    with pytest.raises(InputError) as caught:
        frame_endpoints(3, 0, 3, names=("a.json: start_frame", "a.json: end_frame"))
    assert caught.value.source == "a.json: end_frame"


def test_intensity_scale_maps_min_max_to_unit_and_back_in_numpy_and_torch():
    data = np.array([[-50.0, 0.0], [150.0, 100.0]], dtype=np.float32)
    scale = IntensityScale.of(data, "x.nii")
    assert (scale.lo, scale.hi) == (-50.0, 150.0)
    unit = scale.to_unit(data)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.0, 0.25], [1.0, 0.75]])
    np.testing.assert_allclose(scale.from_unit(unit), data)
    as_torch = scale.to_unit(torch.from_numpy(data))
    assert as_torch.dtype == torch.float32
    torch.testing.assert_close(as_torch, torch.from_numpy(unit))
    torch.testing.assert_close(scale.from_unit(as_torch), torch.from_numpy(data))


def test_intensity_scale_rejects_constant_data_naming_the_source():
    with pytest.raises(InputError, match="constant") as caught:
        IntensityScale.of(np.full((3, 3), 4.0), "flat.nii.gz")
    assert caught.value.source == "flat.nii.gz"


def test_normalise_frames_per_series_and_per_frame():
    frames = np.stack([np.array([0.0, 10.0]), np.array([20.0, 40.0])], axis=-1).astype(np.float32)  # (2, T=2)
    series, scales = normalise_frames(frames, "cine")
    np.testing.assert_allclose(series, [[0.0, 0.5], [0.25, 1.0]])
    assert scales == (IntensityScale(0.0, 40.0),)
    per_frame, scales = normalise_frames(frames, "cine", per_frame=True)
    np.testing.assert_allclose(per_frame, [[0.0, 0.0], [1.0, 1.0]])
    assert scales == (IntensityScale(0.0, 10.0), IntensityScale(20.0, 40.0))


def test_normalise_frames_per_frame_names_a_constant_frame():
    frames = np.stack([np.array([0.0, 1.0]), np.array([3.0, 3.0])], axis=-1)
    with pytest.raises(InputError) as caught:
        normalise_frames(frames, "cine.nii.gz", per_frame=True)
    assert caught.value.source == "cine.nii.gz frame 1"
