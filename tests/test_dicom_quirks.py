"""What real scanner exports do, reproduced by the synthetic writer's quirks and by small edits, and read right.

Each case stands for files met on a real export (docs/dicom_exports.md): the folder reads with the right shape, frame
order and geometry, or is refused with one line naming the file or folder and the problem.
"""

import logging
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from dicom_helpers import assert_same_series, dicom_files, edit, make_affine, make_series, scramble
from pydicom.uid import generate_uid

from scripts.io import dicom_read
from scripts.io.dicom_geometry import LPS_TO_RAS
from scripts.io.dicom_read import LAYOUTS, read_dicom_series
from scripts.phantoms.dicom_acquisition import QUIRKS, write_dicom_acquisition
from scripts.phantoms.make import phantom
from scripts.utils.errors import InputError

GE_QUIRKS = ("empty_functional_groups", "frame_of_reference_per_image", "invalid_uids")


def read_quietly(folder, **kwargs):
    """``read_dicom_series`` with the warnings it issues: (series, [warning texts])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_dicom_series(folder, **kwargs)
    return series, [str(w.message) for w in caught]


# --- layouts ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_is_named_in_the_log(tmp_path, layout, caplog):
    written = make_series("MR", frames=3, shape=(8, 6, 4))
    caplog.set_level("INFO")
    read_dicom_series(write_dicom_acquisition(written, tmp_path, layout=layout, modality="MR"))
    assert f"layout {layout}, 4 slice positions x 3 time points" in caplog.text


def test_layout_letters_are_aliases_and_unknown_names_are_refused(tmp_path):
    written = make_series("MR", frames=3, shape=(8, 6, 4))
    by_letter = write_dicom_acquisition(written, tmp_path / "letter", layout="c", modality="MR")
    assert len({p.parent for p in dicom_files(by_letter)}) == 4  # one series folder per slice position
    with pytest.raises(InputError, match="--layout: must be one of series_per_phase, single_series"):
        write_dicom_acquisition(written, tmp_path / "bad", layout="per_slice", modality="MR")
    with pytest.raises(InputError, match="unknown stray_tags"):
        write_dicom_acquisition(written, tmp_path / "bad", quirks=("stray_tags",))
    with pytest.raises(InputError, match="ungated_slices needs layout series_per_slice"):
        write_dicom_acquisition(written, tmp_path / "bad", layout="single_series", quirks=("ungated_slices",))
    assert not (tmp_path / "bad").exists()


def test_phantom_verb_takes_layout_names(tmp_path):
    out = phantom("cine_dicom", str(tmp_path / "cine"), num_cases=1, seed=2, shape="16,16,4", frames=6,
                  layout="enhanced")
    (path,) = dicom_files(f"{out}/PHANTOM001")
    assert pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID == pydicom.uid.EnhancedMRImageStorage
    assert read_dicom_series(f"{out}/PHANTOM001").array.shape == (16, 16, 4, 6)
    with pytest.raises(InputError, match="--layout"):
        phantom("cine_dicom", str(tmp_path / "bad"), num_cases=1, shape="16,16,4", frames=6, layout="sideways")
    assert not (tmp_path / "bad").exists()


# --- GE cine: one series, empty functional groups, a frame of reference per image, invalid UIDs ----------------------

def test_ge_cine_reads_with_each_warning_said_once(tmp_path, caplog):
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="single_series", modality="MR", quirks=GE_QUIRKS)
    sample = pydicom.dcmread(dicom_files(patient)[0], stop_before_pixels=True)
    assert len(sample.PerFrameFunctionalGroupsSequence) == 1 and len(sample.PerFrameFunctionalGroupsSequence[0]) == 0
    assert len({pydicom.dcmread(p, stop_before_pixels=True).FrameOfReferenceUID for p in dicom_files(patient)}) == 30
    folder = scramble(patient)
    caplog.set_level("INFO")
    caplog.clear()  # the checks above logged pydicom's warnings themselves
    read, said = read_quietly(folder)
    assert_same_series(read, written, "MR")
    np.testing.assert_allclose(read.times, written.times, atol=1e-6)
    invalid = [text for text in said if "Invalid value for VR UI" in text]
    assert len(invalid) == 1 and "more like it" in invalid[0]
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]  # pydicom's own log lines are dropped
    assert caplog.text.count("different FrameOfReferenceUIDs") == 1
    assert "layout single_series" in caplog.text and "ordered by TemporalPositionIdentifier" in caplog.text


def test_ge_cine_geometry_agrees_with_itk(tmp_path):
    """ITK's GDCM series reader, given the files of one time point, places them as the reader does."""
    itk = pytest.importorskip("itk")
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="single_series", modality="MR", quirks=GE_QUIRKS)
    read, _ = read_quietly(patient)
    num_frames = written.array.shape[3]
    for frame in (0, num_frames - 1):  # InstanceNumber runs over the phases of each slice
        paths = [str(p) for p in dicom_files(patient) if (int(p.stem[2:]) - 1) % num_frames == frame]
        reader = itk.ImageSeriesReader[itk.Image[itk.F, 3]].New(FileNames=paths, ImageIO=itk.GDCMImageIO.New())
        reader.Update()
        image = reader.GetOutput()
        lps = np.eye(4)
        lps[:3, :3] = itk.array_from_matrix(image.GetDirection()) @ np.diag(itk.spacing(image))
        lps[:3, 3] = itk.origin(image)
        np.testing.assert_allclose(LPS_TO_RAS @ lps, read.affine, atol=1e-4)
        np.testing.assert_allclose(itk.array_from_image(image).transpose(2, 1, 0), read.array[..., frame], atol=1e-4)


