"""NIfTI, PNG montage and GIF preview writers, the DICOM pixel encoding: round trips, names, atomicity and refusal
to overwrite."""

import struct

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest

from scripts.io import nifti_write as writers
from scripts.io.dicom_write import StoredEncoding
from scripts.io.montage import TITLE_BAND_PX, write_montage
from scripts.io.nifti_write import write_nifti_frames, write_nifti_series
from scripts.io.preview import write_cine_preview
from scripts.utils.errors import OutputExistsError

OBLIQUE = np.array(
    [[1.2, 0.3, 0.0, -40.0], [-0.3, 1.2, 0.1, 12.5], [0.0, -0.05, 8.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
)
TS = [0.25, 0.5, 0.75]


def frames(shape=(6, 5, 4, 3)):
    return (np.random.default_rng(0).random(shape) * 900 - 100).astype(np.float32)


def test_nifti_round_trip_keeps_affine_and_intensities(tmp_path):
    data = frames()
    out = write_nifti_frames(data, OBLIQUE, tmp_path / "out", TS)
    assert out.series == tmp_path / "out" / "interp_4d.nii.gz"
    assert [p.name for p in out.volumes] == ["interp_t0.250.nii.gz", "interp_t0.500.nii.gz", "interp_t0.750.nii.gz"]
    series = nib.load(out.series)
    assert series.get_data_dtype() == np.float32
    np.testing.assert_array_equal(series.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(series.affine, OBLIQUE, atol=1e-5)
    assert (int(series.header["qform_code"]), int(series.header["sform_code"])) == (1, 1)
    for k, path in enumerate(out.volumes):
        volume = nib.load(path)
        assert volume.shape == data.shape[:3]
        np.testing.assert_array_equal(volume.get_fdata(dtype=np.float32), data[..., k])
        np.testing.assert_allclose(volume.affine, OBLIQUE, atol=1e-5)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([out.series.name, *(p.name for p in out.volumes)])


def test_integer_output_is_scaled_within_one_step(tmp_path):
    data = frames()
    out = write_nifti_frames(data, OBLIQUE, tmp_path, TS, prefix="cine", dtype="int16")
    image = nib.load(out.series)
    assert image.get_data_dtype() == np.int16
    step = (data.max() - data.min()) / 65535
    np.testing.assert_allclose(image.get_fdata(), data, rtol=0, atol=step)
    assert np.abs(image.get_fdata() - data).max() > 0  # really quantised


def test_nifti_writer_refuses_to_overwrite_and_writes_nothing(tmp_path):
    existing = tmp_path / "interp_t0.500.nii.gz"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        write_nifti_frames(frames(), OBLIQUE, tmp_path, TS)
    assert [p.name for p in tmp_path.iterdir()] == [existing.name]
    assert existing.read_bytes() == b"keep me"
    write_nifti_frames(frames(), OBLIQUE, tmp_path, TS, overwrite=True)
    np.testing.assert_array_equal(nib.load(existing).get_fdata(dtype=np.float32), frames()[..., 1])


def test_nifti_writer_leaves_no_file_when_writing_fails(tmp_path, monkeypatch):
    calls = []
    real_save = nib.save

    def failing_save(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(image, path)

    monkeypatch.setattr(writers.nib, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_nifti_frames(frames(), OBLIQUE, tmp_path / "out", TS)
    assert len(calls) == 3
    assert list((tmp_path / "out").iterdir()) == []


def test_nifti_writer_refuses_time_points_that_share_a_name(tmp_path):
    with pytest.raises(ValueError, match="share a file name"):
        write_nifti_frames(frames((2, 2, 2, 2)), OBLIQUE, tmp_path, [0.2501, 0.2502])
    with pytest.raises(ValueError, match="N = len"):
        write_nifti_frames(frames((2, 2, 2, 2)), OBLIQUE, tmp_path, TS)


def png_size(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


@pytest.mark.parametrize("with_truth", [False, True])
def test_montage_is_a_png_of_the_expected_size(tmp_path, with_truth):
    size_x, size_y, zoom = 12, 9, 5
    data = frames((size_x, size_y, 4, 3))
    truth = data + 1 if with_truth else None
    path = write_montage(data[..., 0], data, data[..., 2], TS, tmp_path / "montage.png", truth=truth, zoom=zoom)
    rows = 3 if with_truth else 1
    assert png_size(path) == ((3 + 2) * size_x * zoom, rows * (size_y * zoom + TITLE_BAND_PX))
    assert [p.name for p in tmp_path.iterdir()] == ["montage.png"]


def test_montage_shows_the_middle_slice_axis0_across_axis1_down(tmp_path):
    size_x, size_y, zoom = 10, 8, 6
    i0 = np.zeros((size_x, size_y, 5), np.float32)
    i0[7, 2, 2] = 1.0  # middle slice is z = 5 // 2 = 2
    i0[1, 1, 0] = 1.0  # another slice: must not show
    synthesised = np.zeros((size_x, size_y, 5, 1), np.float32)
    path = write_montage(i0, synthesised, np.zeros_like(i0), [0.5], tmp_path / "m.png", zoom=zoom)
    pixels = matplotlib.image.imread(path)[..., :3]
    image = pixels[TITLE_BAND_PX : TITLE_BAND_PX + size_y * zoom, : size_x * zoom]  # the I0 panel
    centre = lambda x, y: image[y * zoom + zoom // 2, x * zoom + zoom // 2]  # noqa: E731
    np.testing.assert_allclose(centre(7, 2), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(centre(1, 1), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(centre(2, 7), [0.0, 0.0, 0.0])
    bright = np.argwhere(image.mean(axis=-1) > 0.5)
    assert bright[:, 0].min() >= 2 * zoom - 1 and bright[:, 0].max() <= 3 * zoom
    assert bright[:, 1].min() >= 7 * zoom - 1 and bright[:, 1].max() <= 8 * zoom


def test_montage_refuses_to_overwrite(tmp_path):
    data = frames((4, 4, 2, 1))
    path = write_montage(data[..., 0], data, data[..., 0], [0.5], tmp_path / "m.png", zoom=2)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_montage(data[..., 0] + 1, data, data[..., 0], [0.5], path, zoom=3)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.png"]
    write_montage(data[..., 0], data, data[..., 0], [0.5], path, zoom=3, overwrite=True)
    assert png_size(path) == (3 * 4 * 3, 4 * 3 + TITLE_BAND_PX)


def test_nifti_series_carries_its_time_step(tmp_path):
    data = frames()
    path = write_nifti_series(data, OBLIQUE, tmp_path / "s.nii.gz", time_step_ms=22.5)
    image = nib.load(path)
    assert image.header.get_zooms()[3] == pytest.approx(22.5) and image.header.get_xyzt_units() == ("mm", "msec")
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(image.affine, OBLIQUE, atol=1e-6)
    with pytest.raises(OutputExistsError):
        write_nifti_series(data, OBLIQUE, path)


def test_preview_shows_the_acquired_frame_beside_each_output_frame(tmp_path):
    from PIL import Image

    acquired = np.zeros((8, 6, 3, 2), np.float32)
    acquired[..., 1] = 1.0  # frame 0 black, frame 1 white
    cine = np.repeat(acquired, 2, axis=3)
    cine[..., 1], cine[..., 3] = 0.5, 0.75  # new frames (identical consecutive GIF frames would be merged)
    path = write_cine_preview(acquired, cine, [0, 0, 1, 1], tmp_path / "p.gif", frame_ms=50)
    gif = Image.open(path)
    assert gif.n_frames == 4 and gif.info["loop"] == 0 and gif.info["duration"] == 50
    means = []
    for m in range(4):
        gif.seek(m)
        pixels = np.asarray(gif.convert("L"), dtype=float)
        width = pixels.shape[1]
        means.append((pixels[-10:, : width // 2 - 4].mean(), pixels[-10:, width // 2 + 4:].mean()))
    left, right = zip(*means)
    assert left[0] == left[1] < left[2] == left[3]  # the acquired frame held while the output advances
    assert right[0] < right[1] < right[3] < right[2]


@pytest.mark.parametrize("template, stored", [
    ({"BitsStored": 12, "PixelRepresentation": 0}, [0, 1, 4095, 4095, 0]),
    ({"BitsStored": 16, "PixelRepresentation": 1, "RescaleSlope": 2.0, "RescaleIntercept": -1024.0},
     [512, 513, 3010, 16012, -88]),
])
def test_pixels_are_stored_as_the_input_stores_them(template, stored):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in template.items():
        setattr(ds, keyword, value)
    encoding = StoredEncoding.of(ds)
    values = np.array([0.2, 1.4, 999.0 * 5, 31000.0, -1200.0])
    result = encoding.encode(values)
    assert result.dtype == (np.uint16 if template["PixelRepresentation"] == 0 else np.int16)
    np.testing.assert_array_equal(result, stored)
    assert encoding.identity == ("RescaleSlope" not in template)
