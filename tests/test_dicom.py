"""DICOM reading (the four layouts, oblique geometry, errors) and writing (derived series, synthetic acquisitions)."""

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from dicom_helpers import (
    SHAPE,
    assert_same_series,
    dicom_files,
    edit,
    make_affine,
    make_series,
    mark_jpeg_ls,
    scramble,
    without_decoders,
    write_text_sr,
)
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from scripts.io.dicom_geometry import LPS_TO_RAS
from scripts.io.dicom_read import read_dicom_series
from scripts.io.dicom_write import encode_int16, write_derived_series
from scripts.io.series import Series4D
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition
from scripts.utils.errors import InputError, OutputExistsError

DCIODVFY = shutil.which("dciodvfy")


# --- round trips ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["series_per_phase", "single_series", "series_per_slice", "enhanced"])
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_round_trip_double_oblique_scrambled(tmp_path, layout, modality):
    written = make_series(modality)
    patient = write_dicom_acquisition(written, tmp_path, layout=layout, modality=modality, patient_id="P7")
    read = read_dicom_series(scramble(patient))
    assert_same_series(read, written, modality)
    if modality == "MR" or layout != "series_per_phase":  # 4D CT phases carry a percentage, not a trigger time
        np.testing.assert_allclose(read.times, written.times, atol=1e-6)
    else:
        assert read.times is None
    assert read.dicom_template.PatientID == "P7"
    assert "PixelData" not in read.dicom_template


def test_round_trip_axial_and_frame_subset(tmp_path):
    written = make_series("CT", oblique=False)
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_phase", modality="CT")
    read = read_dicom_series(patient, frames=[0, 3])
    np.testing.assert_allclose(read.affine, written.affine, atol=1e-4)
    np.testing.assert_array_equal(read.array, written.array[..., [0, 3]])


def test_axis_2_against_the_normal_reads_back_as_the_same_world_volume(tmp_path):
    written = make_series("MR")
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, SHAPE[2] - 1  # voxel k -> Z - 1 - k
    flipped = Series4D(written.array[:, :, ::-1], written.affine @ flip, "synthetic", written.times)
    read = read_dicom_series(write_dicom_acquisition(flipped, tmp_path, layout="single_series", modality="MR"))
    np.testing.assert_allclose(read.affine, written.affine, atol=1e-4)
    np.testing.assert_allclose(read.array, written.array, atol=1e-2)


@pytest.mark.parametrize("removed, key", [
    (("TemporalPositionIdentifier",), "TriggerTime"),
    (("TemporalPositionIdentifier", "TriggerTime"), "InstanceNumber"),
])
def test_single_series_falls_back_to_trigger_time_then_instance_number(tmp_path, removed, key, caplog):
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="single_series", modality="MR")
    edit(dicom_files(patient), lambda ds: [delattr(ds, k) for k in removed])
    caplog.set_level("INFO")
    read = read_dicom_series(scramble(patient))
    assert f"ordered by {key}" in caplog.text
    np.testing.assert_allclose(read.array, written.array, atol=1e-2)


def test_phase_series_fall_back_to_folder_name_order(tmp_path, caplog):
    """Eleven phases without a phase tag: ordered by folder name in natural order (10 after 9)."""
    written = make_series("CT", frames=11, shape=(8, 6, 3))
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_phase", modality="CT")
    edit(dicom_files(patient), lambda ds: setattr(ds, "SeriesDescription", "helical"))
    caplog.set_level("INFO")
    read = read_dicom_series(patient)
    assert "ordered by series folder name" in caplog.text
    np.testing.assert_array_equal(read.array, written.array)


def test_mr_phase_series_ordered_by_temporal_position(tmp_path):
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_phase", modality="MR")
    read = read_dicom_series(scramble(patient))
    np.testing.assert_allclose(read.array, written.array, atol=1e-2)


def test_enhanced_frames_in_any_order(tmp_path):
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="enhanced", modality="MR")
    (path,) = dicom_files(patient)
    ds = pydicom.dcmread(path)
    order = np.random.default_rng(1).permutation(int(ds.NumberOfFrames))
    pixels = ds.pixel_array[order]
    ds.PerFrameFunctionalGroupsSequence = [ds.PerFrameFunctionalGroupsSequence[i] for i in order]
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path)
    read = read_dicom_series(patient)
    assert_same_series(read, written, "MR")