@pytest.mark.parametrize("quirk", GE_QUIRKS)
@pytest.mark.parametrize("layout", ["series_per_phase", "single_series", "series_per_slice"])
def test_each_ge_quirk_alone_in_each_classic_layout(tmp_path, quirk, layout):
    written = make_series("MR", frames=3, shape=(8, 6, 4))
    patient = write_dicom_acquisition(written, tmp_path, layout=layout, modality="MR", quirks=(quirk,))
    read, _ = read_quietly(scramble(patient))
    assert_same_series(read, written, "MR")


def test_ge_slice_timing_in_trigger_time_falls_back_to_instance_number(tmp_path, caplog):
    """GE fMRI: TriggerTime holds each slice's offset in the TR (constant at a position), no temporal position tag."""
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="single_series", modality="MR")

    def slice_timing(ds):
        del ds.TemporalPositionIdentifier
        ds.TriggerTime = (int(ds.InstanceNumber) - 1) // written.array.shape[3] * 40.0

    edit(dicom_files(patient), slice_timing)
    caplog.set_level("INFO")
    read = read_dicom_series(scramble(patient))
    assert "ordered by InstanceNumber" in caplog.text
    assert_same_series(read, written, "MR")
    assert read.times is None  # a slice offset is not a time point's time


# --- Siemens real-time stack: one series per slice, TriggerTime constant within each --------------------------------

def test_siemens_ungated_stack_orders_each_slice_by_acquisition_time_and_warns(tmp_path, caplog):
    written = make_series("MR")
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_slice", modality="MR",
                                      quirks=("ungated_slices",))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_files(patient)]
    by_series = {}
    for ds in headers:
        by_series.setdefault(ds.SeriesInstanceUID, set()).add(float(ds.TriggerTime))
    assert len(by_series) == 6 and all(len(v) == 1 for v in by_series.values())  # constant within each series
    assert len({next(iter(v)) for v in by_series.values()}) == 6  # and different between them
    assert not any("TemporalPositionIdentifier" in ds for ds in headers)
    caplog.set_level("INFO")
    read = read_dicom_series(scramble(patient))
    assert_same_series(read, written, "MR")
    assert "layout series_per_slice" in caplog.text and "ordered by AcquisitionTime" in caplog.text
    interval = float(np.mean(np.diff(written.times)))
    apart = 5 * 5 * interval / 1000  # first images of slices 0 and 5, five frames per slice between them
    assert f"stacks ungated slices acquired up to {apart:.1f} s apart" in caplog.text
    np.testing.assert_allclose(read.times, np.arange(5) * interval, atol=1e-3)
    assert read.gated is False and read.cycle_ms is None  # a clock, not a trigger, times its frames


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_trigger_makes_a_gated_cycle_of_the_nominal_interval(tmp_path, layout):
    """TriggerTime (enhanced: NominalCardiacTriggerDelayTime) times the frames of an MR cine: gated, its cycle the
    images' NominalInterval (enhanced: RRIntervalTimeNominal)."""
    written = make_series("MR")
    written.cycle_ms = 300.0  # frames at 12 + 37.5 t ms: a prospectively triggered cine
    read = read_dicom_series(write_dicom_acquisition(written, tmp_path, layout=layout, modality="MR"))
    np.testing.assert_allclose(read.times, written.times, atol=1e-3)
    assert read.gated is True and read.cycle_ms == pytest.approx(300.0)


def test_a_nominal_interval_of_zero_is_no_cycle_and_4d_ct_phases_are_not_timed(tmp_path):
    patient = write_dicom_acquisition(make_series("MR"), tmp_path, layout="single_series", modality="MR")
    edit(dicom_files(patient), lambda ds: setattr(ds, "NominalInterval", 0))  # no ECG: several scanners write 0
    read = read_dicom_series(patient)
    assert read.gated is True and read.cycle_ms is None
    edit(dicom_files(patient), lambda ds: setattr(ds, "HeartRate", 75))
    assert read_dicom_series(patient).cycle_ms == pytest.approx(800.0)  # the R-R interval of 75 beats per minute
    ct = read_dicom_series(write_dicom_acquisition(make_series("CT"), tmp_path / "ct", layout="series_per_phase"))
    assert ct.times is None and ct.gated is None and ct.cycle_ms is None  # phases named in SeriesDescription


@pytest.mark.parametrize("heart_rate, said", [(86, "one R-R interval (698 ms by HeartRate)"), (None, "3000 ms")])
def test_trigger_times_over_successive_heartbeats_are_not_one_gated_cycle(tmp_path, caplog, heart_rate, said):
    """A GE first-pass perfusion export: one slice, one image per heartbeat, TriggerTime counted on from beat to beat
    (769, 1466, ... ms), NominalInterval 6 and HeartRate 86. Its frames are successive heartbeats, not one cycle."""
    written = make_series("MR", frames=6, shape=(24, 20, 1))
    written.times, written.cycle_ms = 769.0 + 697.7 * np.arange(6), 6.0
    patient = write_dicom_acquisition(written, tmp_path, layout="single_series", modality="MR")
    if heart_rate:
        edit(dicom_files(patient), lambda ds: setattr(ds, "HeartRate", heart_rate))
    caplog.set_level("INFO")
    read = read_dicom_series(patient)
    np.testing.assert_allclose(read.times, written.times, atol=1e-3)
    assert read.gated is False
    assert read.cycle_ms == (pytest.approx(60000 / heart_rate) if heart_rate else None)  # never the 6 ms it says
    assert f"its TriggerTimes span 3.5 s, more than {said}" in caplog.text


def test_study_folders_sharing_one_series_uid_are_told_apart_by_geometry(tmp_path):
    """Sunnybrook Cardiac Data (GE): a patient's short-axis cine, long-axis cine and perfusion folders carry one
    SeriesInstanceUID. Pointed at the patient folder, the reader refuses it naming both folders; pointed at the
    short-axis cine's own folder, it reads one gated cine."""
    from scripts.io.series import Series4D

    sax = write_dicom_acquisition(make_series("MR"), tmp_path / "sax", layout="single_series", modality="MR")
    lax_series = make_series("MR")
    lax = write_dicom_acquisition(Series4D(lax_series.array, make_affine(oblique=False), "lax", lax_series.times),
                                  tmp_path / "lax", layout="single_series", modality="MR")
    first = pydicom.dcmread(dicom_files(sax)[0], stop_before_pixels=True)

    def same_series(ds):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, first.SeriesInstanceUID

    edit(dicom_files(lax), same_series)
    patient = tmp_path / "SCD0000101"
    shutil.copytree(next(p for p in sax.rglob("*") if p.is_dir() and any(p.glob("*.dcm"))), patient / "CINESAX_300")
    shutil.copytree(next(p for p in lax.rglob("*") if p.is_dir() and any(p.glob("*.dcm"))), patient / "CINELAX_301")
    with pytest.raises(InputError, match="2 acquisitions with different geometry") as err:
        read_dicom_series(patient)
    assert "CINESAX_300" in str(err.value) and "CINELAX_301" in str(err.value)
    assert read_dicom_series(patient / "CINESAX_300").gated is True