def test_localizer_and_non_image_objects_are_skipped(tmp_path):
    written = make_series("CT")
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_phase", modality="CT")
    localizer = pydicom.dcmread(dicom_files(patient)[0])
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    localizer.SOPInstanceUID = generate_uid()
    localizer.save_as(patient / "scout.dcm")
    write_text_sr(patient / "report.dcm")
    read = read_dicom_series(patient)
    np.testing.assert_array_equal(read.array, written.array)


def test_malformed_uids_are_read_and_never_written_back(tmp_path, monkeypatch):
    written = make_series("CT")
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_phase", modality="CT")
    bad_study = "1.2.840.0113619.2.5.01"  # leading-zero components, as on old GE scanners
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.WARN)
    edit(dicom_files(patient), lambda ds: setattr(ds, "StudyInstanceUID", bad_study))
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        read = read_dicom_series(patient)
    np.testing.assert_array_equal(read.array, written.array)
    first = write_derived_series(read.array[..., 0], read.affine, tmp_path / "d1", read.dicom_template, "t=0.5")
    second = write_derived_series(read.array[..., 1], read.affine, tmp_path / "d2", read.dicom_template, "t=0.6")
    studies = {pydicom.dcmread(p).StudyInstanceUID for p in dicom_files(first) + dicom_files(second)}
    assert len(studies) == 1 and bad_study not in studies and UID(studies.pop()).is_valid


# --- derived series ------------------------------------------------------------------------------------------------

def derived_case(tmp_path, modality="CT", layout="series_per_phase"):
    """An input acquisition, its header template, and a float volume written as a derived series."""
    written = make_series(modality)
    read = read_dicom_series(write_dicom_acquisition(written, tmp_path / "in", layout=layout, modality=modality))
    volume = (written.array[..., 1] + written.array[..., 2]) / 2 + 0.3  # not integer: needs a fractional slope
    out = write_derived_series(volume, read.affine, tmp_path / "derived", read.dicom_template,
                               "TMSDF-KD t=0.50", series_number=1001)
    return read, volume, out


def test_derived_series_tags_geometry_and_pixels(tmp_path):
    read, volume, out = derived_case(tmp_path)
    files = dicom_files(out)
    datasets = [pydicom.dcmread(p) for p in files]
    template = read.dicom_template
    assert len(files) == SHAPE[2]
    for ds in datasets:
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.SOPClassUID == template.SOPClassUID
        assert ds.SeriesDescription == "TMSDF-KD t=0.50" and ds.SeriesNumber == 1001
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "Manufacturer"):
            assert ds[keyword].value == template[keyword].value
        assert ds.SeriesInstanceUID != template.SeriesInstanceUID
    uids = [ds.SOPInstanceUID for ds in datasets] + [datasets[0].SeriesInstanceUID]
    assert len(set(uids)) == len(uids) and all(UID(u).is_valid for u in uids)
    assert template.SOPInstanceUID not in uids
    # geometry computed by hand from the affine: voxel (0, 0, k) in LPS, the two in-plane unit vectors, spacings
    lps = LPS_TO_RAS @ read.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    for k, ds in enumerate(sorted(datasets, key=lambda d: d.InstanceNumber)):
        np.testing.assert_allclose(ds.ImagePositionPatient, lps[:3, 3] + k * lps[:3, 2], atol=1e-6)
        np.testing.assert_allclose(ds.ImageOrientationPatient, np.concatenate(
            [lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]]), atol=1e-9)
        np.testing.assert_allclose(ds.PixelSpacing, [spacing[1], spacing[0]], atol=1e-9)
        np.testing.assert_allclose(float(ds.SpacingBetweenSlices), spacing[2], atol=1e-9)  # axis 2 is normal here
        values = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(values, volume[:, :, k], atol=float(ds.RescaleSlope) / 2 + 1e-9)
    assert float(datasets[0].RescaleSlope) < 0.05  # the fraction 0.3 survives


def test_derived_series_matches_itk_geometry(tmp_path):
    itk = pytest.importorskip("itk")
    read, volume, out = derived_case(tmp_path)
    image = itk.imread(str(out))
    lps = np.eye(4)
    lps[:3, :3] = itk.array_from_matrix(image.GetDirection()) @ np.diag(itk.spacing(image))
    lps[:3, 3] = itk.origin(image)
    np.testing.assert_allclose(LPS_TO_RAS @ lps, read.affine, atol=1e-4)
    values = itk.array_from_image(image).transpose(2, 1, 0)  # ITK arrays are (z, y, x)
    slope = float(pydicom.dcmread(dicom_files(out)[0]).RescaleSlope)
    np.testing.assert_allclose(values, volume, atol=slope / 2 + 1e-6)