def test_an_enhanced_cine_whose_first_trigger_delay_is_zero_is_one_gated_cycle(tmp_path):
    """An enhanced cine's first phase has NominalCardiacTriggerDelayTime 0 (a value, not a missing one), and its
    frames carry a rising FrameAcquisitionDateTime (the reconstruction's clock, not the heart's): still one gated
    cycle timed by its trigger delays."""
    from scripts.io.series import Series4D

    written = make_series("MR", frames=5, shape=(12, 10, 4))
    folder = write_dicom_acquisition(Series4D(written.array, written.affine, "cine", 40.0 * np.arange(5),
                                              cycle_ms=800.0), tmp_path, layout="enhanced", modality="MR")

    def delays_and_clock(ds):
        for group in ds.PerFrameFunctionalGroupsSequence:
            content = group.FrameContentSequence[0]
            index = int(content.TemporalPositionIndex)
            if "TemporalPositionTimeOffset" in content:
                del content.TemporalPositionTimeOffset
            content.FrameAcquisitionDateTime = f"20240101101010.{index * 2000:06d}"
            cardiac = pydicom.Dataset()
            cardiac.NominalCardiacTriggerDelayTime, cardiac.RRIntervalTimeNominal = 40.0 * (index - 1), 800.0
            group.CardiacSynchronizationSequence = pydicom.Sequence([cardiac])

    edit(dicom_files(folder), delays_and_clock)
    read = read_dicom_series(folder)
    assert read.gated is True and read.timed_by == "TriggerTime" and read.cycle_ms == pytest.approx(800.0)
    np.testing.assert_allclose(read.times, 40.0 * np.arange(5))


def test_an_original_series_ordered_by_phase_index_is_not_timed_by_its_reconstruction_clock(tmp_path):
    """Without trigger times, a rising ContentTime along TemporalPositionIdentifier is an original series'
    reconstruction order (2 ms apart here), not its frames' times: the times stay unknown (only this bundle's derived
    cine of a real-time series, ImageType DERIVED and ungated, is timed so)."""
    folder = write_dicom_acquisition(make_series("MR", frames=5, shape=(12, 10, 4)), tmp_path, layout="single_series",
                                     modality="MR")

    def reconstruction_clock(ds):
        del ds.TriggerTime
        ds.ContentTime = f"101010.{int(ds.TemporalPositionIdentifier) * 2000:06d}"

    edit(dicom_files(folder), reconstruction_clock)
    read = read_dicom_series(folder)
    assert read.times is None and read.gated is None
    def derived_ungated(ds):
        ds.ImageType, ds.ScanOptions = ["DERIVED", "SECONDARY", "OTHER"], ""

    edit(dicom_files(folder), derived_ungated)
    derived = read_dicom_series(folder)
    assert derived.gated is False and derived.timed_by == "ContentTime"
    np.testing.assert_allclose(derived.times, 2.0 * np.arange(5))


def test_a_series_beside_a_cine_at_other_positions_is_not_one_stack_with_it(tmp_path):
    """A cine covering slices 1-3 and a perfusion series (other trigger times) covering slices 4-6 of the same
    geometry share no position, but are two acquisitions: refused naming both, not read as one stack."""
    from scripts.io.series import Series4D

    written = make_series("MR", frames=5, shape=(12, 10, 6))
    cine = write_dicom_acquisition(Series4D(written.array, written.affine, "cine", 12 + 37.5 * np.arange(5)),
                                   tmp_path / "cine", layout="single_series", modality="MR")
    perfusion = write_dicom_acquisition(Series4D(2 * written.array, written.affine, "perf", 800.0 * np.arange(5),
                                                 cycle_ms=800.0), tmp_path / "perf", layout="single_series",
                                        modality="MR")
    first = pydicom.dcmread(dicom_files(cine)[0], stop_before_pixels=True)
    locations = sorted({float(pydicom.dcmread(p, stop_before_pixels=True).SliceLocation) for p in dicom_files(cine)})
    study = tmp_path / "study"
    for folder, name, kept in ((cine, "a", locations[:3]), (perfusion, "b", locations[3:])):
        (study / name).mkdir(parents=True)
        for path in dicom_files(folder):
            if float(pydicom.dcmread(path, stop_before_pixels=True).SliceLocation) in kept:
                shutil.copy(path, study / name / path.name)
    uid = generate_uid()

    def other(ds):
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid, 77, "PERFUSION"
        ds.StudyInstanceUID = first.StudyInstanceUID

    edit(dicom_files(study / "b"), other)
    with pytest.raises(InputError, match=r"2 series of one geometry.*'PERFUSION'.*--series N"):
        read_dicom_series(study)
    assert read_dicom_series(study, series="perfusion").array.shape == (12, 10, 3, 5)


def _study_export(tmp_path):
    """A patient folder as a scanner exports a whole study: a short-axis cine (SeriesNumber 300, no description), a
    long-axis cine of another geometry (301, 'CINE LAX') sharing its SeriesInstanceUID (as Sunnybrook's do), and a
    long-axis series of the short-axis cine's geometry (302, 'SAX SCOUT', 2 time points)."""
    from scripts.io.series import Series4D

    sax = write_dicom_acquisition(make_series("MR"), tmp_path / "sax", layout="single_series", modality="MR")
    lax_series = make_series("MR")
    lax = write_dicom_acquisition(Series4D(lax_series.array, make_affine(oblique=False), "lax", lax_series.times),
                                  tmp_path / "lax", layout="single_series", modality="MR")
    scout = write_dicom_acquisition(Series4D(lax_series.array[..., :2], make_affine(), "scout"), tmp_path / "scout",
                                    layout="single_series", modality="MR")
    first = pydicom.dcmread(dicom_files(sax)[0], stop_before_pixels=True)

    def numbered(number, description, uid):
        def change(ds):
            ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, uid
            ds.SeriesNumber, ds.SeriesDescription = number, description
        return change

    edit(dicom_files(sax), numbered(300, "", first.SeriesInstanceUID))
    edit(dicom_files(lax), numbered(301, "CINE LAX", first.SeriesInstanceUID))
    edit(dicom_files(scout), numbered(302, "SAX SCOUT", generate_uid()))
    patient = tmp_path / "study"
    for name, folder in (("CINESAX_300", sax), ("CINELAX_301", lax), ("SCOUT_302", scout)):
        shutil.copytree(next(p for p in folder.rglob("*") if p.is_dir() and any(p.glob("*.dcm"))), patient / name)
    return patient


def _same_read(a, b):
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine)
    np.testing.assert_allclose(a.times, b.times)


def test_a_whole_study_export_reads_the_series_asked_for(tmp_path, caplog):
    """Pointed at a whole study's export, the reader refuses the mix and says how to choose; with ``series`` it reads
    only that series, by SeriesNumber (even where series share a SeriesInstanceUID), by text of its
    SeriesDescription (any case) or by SeriesInstanceUID, and a series that is not there is named with what is."""
    patient = _study_export(tmp_path)
    with pytest.raises(InputError, match=r"2 acquisitions with different geometry.*--series N"):
        read_dicom_series(patient)
    sax, lax = read_dicom_series(patient / "CINESAX_300"), read_dicom_series(patient / "CINELAX_301")
    caplog.set_level(logging.INFO, logger="scripts.io.dicom_read")
    _same_read(read_dicom_series(patient, series=300), sax)
    assert "reading series 300 ''" in caplog.text
    _same_read(read_dicom_series(patient, series="301"), lax)
    _same_read(read_dicom_series(patient, series="cine lax"), lax)
    _same_read(read_dicom_series(patient, series=[300]), sax)
    with pytest.raises(InputError, match="2 acquisitions with different geometry"):  # 300 and 301 share this UID
        read_dicom_series(patient, series=str(sax.dicom_template.SeriesInstanceUID))
    with pytest.raises(InputError, match=r"series of one geometry.*--series N"):  # 300 and 302: a scout's time points
        read_dicom_series(patient, series=[300, 302])
    with pytest.raises(InputError, match=r"no series matches '999'.*series 300 ''.*series 301 'CINE LAX'.*302") as err:
        read_dicom_series(patient, series=999)
    assert str(patient) in str(err.value)
    with pytest.raises(InputError, match="no series matches"):  # a superscript two is text, not SeriesNumber 2
        read_dicom_series(patient, series="\u00b2")
    for bad in (True, {"_target_": "os.mkdir"}, "$print(1)", "", []):
        with pytest.raises(InputError, match="series"):
            read_dicom_series(patient, series=bad)


def test_a_cine_of_one_series_per_slice_is_chosen_by_its_description(tmp_path):
    """Series-per-slice exports name every slice's series alike ('Cine MR, slice k'): text of the description (or
    the list of their numbers) chooses them all, and leaves another series of the study out."""
    from scripts.io.series import Series4D

    written = make_series("MR", frames=5, shape=(12, 10, 4))
    patient = write_dicom_acquisition(written, tmp_path / "stack", layout="series_per_slice", modality="MR")
    other = write_dicom_acquisition(Series4D(written.array[..., :3], make_affine(oblique=False), "other"),
                                    tmp_path / "other", layout="single_series", modality="MR")
    edit(dicom_files(other), lambda ds: setattr(ds, "SeriesNumber", 40))
    shutil.copytree(other, patient / "other")
    with pytest.raises(InputError, match="2 acquisitions"):
        read_dicom_series(patient)
    stack = read_dicom_series(patient, series="CINE MR, SLICE")
    assert_same_series(stack, written, "MR")
    _same_read(read_dicom_series(patient, series=[1, 2, 3, 4]), stack)
    _same_read(read_dicom_series(patient, series="[1, 2, 3, 4]"), stack)  # a list's JSON text, as a request gives it