def test_derived_series_refuses_to_overwrite(tmp_path):
    read, volume, out = derived_case(tmp_path)
    before = {p.name: p.read_bytes() for p in dicom_files(out)}
    with pytest.raises(OutputExistsError):
        write_derived_series(volume, read.affine, out, read.dicom_template, "again")
    assert {p.name: p.read_bytes() for p in dicom_files(out)} == before
    write_derived_series(volume, read.affine, out, read.dicom_template, "again", overwrite=True)
    assert {pydicom.dcmread(p).SeriesDescription for p in dicom_files(out)} == {"again"}


def test_derived_series_of_enhanced_input_is_classic(tmp_path):
    _, _, out = derived_case(tmp_path, modality="MR", layout="enhanced")
    assert {pydicom.dcmread(p).SOPClassUID for p in dicom_files(out)} == {pydicom.uid.MRImageStorage}


def dciodvfy_errors(path):
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    return result.returncode, errors


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
@pytest.mark.parametrize("modality, layout", [("CT", "series_per_phase"), ("MR", "single_series"), ("MR", "enhanced")])
def test_derived_series_pass_dciodvfy(tmp_path, modality, layout):
    _, _, out = derived_case(tmp_path, modality, layout)
    for path in dicom_files(out):
        assert dciodvfy_errors(path) == (0, []), path


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
@pytest.mark.parametrize("layout", ["series_per_phase", "single_series", "series_per_slice"])
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_synthetic_acquisitions_pass_dciodvfy(tmp_path, layout, modality):
    patient = write_dicom_acquisition(make_series(modality, frames=2, shape=(8, 6, 2)), tmp_path, layout=layout,
                                      modality=modality)
    for path in dicom_files(patient):
        assert dciodvfy_errors(path) == (0, []), path


def test_encode_int16_keeps_units():
    integers = np.array([-1024.0, 0.0, 3071.0])
    stored, slope, intercept = encode_int16(integers)
    assert (slope, intercept) == (1.0, 0.0) and stored.tolist() == [-1024, 0, 3071]
    floats = np.linspace(-0.5, 1.7, 1000)
    stored, slope, intercept = encode_int16(floats)
    assert stored.dtype == np.int16 and slope == pytest.approx(2.2 / 65532, rel=1e-6)
    assert np.abs(stored * slope + intercept - floats).max() <= slope / 2 * (1 + 1e-6)
    with pytest.raises(InputError, match="NaN"):
        encode_int16(np.array([1.0, np.nan]))


# --- errors --------------------------------------------------------------------------------------------------------

@pytest.fixture
def acquisition(tmp_path):
    """A small series_per_phase CT acquisition: (patient folder, written series)."""
    written = make_series("CT", shape=(8, 6, 4), frames=3)
    return write_dicom_acquisition(written, tmp_path / "data", layout="series_per_phase", modality="CT"), written


def test_error_folder_missing_or_empty(tmp_path):
    with pytest.raises(InputError, match="does not exist") as err:
        read_dicom_series(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        read_dicom_series(tmp_path / "empty")


def test_error_no_dicom_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM file"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize("damage, words", [
    (lambda data: b"not dicom at all" * 20, "not a readable DICOM file"),
    (lambda data: data[:400], "truncated or incomplete"),  # cut in the header
    (lambda data: data[:-10], "cannot decode the pixel data"),  # cut in the pixel data
])
def test_error_unreadable_file_is_named(acquisition, damage, words):
    patient, _ = acquisition
    bad = dicom_files(patient)[3]
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(InputError, match=words) as err:
        read_dicom_series(patient)
    assert str(bad) in str(err.value)