def test_series_per_slice_with_one_series_holding_several_positions(tmp_path, caplog):
    """Siemens short-axis cines of the Kaggle Data Science Bowl (2015): one series per slice position, except that
    one series folder holds the time points of two positions (files ``IM-<series>-<frame>-<slice>.dcm``, one
    SeriesInstanceUID). Series that share no position split one stack: the study folder reads as one cine."""
    written = make_series("MR", frames=5, shape=(12, 10, 4))
    patient = write_dicom_acquisition(written, tmp_path, layout="series_per_slice", modality="MR")
    folders = sorted({p.parent for p in dicom_files(patient)})
    host = pydicom.dcmread(dicom_files(folders[1])[0], stop_before_pixels=True)

    def into_host(ds):
        ds.SeriesInstanceUID, ds.SeriesNumber = host.SeriesInstanceUID, host.SeriesNumber
        ds.InstanceNumber = int(ds.InstanceNumber) + 5

    edit(dicom_files(folders[2]), into_host)
    for k, path in enumerate(dicom_files(folders[1])):
        path.rename(folders[1] / f"IM-0002-{k + 1:04d}-0002.dcm")
    for k, path in enumerate(dicom_files(folders[2])):
        path.rename(folders[1] / f"IM-0002-{k + 1:04d}-0003.dcm")
    folders[2].rmdir()
    caplog.set_level("INFO")
    read = read_dicom_series(patient)
    assert "layout series_per_slice (3 series for 4 slice positions), 4 slice positions x 5 time points" in caplog.text
    assert_same_series(read, written, "MR")
    assert read_dicom_series(folders[1]).array.shape == (12, 10, 2, 5)
    # each slice's breath-hold has its own heart rate: trigger times of the last slice 1.4 times as far apart
    edit(dicom_files(folders[3]), lambda ds: setattr(ds, "TriggerTime", round(1.4 * float(ds.TriggerTime), 3)))
    assert read_dicom_series(patient).array.shape == (12, 10, 4, 5)


def test_one_slice_position_acquired_twice_is_refused_naming_both_files(tmp_path):
    """A slice position acquired again in a second series of a series-per-slice study (its own folder): the reader
    names both files rather than pick one."""
    patient = write_dicom_acquisition(make_series("MR", frames=5, shape=(12, 10, 4)), tmp_path,
                                      layout="series_per_slice", modality="MR")
    original = sorted({p.parent for p in dicom_files(patient)})[1]
    again = original.parent / f"{original.name}-repeated"
    shutil.copytree(original, again)
    series_uid = generate_uid()

    def new_series(ds):
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber = series_uid, generate_uid(), 99

    edit(dicom_files(again), new_series)
    with pytest.raises(InputError, match="duplicate slices: .* lie at the same slice location") as err:
        read_dicom_series(patient)
    assert original.name in str(err.value) and again.name in str(err.value)


def test_gated_series_per_slice_does_not_warn(tmp_path, caplog):
    patient = write_dicom_acquisition(make_series("MR"), tmp_path, layout="series_per_slice", modality="MR")
    caplog.set_level("INFO")
    read_dicom_series(patient)
    assert "ungated" not in caplog.text


# --- Siemens XA enhanced exports: one multi-frame file per time point ---------------------------------------------

@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_enhanced_file_per_phase(tmp_path, modality, caplog):
    written = make_series(modality)
    patient = write_dicom_acquisition(written, tmp_path, layout="enhanced", modality=modality,
                                      quirks=("enhanced_file_per_phase",))
    files = dicom_files(patient)
    assert len(files) == 5 and {int(pydicom.dcmread(p, stop_before_pixels=True).NumberOfFrames) for p in files} == {6}
    caplog.set_level("INFO")
    read = read_dicom_series(scramble(patient))
    assert_same_series(read, written, modality)
    np.testing.assert_allclose(read.times, written.times, atol=1e-6)
    assert "layout enhanced, 6 slice positions x 5 time points, time points ordered by TemporalPositionIndex" \
        in caplog.text


def test_several_time_series_of_one_geometry_are_refused_naming_them(tmp_path):
    """Siemens XA60: fMRI and diffusion runs of one geometry, each an enhanced file per time point, in one folder."""
    written = make_series("MR", frames=3, shape=(8, 6, 4))
    bold = write_dicom_acquisition(written, tmp_path / "a", layout="enhanced", modality="MR",
                                   quirks=("enhanced_file_per_phase",))
    diffusion = write_dicom_acquisition(written, tmp_path / "b", layout="enhanced", modality="MR",
                                        quirks=("enhanced_file_per_phase",))
    study = pydicom.dcmread(dicom_files(bold)[0], stop_before_pixels=True).StudyInstanceUID
    edit(dicom_files(diffusion), lambda ds: setattr(ds, "StudyInstanceUID", study))
    shutil.copytree(diffusion, bold / "diffusion")
    with pytest.raises(InputError, match=r"holds 2 series of one geometry, 2 of them with time points of their own: "
                                         r"series 1 'Enhanced MR, all slices and phases' .* \(3 time points\)") as err:
        read_dicom_series(bold)
    assert str(bold / "diffusion") in str(err.value)


def test_every_quirk_is_tested():
    tested = {*GE_QUIRKS, "ungated_slices", "enhanced_file_per_phase"}
    assert tested == set(QUIRKS)


# --- objects the reader must refuse, met on real exports -------------------------------------------------------------

@pytest.mark.parametrize("layout, change, words", [
    # Siemens EPI exports: the slices of a volume tiled in one image
    ("single_series", lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]),
     "a mosaic .ImageType MOSAIC.*dcm2niix"),
    # UIH EPI exports: a "virtual frame" holding the tiled slices, no ImagePositionPatient
    ("single_series", lambda ds: (setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "M", "VFRAME"]),
                                  delattr(ds, "ImagePositionPatient")),
     "a mosaic .ImageType VFRAME.*dcm2niix"),
    # pydicom's emri_small.dcm: an Enhanced MR file stripped of its functional groups
    ("enhanced", lambda ds: delattr(ds, "PerFrameFunctionalGroupsSequence"),
     "4 frames but 0 items in its Per-frame Functional Groups"),
    # a classic image claiming several frames cannot place them
    ("single_series", lambda ds: setattr(ds, "NumberOfFrames", 2),
     "multi-frame MR Image Storage .2 frames. without per-frame"),
], ids=["siemens_mosaic", "uih_vframe", "enhanced_without_groups", "classic_multi_frame"])
def test_objects_met_on_real_exports_are_refused_naming_the_file(tmp_path, layout, change, words):
    patient = write_dicom_acquisition(make_series("MR", frames=2, shape=(8, 6, 2)), tmp_path, layout=layout,
                                      modality="MR")
    victim = dicom_files(patient)[0]
    edit([victim], change)
    with pytest.raises(InputError, match=words) as err:
        read_dicom_series(patient)
    assert str(victim) in str(err.value)


def test_label_and_control_at_one_temporal_position_are_duplicates(tmp_path):
    """Philips ASL: label and control images share a TemporalPositionIdentifier; a later InstanceNumber does not
    make the second one a new time point."""
    patient = write_dicom_acquisition(make_series("MR", frames=3, shape=(8, 6, 3)), tmp_path, layout="single_series",
                                      modality="MR")
    ds = pydicom.dcmread(dicom_files(patient)[0])
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1000
    ds.save_as(patient / "control.dcm")
    with pytest.raises(InputError, match="duplicate slices.*control.dcm.*same TemporalPositionIdentifier"):
        read_dicom_series(patient)


# --- hostile headers: refused before any pixel is read ---------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    written = make_series("CT", frames=3, shape=(8, 6, 4))
    return write_dicom_acquisition(written, tmp_path / "data", layout="single_series", modality="CT"), written


def test_header_claiming_more_pixels_than_memory_is_refused_before_pixels(small, monkeypatch):
    patient, _ = small
    victim = dicom_files(patient)[2]
    edit([victim], lambda ds: (setattr(ds, "Rows", 65535), setattr(ds, "Columns", 65535),
                               setattr(ds, "SOPClassUID", pydicom.uid.EnhancedCTImageStorage),
                               setattr(ds, "NumberOfFrames", 65535)))
    monkeypatch.setattr(dicom_read, "_read_pixels", lambda grid: pytest.fail("pixels read"))
    with pytest.raises(InputError, match=r"Rows 65535 x Columns 65535 x 65535 frames would need .* GiB") as err:
        read_dicom_series(patient)
    assert str(victim) in str(err.value)