def test_error_only_non_image_dicom(tmp_path):
    write_text_sr(tmp_path / "report.dcm")
    with pytest.raises(InputError, match="only non-image objects.*Basic Text SR"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_error_missing_geometry_tag_names_file_and_tag(acquisition, tag):
    patient, _ = acquisition
    bad = dicom_files(patient)[5]
    edit([bad], lambda ds: delattr(ds, tag))
    with pytest.raises(InputError, match=f"missing {tag}") as err:
        read_dicom_series(patient)
    assert str(bad) in str(err.value)


def test_error_mixed_acquisitions_names_series(acquisition, tmp_path):
    patient, written = acquisition
    other = Series4D(written.array, make_affine(oblique=False, spacing=(0.7, 0.7, 2.5)), "other")
    other_patient = write_dicom_acquisition(other, tmp_path / "other", layout="single_series", modality="CT")
    shutil.copytree(other_patient, patient / "other")
    with pytest.raises(InputError, match="2 acquisitions with different geometry") as err:
        read_dicom_series(patient)
    message = str(err.value)
    assert "Gated, 0.0%" in message and "Cine CT, all slices and phases" in message
    assert "orientation" in message and "pixel spacing" in message


def test_error_duplicate_file(acquisition):
    patient, _ = acquisition
    original = dicom_files(patient)[2]
    shutil.copy(original, original.with_name("copy.dcm"))
    with pytest.raises(InputError, match="duplicate slice") as err:
        read_dicom_series(patient)
    assert "copy.dcm" in str(err.value)


@pytest.mark.parametrize("layout", ["series_per_phase", "single_series"])
def test_error_duplicate_position_and_time(tmp_path, layout):
    patient = write_dicom_acquisition(make_series("MR", shape=(8, 6, 4), frames=3), tmp_path, layout=layout,
                                      modality="MR")
    ds = pydicom.dcmread(dicom_files(patient)[0])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(dicom_files(patient)[0].with_name("again.dcm"))
    with pytest.raises(InputError, match="duplicate slices.*same slice location") as err:
        read_dicom_series(patient)
    assert "again.dcm" in str(err.value)


def test_error_position_missing_a_time_point_is_named(acquisition):
    patient, written = acquisition
    phase_1 = sorted(p for p in dicom_files(patient) if p.parent.name.startswith("2."))
    victim = pydicom.dcmread(phase_1[2])
    phase_1[2].unlink()
    location = float(victim.SliceLocation)
    with pytest.raises(InputError, match=f"slice location {location:.2f} mm has 2 time points.*have 3"):
        read_dicom_series(patient)


def test_error_one_time_point(tmp_path):
    patient = write_dicom_acquisition(make_series("CT", frames=1, shape=(8, 6, 3)), tmp_path, layout="series_per_phase")
    with pytest.raises(InputError, match="only one time point"):
        read_dicom_series(patient)


def test_error_gap_in_slice_positions(acquisition):
    patient, _ = acquisition
    for path in dicom_files(patient):  # slice 2 of 4 missing in every phase
        if pydicom.dcmread(path, stop_before_pixels=True).InstanceNumber == 2:
            path.unlink()
    with pytest.raises(InputError, match="not evenly spaced: 5.000 mm .* 3.750 mm on average"):
        read_dicom_series(patient)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_exports_read_as_the_uncompressed_ones(tmp_path, syntax):
    """PACS and workstation exports are often compressed; the pinned decoders read them to the same values."""
    written = make_series("MR", shape=(40, 32, 3), frames=3)
    patient = write_dicom_acquisition(written, tmp_path / "data", layout="single_series", modality="MR")
    plain = read_dicom_series(patient)
    for path in dicom_files(patient):
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    assert pydicom.dcmread(dicom_files(patient)[0]).file_meta.TransferSyntaxUID == syntax
    compressed = read_dicom_series(patient)
    np.testing.assert_array_equal(compressed.array, plain.array)
    np.testing.assert_allclose(compressed.affine, plain.affine)


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEGBaseline8Bit, JPEG2000])
def test_the_common_compressed_syntaxes_have_a_decoder(syntax):
    """No encoder for these is installed, so no round trip: the shipped requirements decode them."""
    assert get_decoder(syntax).is_available


def test_error_compressed_without_decoder_names_syntax_and_packages(acquisition, monkeypatch):
    without_decoders(monkeypatch)
    patient, _ = acquisition
    path = dicom_files(patient)[0]
    mark_jpeg_ls(path)
    with pytest.raises(InputError, match="JPEG-LS Lossless.*1.2.840.10008.1.2.4.80.*pylibjpeg") as err:
        read_dicom_series(patient)
    assert str(path) in str(err.value)


def test_clock_times_stay_before_midnight_and_carry_over_whole_seconds():
    """A derived cine's ContentTime per frame: a series that would run past midnight starts earlier instead of
    wrapping (a time of day would then order its frames wrongly), and a time just short of a minute rounds to the
    next minute, never to a 60th second."""
    from scripts.io.dicom_write import _clock_times

    assert _clock_times("235959.500000", [0, 300, 600]) == ["235958.400000", "235958.700000", "235959.000000"]
    assert _clock_times("120059.999999", [0.0, 0.0006]) == ["120059.999999", "120100.000000"]