def test_whole_array_larger_than_free_memory_is_refused_before_pixels(small, monkeypatch):
    patient, _ = small
    one_file = 8 * 6 * (4 + 2)
    monkeypatch.setattr(dicom_read, "available_bytes", lambda device: 2 * one_file)
    monkeypatch.setattr(dicom_read, "_read_pixels", lambda grid: pytest.fail("pixels read"))
    with pytest.raises(InputError, match=r"PHANTOM001: 8 x 6 x 4 x 3 voxels as float32 would need"):
        read_dicom_series(patient)


@pytest.mark.parametrize("keyword, value, words", [
    ("PixelSpacing", [0, 0.8], "PixelSpacing .* both spacings must be positive"),
    ("PixelSpacing", [-1, 0.8], "PixelSpacing .* both spacings must be positive"),
    ("PixelSpacing", ["nan", 0.8], "PixelSpacing must hold 2 finite numbers"),
    ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0], "ImageOrientationPatient .* is degenerate"),  # parallel
    ("ImageOrientationPatient", [0, 0, 0, 0, 1, 0], "ImageOrientationPatient .* is degenerate"),  # zero
    ("ImageOrientationPatient", [1, 0, 0, 0.5, 0.5, 0], "ImageOrientationPatient .* is degenerate"),  # skewed
])
def test_degenerate_geometry_is_refused_naming_the_file(small, keyword, value, words):
    patient, _ = small
    victim = dicom_files(patient)[4]
    edit([victim], lambda ds: setattr(ds, keyword, value))
    with pytest.raises(InputError, match=words) as err:
        read_dicom_series(patient)
    assert str(victim) in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("keyword", ["PatientID", "StudyInstanceUID"])
def test_two_patients_or_studies_are_refused_naming_both_values(small, keyword):
    patient, _ = small
    files = dicom_files(patient)
    first = str(pydicom.dcmread(files[0], stop_before_pixels=True)[keyword].value)
    other = "OTHER-PATIENT" if keyword == "PatientID" else generate_uid()
    edit(files[::2], lambda ds: setattr(ds, keyword, other))
    with pytest.raises(InputError, match=f"2 different {keyword} values") as err:
        read_dicom_series(patient)
    assert first in str(err.value) and other in str(err.value)


def test_many_acquisitions_make_a_short_message(tmp_path):
    """Every series in a geometry of its own (the GE case before grouping ignored FoR UIDs): one short line."""
    patient = write_dicom_acquisition(make_series("MR", frames=3, shape=(8, 6, 12)), tmp_path,
                                      layout="series_per_slice", modality="MR")
    for index, folder in enumerate(sorted({p.parent for p in dicom_files(patient)})):
        edit(dicom_files(folder), lambda ds, i=index: setattr(ds, "PixelSpacing", [0.8, 0.9 + 0.01 * i]))
    with pytest.raises(InputError, match="holds 12 acquisitions with different geometry.* and 10 more") as err:
        read_dicom_series(patient)
    assert len(str(err.value)) < 1000 and "\n" not in str(err.value)


def test_frames_out_of_range_are_summarised(small):
    patient, _ = small
    with pytest.raises(InputError, match=r"has 3 time points; frames 0, 1, 2 and 997 more were asked for"):
        read_dicom_series(patient, frames=range(1000))


def test_pydicom_log_lines_without_a_warning_are_said_once(small, caplog):
    """pydicom logs some problems without a Python warning (e.g. a VR that does not match the dictionary)."""
    patient, _ = small

    def log_twice(path, **kwargs):
        logging.getLogger("pydicom").warning("Expected explicit VR, but found implicit VR in %s", path.name)
        return read_header(path, **kwargs)

    read_header = pydicom.dcmread
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dicom_read.pydicom, "dcmread", log_twice)
        caplog.set_level("INFO")
        read_dicom_series(patient)
    lines = [r.getMessage() for r in caplog.records if "Expected explicit VR" in r.getMessage()]
    assert len(lines) == 1 and "pydicom: Expected explicit VR" in lines[0] and "more like it" in lines[0]


def test_pydicom_log_filter_is_removed_after_reading(small):
    patient, _ = small
    read_dicom_series(patient)
    assert not logging.getLogger("pydicom").filters
    shutil.rmtree(patient)  # a failed read removes it too
    with pytest.raises(InputError):
        read_dicom_series(patient)
    assert not logging.getLogger("pydicom").filters
