"""A whole series upsampled (``--upsample``): the interleaved 4D NIfTI, the animated preview, and one playable derived
DICOM cine per input layout, read back with pydicom, ITK and ``dciodvfy``; the two-endpoint path as one series."""

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_helpers import edit, rotation
from PIL import Image

from scripts.evaluation.bench import deployed_student
from scripts.evaluation.superres_native import product_steps
from scripts.inference.cli import interpolate
from scripts.inference.interpolator import SeriesInterpolator
from scripts.inference.times import CineFrame, cine_times_ms, cycle_period_ms, cycle_phases, upsample_plan
from scripts.io.dicom_geometry import dicom_from_affine, slice_normal
from scripts.io.dicom_read import LAYOUTS, read_dicom_series
from scripts.io.series import Series4D
from scripts.networks import Student
from scripts.phantoms.dicom_acquisition import write_dicom_acquisition
from scripts.transforms.intensity import IntensityScale
from scripts.utils.checkpoint import save_weights
from scripts.utils.errors import InputError
from tests.cine_helpers import dciodvfy_errors, files_by_position, headers, itk_geometry

SHAPE, FRAMES = (16, 14, 3), 4
SPACING = (1.4, 1.3, 8.0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return str(save_weights(Student(), tmp_path_factory.mktemp("w") / "student.pt"))


def oblique_affine():
    affine = np.eye(4)
    affine[:3, :3] = rotation(10.0, -20.0, 30.0) @ np.diag(SPACING)  # double oblique
    affine[:3, 3] = (-50, 20, 30)
    return affine


def integer_series(seed=1, shape=SHAPE, frames=FRAMES):
    """MR-like whole-number intensities (what scanners store, no Modality LUT needed)."""
    rng = np.random.default_rng(seed)
    return Series4D(np.round(rng.random((*shape, frames)) * 500 + 20).astype(np.float32), oblique_affine(), "synthetic")


@pytest.fixture(scope="module")
def nifti_series(tmp_path_factory):
    series = integer_series(0, (20, 18, 4), 5)
    image = nib.Nifti1Image(series.array, series.affine)
    image.header.set_xyzt_units("mm", "msec")
    image.header["pixdim"][4] = 40.0
    path = tmp_path_factory.mktemp("nii") / "cine.nii.gz"
    nib.save(image, path)
    return path, series.array


# --- the plan of frames ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames, factor, cyclic, length", [(5, 2, True, 10), (5, 2, False, 9), (4, 3, True, 12),
                                                            (4, 3, False, 10)])
def test_plan_interleaves_new_frames_in_time_order(frames, factor, cyclic, length):
    plan = upsample_plan(frames, factor, cyclic)
    assert len(plan) == length
    assert [f.previous for f in plan if f.acquired] == list(range(frames))
    assert all(plan[m * factor] == CineFrame(m, m, 0.0) for m in range(frames))
    positions = [f.previous + f.fraction for f in plan]
    assert positions == sorted(positions)  # in time order, the wrap last
    if cyclic:
        assert plan[-1] == CineFrame(frames - 1, 0, (factor - 1) / factor)


def test_cine_times_run_across_the_wrap():
    plan = upsample_plan(4, 2, True)
    np.testing.assert_allclose(cine_times_ms(plan, [0, 250, 500, 750]), np.arange(8) * 125.0)
    assert cine_times_ms(plan, None) is None


def test_a_prospectively_triggered_cine_spans_its_nominal_interval():
    """Frames acquired over part of the R-R interval: the pair from the last frame back to the first spans the rest
    of the cycle; a nominal interval the frames do not fit in, or over twice their own period, is not this cine's."""
    times = [30, 80, 130, 180]  # ms after the trigger; T mean steps: 200 ms
    assert cycle_period_ms(times) == pytest.approx(200)
    assert cycle_period_ms(times, 400) == 400 and cycle_period_ms(times, 151) == 151
    for wrong in (0, 140, 150, 401, float("nan")):
        assert cycle_period_ms(times, wrong) == pytest.approx(200), wrong
    assert cycle_period_ms([0, 50, 50], 400) is None and cycle_period_ms(None, 400) is None
    np.testing.assert_allclose(cycle_phases(times, 400), [0, 0.125, 0.25, 0.375])
    assert cycle_phases(None, 400) is None and cycle_phases(times, None) is None
    np.testing.assert_allclose(cine_times_ms(upsample_plan(4, 2, True), times, 400),
                               [30, 55, 80, 105, 130, 155, 180, 305])  # the last: half way from 180 to 30 + 400


# --- NIfTI in -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor, cyclic", [(2, True), (3, False)])
def test_upsampled_nifti_interleaves_acquired_and_synthesised(nifti_series, weights, tmp_path, factor, cyclic):
    path, data = nifti_series
    out = Path(interpolate(input=str(path), upsample=factor, cyclic=cyclic, output_dir=str(tmp_path / "o"),
                           model=weights))
    image = nib.load(out / "upsampled_4d.nii.gz")
    frames = data.shape[3]
    expected = frames * factor if cyclic else (frames - 1) * factor + 1
    assert image.shape == (*data.shape[:3], expected)
    assert image.header.get_zooms()[3] == pytest.approx(40.0 / factor)
    assert image.header.get_xyzt_units()[1] == "msec"
    cine = image.get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(cine[..., ::factor], data)  # acquired frames exactly as read
    # each new frame is the student on its pair, on one intensity scale for the whole series, at the motion clock's
    # times where the series wraps around (a cycle), at the frames' own times where it does not
    scale = IntensityScale.of(data, "x")
    steps = product_steps(True)
    inferer = SeriesInterpolator(deployed_student(), weights, device="cpu",  # the network interpolate runs
                                 warp_choice=steps.warp_choice)
    last = frames - 1 if cyclic else frames - 2
    ts = [k / factor for k in range(1, factor)]
    if cyclic:
        ts = steps.retiming(last / frames, 1 / frames, ts).tolist()
        assert abs(ts[0] - 1 / factor) > 1e-3
    expected_last = inferer.synthesise(scale.to_unit(data[..., last]), scale.to_unit(data[..., (last + 1) % frames]),
                                       ts, span=1 / frames)  # consecutive frames
    np.testing.assert_allclose(scale.to_unit(cine[..., last * factor + 1:last * factor + factor]), expected_last,
                               atol=2e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["upsample"] == factor and summary["frames_out"] == expected and summary["cyclic"] is cyclic
    assert summary["neighbour_refinement"] is False  # trained on the shipped student's frames: off with --model
    assert summary["retiming"] is cyclic  # the heart's motion clock, with any weights
    assert (out / "montage.png").exists()
    gif = Image.open(out / "preview.gif")
    assert gif.n_frames == expected and gif.info["loop"] == 0
    assert gif.size[0] > 2 * data.shape[0]  # the acquired cine beside the upsampled one


def test_retiming_false_makes_each_new_frame_at_its_own_time(nifti_series, weights, tmp_path):
    """``--retiming False``: a cycle's new frames are the network at their own times in their pair, as before the
    motion clock; summary.json says so."""
    path, data = nifti_series
    out = Path(interpolate(input=str(path), upsample=2, output_dir=str(tmp_path / "o"), model=weights,
                           retiming="False"))
    cine = nib.load(out / "upsampled_4d.nii.gz").get_fdata(dtype=np.float32)
    scale = IntensityScale.of(data, "x")
    inferer = SeriesInterpolator(deployed_student(), weights, device="cpu",
                                 warp_choice=product_steps(True).warp_choice)
    frames = data.shape[3]
    expected = inferer.synthesise(scale.to_unit(data[..., 1]), scale.to_unit(data[..., 2]), [0.5], span=1 / frames)
    np.testing.assert_allclose(scale.to_unit(cine[..., 3:4]), expected, atol=2e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["retiming"] is False
    assert summary["cyclic"] is True and cine.shape[3] == 2 * frames  # --cyclic auto: a NIfTI cine wraps around


@pytest.mark.parametrize("frames, refined", [(8, True), (5, False)])
def test_the_neighbour_refinement_changes_the_new_frames_of_finely_sampled_series(weights, tmp_path, frames, refined):
    """Asked for, the refinement corrects the new frames of a series whose consecutive frames span at most a sixth of
    it (8 frames); of a coarser one (5 frames: a fifth) it leaves the student's frames as they are."""
    series = integer_series(0, (20, 18, 4), frames)
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(series.array, series.affine), path)
    runs = {on: Path(interpolate(input=str(path), upsample=2, output_dir=str(tmp_path / str(on)), model=weights,
                                 neighbour_refinement=on)) for on in (False, True)}
    cines = {on: nib.load(out / "upsampled_4d.nii.gz").get_fdata(dtype=np.float32) for on, out in runs.items()}
    np.testing.assert_array_equal(cines[True][..., ::2], cines[False][..., ::2])  # acquired frames untouched
    assert np.allclose(cines[True][..., 1::2], cines[False][..., 1::2]) is not refined
    assert json.loads((runs[True] / "summary.json").read_text())["neighbour_refinement"] is refined


def test_a_sites_neighbour_refinement_runs_beside_its_student(weights, tmp_path):
    """``--neighbour_model`` (a site's whole-cine fine-tuning: configs/finetune_cine.yaml) turns the refinement on with
    --model and runs that file: a refinement whose correction is zero gives the student's frames, a trained one
    changes them; summary.json names the file; a missing file is one line before any output."""
    import torch

    from scripts.networks.neighbours import NeighbourRefinement

    series = integer_series(0, (20, 18, 4), 8)  # consecutive frames an eighth of the series: refined
    path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(series.array, series.affine), path)
    zero = save_weights(NeighbourRefinement(16), tmp_path / "zero.pt")  # r = 0 at the start
    trained = NeighbourRefinement(16)
    torch.nn.init.normal_(trained.out.weight, std=0.05)
    trained = save_weights(trained, tmp_path / "trained.pt")

    def cine(name, **options):
        out = Path(interpolate(input=str(path), upsample=2, output_dir=str(tmp_path / name), model=weights, **options))
        return nib.load(out / "upsampled_4d.nii.gz").get_fdata(dtype=np.float32), json.loads(
            (out / "summary.json").read_text())

    alone, _ = cine("alone")
    unchanged, summary = cine("zero", neighbour_model=str(zero))
    assert summary["neighbour_refinement"] is True and summary["neighbour_checkpoint"] == str(zero)
    np.testing.assert_allclose(unchanged, alone, atol=1e-3)
    changed, summary = cine("trained", neighbour_model=str(trained))
    assert summary["neighbour_checkpoint"] == str(trained)
    np.testing.assert_array_equal(changed[..., ::2], alone[..., ::2])  # acquired frames untouched
    assert not np.allclose(changed[..., 1::2], alone[..., 1::2], atol=1e-2)
    with pytest.raises(InputError, match="missing.pt: weights file not found"):
        interpolate(input=str(path), upsample=2, output_dir=str(tmp_path / "bad"), model=weights,
                    neighbour_model=str(tmp_path / "missing.pt"))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="--neighbour_model: the neighbour refinement corrects whole series only"):
        interpolate(input=str(path), t=0.5, output_dir=str(tmp_path / "pair"), model=weights,
                    neighbour_model=str(trained))  # frames between two chosen frames: never refined
    assert not (tmp_path / "pair").exists()


def test_batches_of_pairs_match_one_pair_at_a_time(nifti_series, weights, monkeypatch):
    """One t per pair: several pairs per pass (as on an accelerator) give what one pair per pass gives."""
    _, data = nifti_series
    unit = IntensityScale.of(data, "x").to_unit(data).astype(np.float32)
    plan = upsample_plan(data.shape[3], 2, True)
    inferer = SeriesInterpolator(Student(), weights, device="cpu")
    single = inferer.upsample(unit, plan)
    monkeypatch.setattr(SeriesInterpolator, "pairs_per_batch", lambda self, shape, n: 3)
    np.testing.assert_allclose(inferer.upsample(unit, plan), single, atol=1e-5)


@pytest.mark.parametrize("factor, cyclic", [(2, True), (3, True), (2, False)])
def test_each_acquired_frame_is_encoded_once_and_the_frames_are_the_pairs_own(weights, factor, cyclic):
    """Every acquired frame ends two pairs; the encoder reads it once (and each new frame's middle input once), and
    each pair's frames are what the network makes from that pair alone."""
    import torch

    rng = np.random.default_rng(3)
    unit = rng.random((*SHAPE, 5)).astype(np.float32)
    plan = upsample_plan(5, factor, cyclic)
    inferer = SeriesInterpolator(Student(), weights, device="cpu")
    network = inferer.cine_network
    seen = []
    hook = network.encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    try:
        out = inferer.upsample(unit, plan)
    finally:
        hook.remove()
    new = [frame for frame in plan if not frame.acquired]
    assert sum(seen) == 5 + len(new)  # was 2 per pair + 1 per new frame
    for m, frame in enumerate(plan):
        if frame.acquired:
            continue
        i0, i1 = (torch.from_numpy(unit[..., k])[None, None] for k in (frame.previous, frame.next))
        expected = network.interpolate_series(i0, i1, [frame.fraction])[0, 0].clamp(0, 1).numpy()
        np.testing.assert_allclose(out[..., m], expected, atol=1e-5)


def test_amp_on_a_cpu_runs_bfloat16_where_it_has_kernels_and_float32_elsewhere(weights, monkeypatch, caplog):
    from scripts.inference import interpolator

    unit = np.random.default_rng(4).random((*SHAPE, 5)).astype(np.float32)
    plan = upsample_plan(5, 2, True)
    exact = SeriesInterpolator(Student(), weights, device="cpu").upsample(unit, plan)
    monkeypatch.setattr(interpolator, "cpu_bfloat16_kernels", lambda: True)
    reduced = SeriesInterpolator(Student(), weights, device="cpu", amp=True)
    assert reduced.amp and reduced.precision == "bfloat16"
    out = reduced.upsample(unit, plan)
    assert np.isfinite(out).all() and 0 < np.abs(out - exact).max() < 0.05  # bfloat16, close to float32
    monkeypatch.setattr(interpolator, "cpu_bfloat16_kernels", lambda: False)
    with caplog.at_level("WARNING", logger="scripts.inference.interpolator"):
        plain = SeriesInterpolator(Student(), weights, device="cpu", amp=True)
    assert not plain.amp and plain.precision == "float32" and "no bfloat16 kernels" in caplog.text
    np.testing.assert_array_equal(plain.upsample(unit, plan), exact)


def test_a_non_finite_frame_in_reduced_precision_is_made_again_in_float32(weights, monkeypatch, caplog):
    """Autocast on some CPUs has returned non-finite volumes; such a frame is made again in float32, never
    written."""
    import torch

    from scripts.inference import interpolator

    unit = np.random.default_rng(5).random((*SHAPE, 4)).astype(np.float32)
    plan = upsample_plan(4, 2, True)
    exact = SeriesInterpolator(Student(), weights, device="cpu").upsample(unit, plan)
    monkeypatch.setattr(interpolator, "cpu_bfloat16_kernels", lambda: True)
    inferer = SeriesInterpolator(Student(), weights, device="cpu", amp=True)
    network = inferer.cine_network
    original = network.interpolate_encoded

    def broken(*args, **kwargs):
        out = original(*args, **kwargs)
        return torch.full_like(out, float("nan")) if torch.is_autocast_enabled("cpu") else out

    monkeypatch.setattr(network, "interpolate_encoded", broken)
    with caplog.at_level("WARNING", logger="scripts.inference.interpolator"):
        out = inferer.upsample(unit, plan)
    assert "made again in float32" in caplog.text
    np.testing.assert_allclose(out, exact, atol=1e-5)


def test_amp_is_read_as_a_boolean_before_any_work(nifti_series, weights, tmp_path):
    with pytest.raises(InputError, match="--amp: expected True or False"):
        interpolate(input=str(nifti_series[0]), upsample=2, amp="perhaps", output_dir=str(tmp_path / "o"),
                    model=weights)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"upsample": 2, "t": 0.5}, "--upsample: .*cannot be combined with --t"),
    ({"upsample": 2, "start_frame": 1}, "--upsample: .*--start_frame"),
    ({"upsample": 1}, "--upsample: must be at least 2"),
    ({"upsample": 2.5}, "--upsample: expected a whole number"),
    ({"upsample": 2, "cyclic": "perhaps"}, "--cyclic: expected True, False or auto"),
    ({"upsample": 2, "retiming": "perhaps"}, "--retiming: expected True or False"),
])
def test_upsample_arguments_are_refused_before_any_work(nifti_series, weights, tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        interpolate(input=str(nifti_series[0]), output_dir=str(tmp_path / "o"), model=weights, **kwargs)
    assert not (tmp_path / "o").exists()


def test_memory_check_runs_before_the_pairs(nifti_series, weights, tmp_path, monkeypatch):
    import scripts.utils.memory

    monkeypatch.setattr(scripts.utils.memory, "available_bytes", lambda device: 1024)
    monkeypatch.setattr(SeriesInterpolator, "_pairs", lambda *a: pytest.fail("ran before the memory check"))
    with pytest.raises(InputError, match="needs about"):
        interpolate(input=str(nifti_series[0]), upsample=2, output_dir=str(tmp_path / "o"), model=weights)
    assert not (tmp_path / "o").exists()


def test_a_factor_whose_cine_does_not_fit_is_refused_before_the_plan(nifti_series, weights, tmp_path, monkeypatch):
    """One line naming --upsample, before the plan or any array is made (a factor of 10^9 was a MemoryError)."""
    import scripts.inference.workflow

    monkeypatch.setattr(scripts.inference.workflow, "upsample_plan", lambda *a: pytest.fail("planned before the check"))
    frames = nifti_series[1].shape[3]
    with pytest.raises(InputError, match=rf"^--upsample: x1000000000 makes {frames * 10 ** 9} frames of .*, about "
                                         r"[0-9.]+ GiB, but .* is free for this process: ask for a smaller factor"):
        interpolate(input=str(nifti_series[0]), upsample=10 ** 9, output_dir=str(tmp_path / "o"), model=weights)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("factor", [1, 2.0, True])
def test_upsample_cine_checks_its_factor(nifti_series, weights, factor):
    from scripts.inference.region import MotionRegion
    from scripts.inference.workflow import upsample_cine

    series = Series4D(array=nifti_series[1].astype(np.float32), affine=np.eye(4), source="cine.nii.gz")
    with pytest.raises(InputError, match="^--upsample: must be a whole number >= 2"):
        upsample_cine(SeriesInterpolator(Student(), weights, device="cpu"), MotionRegion(False), series, factor, True)


# --- DICOM in, one playable derived cine out -------------------------------------------------------------------------

def write_input(tmp_path, layout, modality="MR", series=None, quirks=()):
    series = series or integer_series()
    return write_dicom_acquisition(series, tmp_path / "in", layout=layout, modality=modality, quirks=quirks), series


def input_images(patient, affine):
    """``{(slice, frame): (SOPInstanceUID, frame number or None, SliceLocation)}`` of the input, from its own
    headers: slice by position along the normal; frame by its rank at that position in TriggerTime, AcquisitionTime,
    SeriesNumber (a 4D CT's series per phase), InstanceNumber; enhanced: by its frame content."""
    normal = slice_normal(dicom_from_affine(affine, 1).orientation)
    found, at_position = {}, {}
    for ds in headers(patient):
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            for number, group in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
                content = group.FrameContentSequence[0]
                found[(content.InStackPositionNumber - 1, content.TemporalPositionIndex - 1)] = (
                    ds.SOPInstanceUID, number, None)
            continue
        where = round(float(np.asarray(ds.ImagePositionPatient, float) @ normal), 3)
        order = (float(ds.get("TriggerTime") or 0), str(ds.get("AcquisitionTime", "")), int(ds.SeriesNumber),
                 int(ds.InstanceNumber))
        at_position.setdefault(where, []).append((order, (ds.SOPInstanceUID, None, ds.get("SliceLocation"))))
    for z, where in enumerate(sorted(at_position)):
        for t, (_, image) in enumerate(sorted(at_position[where])):
            found[(z, t)] = image
    return found


def check_cine(out_dir, patient, series, plan, modality="MR"):
    """Everything a viewer needs to play the derived cine, checked against the input's own files."""
    folder = Path(out_dir) / "dicom"
    num_slices, num_frames = series.array.shape[2], len(plan)
    images = input_images(patient, series.affine)
    inputs = headers(patient)
    derived = headers(folder)
    assert len(derived) == num_slices * num_frames
    assert len({ds.SeriesInstanceUID for ds in derived}) == 1
    assert not {ds.SeriesInstanceUID for ds in derived} & {ds.SeriesInstanceUID for ds in inputs}
    assert {ds.StudyInstanceUID for ds in derived} == {inputs[0].StudyInstanceUID}
    assert all(list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"] for ds in derived)
    geometry = dicom_from_affine(series.affine, num_slices)
    normal = slice_normal(geometry.orientation)
    read = read_dicom_series(patient)
    expected_times = cine_times_ms(plan, read.times, read.cycle_ms)  # None: the input has no frame times
    if expected_times is not None and read.gated is False:
        clock = {int(ds.TemporalPositionIdentifier) - 1: ds.ContentTime for ds in derived}
        seconds = [int(clock[m][:2]) * 3600 + int(clock[m][2:4]) * 60 + float(clock[m][4:]) for m in range(num_frames)]
        np.testing.assert_allclose(np.subtract(seconds, seconds[0]) * 1000, expected_times - expected_times[0],
                                   atol=1e-3)
    for ds in derived:
        z = int(np.argmin(np.abs(geometry.positions @ normal - np.asarray(ds.ImagePositionPatient, float) @ normal)))
        m = int(ds.TemporalPositionIdentifier) - 1
        np.testing.assert_allclose(ds.ImagePositionPatient, geometry.positions[z], atol=0.01)
        np.testing.assert_allclose(ds.ImageOrientationPatient, geometry.orientation, atol=1e-6)
        assert ds.NumberOfTemporalPositions == num_frames and ds.InstanceNumber == z * num_frames + m + 1
        if expected_times is not None and read.gated is False:  # a clock's times: ContentTime, no trigger
            assert "TriggerTime" not in ds and ds.ContentTime == clock[m]
        elif expected_times is not None:
            assert float(ds.TriggerTime) == pytest.approx(expected_times[m], abs=1e-3)
        else:  # no frame times in the input (4D CT phases, ungated stacks), none made up
            assert "TriggerTime" not in ds
        if modality == "MR":
            assert ds.CardiacNumberOfImages == num_frames
            assert "RescaleSlope" not in ds  # stored as the input stored them: no Modality LUT
        frame = plan[m]
        wanted = [frame.previous] if frame.acquired else [frame.previous, frame.next]
        refs = [(r.ReferencedSOPInstanceUID, r.get("ReferencedFrameNumber")) for r in ds.SourceImageSequence]
        assert refs == [images[(z, t)][:2] for t in wanted]
        location = images[(z, 0)][2]
        assert (location is None and "SliceLocation" not in ds) or float(ds.SliceLocation) == float(location)
    # ITK (GDCM series reader): every temporal position is a volume on the input's grid
    for files in files_by_position(folder).values():
        origin, direction, spacing, _ = itk_geometry(files)
        np.testing.assert_allclose(origin, geometry.positions[0], atol=0.01)
        np.testing.assert_allclose(direction[:, :2].T.reshape(-1), geometry.orientation, atol=1e-6)
        np.testing.assert_allclose(spacing, [SPACING[0], SPACING[1], SPACING[2]], atol=1e-4)
    if shutil.which("dciodvfy"):
        allowed = dciodvfy_errors(next(p for p in Path(patient).rglob("*") if p.is_file()))
        for path in sorted(folder.glob("*.dcm"))[:3]:
            assert dciodvfy_errors(path) <= allowed, path
    return derived


@pytest.mark.parametrize("layout", LAYOUTS)
def test_upsampled_dicom_is_one_playable_cine_in_the_input_study(weights, tmp_path, layout):
    patient, series = write_input(tmp_path, layout)
    out = interpolate(input=str(patient), upsample=2, output_dir=str(tmp_path / "o"), output_format="both",
                      model=weights)
    check_cine(out, patient, series, upsample_plan(FRAMES, 2, True))
    # the bundle's reader takes the derived cine back: acquired frames as stored, new ones as in the NIfTI
    back = read_dicom_series(Path(out) / "dicom")
    nifti = nib.load(Path(out) / "upsampled_4d.nii.gz").get_fdata(dtype=np.float32)
    np.testing.assert_allclose(back.affine, series.affine, atol=1e-4)
    np.testing.assert_array_equal(back.array[..., ::2], series.array)
    np.testing.assert_allclose(back.array, nifti, atol=0.5)  # whole numbers, as the input stores them


def test_ct_cine_keeps_the_inputs_rescale(weights, tmp_path):
    series = integer_series()
    series.array -= 1000  # Hounsfield units
    patient, _ = write_input(tmp_path, "series_per_phase", "CT", series)  # a 4D CT
    out = interpolate(input=str(patient), upsample=2, output_dir=str(tmp_path / "o"), output_format="dicom",
                      model=weights)
    derived = check_cine(out, patient, series, upsample_plan(FRAMES, 2, True), modality="CT")
    source = headers(patient)[0]
    assert {(float(ds.RescaleSlope), float(ds.RescaleIntercept)) for ds in derived} == {
        (float(source.RescaleSlope), float(source.RescaleIntercept))}
    np.testing.assert_array_equal(read_dicom_series(Path(out) / "dicom").array[..., ::2], series.array)


@pytest.mark.parametrize("layout, quirks", [
    ("single_series", ("empty_functional_groups", "frame_of_reference_per_image", "invalid_uids")),  # GE cine
    ("series_per_slice", ("ungated_slices",)),  # Siemens real-time stack
    ("enhanced", ("enhanced_file_per_phase",)),
])
def test_real_export_quirks_give_a_playable_cine(weights, tmp_path, monkeypatch, layout, quirks):
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.IGNORE)
    patient, series = write_input(tmp_path, layout, quirks=quirks)
    out = interpolate(input=str(patient), upsample=2, output_dir=str(tmp_path / "o"), output_format="dicom",
                      model=weights)
    one_cycle = "ungated_slices" not in quirks  # a real-time stack does not wrap around (--cyclic auto)
    check_cine(out, patient, series, upsample_plan(FRAMES, 2, one_cycle))


@pytest.mark.parametrize("quirks", [(), ("ungated_slices",)])
def test_the_clock_reads_a_triggered_cine_over_its_r_r_interval_and_leaves_a_real_time_one(weights, tmp_path,
                                                                                          monkeypatch, quirks):
    """A prospectively triggered cine (frames over part of the R-R interval): the motion clock places its frames by
    their trigger times in a cycle of NominalInterval, so the pair from the last frame back to the first spans the
    rest of it, and the new frame there is timed half way across it. A series a clock times (a real-time stack) is
    not one cycle: by default (--cyclic auto) no frame is made between its last frame and its first, its new frames
    are made at their own times, and summary.json says it was neither cyclic nor retimed."""
    series = integer_series()
    series.times, series.cycle_ms = 30.0 + 50.0 * np.arange(FRAMES), 400.0  # frames 50 ms apart in a 400 ms cycle
    patient, _ = write_input(tmp_path, "series_per_slice", series=series, quirks=quirks)
    asked = []
    original = SeriesInterpolator.network_times

    def spy(self, phases, pair, ts, retime):
        asked.append((pair, retime, original(self, phases, pair, ts, retime)))
        if retime:
            np.testing.assert_allclose(phases, np.arange(FRAMES) * 50.0 / 400.0)
        return asked[-1][2]

    monkeypatch.setattr(SeriesInterpolator, "network_times", spy)
    out = interpolate(input=str(patient), upsample=2, output_dir=str(tmp_path / "o"), output_format="dicom",
                      model=weights)
    gated = not quirks
    pairs = [(a, (a + 1) % FRAMES) for a in range(FRAMES if gated else FRAMES - 1)]
    assert [pair for pair, _, _ in asked] == pairs
    assert all(retime is gated for _, retime, _ in asked)
    clock = product_steps(True).retiming
    for (a, b), _, times in asked:
        span = (50.0 if b else 400.0 - 50.0 * (FRAMES - 1)) / 400.0  # the wrap: the rest of the cycle
        expected = clock(a * 50.0 / 400.0, span, [0.5]).tolist() if gated else [0.5]
        np.testing.assert_allclose(times, expected, atol=1e-6, err_msg=str((a, b)))
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert summary["retiming"] is gated and summary["cyclic"] is gated
    derived = check_cine(out, patient, series, upsample_plan(FRAMES, 2, gated))
    if gated:  # the wrap frame half way from the last frame to the next cycle's first, at 30 + 400 ms
        last = 30.0 + 50.0 * (FRAMES - 1)
        assert max(float(ds.TriggerTime) for ds in derived) == pytest.approx((last + 430.0) / 2)
    # The cine reads back as what it is, so running it again places its frames alike: a gated one as the same
    # cycle (its frames span only part of it), a real-time one as frames a clock times (ContentTime, no trigger).
    again = read_dicom_series(Path(out) / "dicom")
    assert {"NominalInterval" in ds for ds in derived} == {gated}
    assert again.gated is gated and again.cycle_ms == (pytest.approx(400.0) if gated else None)
    written = cine_times_ms(upsample_plan(FRAMES, 2, gated), series.times, series.cycle_ms if gated else None)
    np.testing.assert_allclose(again.times - again.times[0], written - written[0], atol=1e-3)


def test_cyclic_true_wraps_a_real_time_series_as_asked(weights, tmp_path):
    patient, _ = write_input(tmp_path, "series_per_slice", quirks=("ungated_slices",))
    out = interpolate(input=str(patient), upsample=2, output_dir=str(tmp_path / "o"), output_format="dicom",
                      model=weights, cyclic="True")
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert summary["cyclic"] is True and summary["frames_out"] == 2 * FRAMES and summary["retiming"] is False


def test_vendor_slice_location_and_malformed_study_uid_are_kept(weights, tmp_path, monkeypatch, caplog):
    """A GE-style SliceLocation (opposite sign, own origin) is repeated at the same position; a StudyInstanceUID with
    leading-zero components stays as it is, so the result lands in the patient's study."""
    patient, series = write_input(tmp_path, "single_series")
    bad_study = "1.2.840.0113619.2.5.01"
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.WARN)

    def vendor(ds):
        ds.SliceLocation = round(-float(ds.SliceLocation) + 17.25, 4)
        ds.StudyInstanceUID = bad_study

    edit([p for p in Path(patient).rglob("*") if p.is_file()], vendor)
    caplog.set_level(logging.WARNING)
    read_dicom_series(patient)
    reading = sum("Invalid value for VR UI" in r.getMessage() for r in caplog.records)
    caplog.clear()
    out = interpolate(input=str(patient), upsample=2, output_dir=str(tmp_path / "o"), output_format="dicom",
                      model=weights)
    said = [r.getMessage() for r in caplog.records]
    assert sum("kept as it is" in m for m in said) == 1  # said once, not once per written file
    assert sum("Invalid value for VR UI" in m for m in said) <= reading  # none per written file
    derived = check_cine(out, patient, series, upsample_plan(FRAMES, 2, True))
    assert {ds.StudyInstanceUID for ds in derived} == {bad_study}


def test_two_endpoints_give_one_cine_series(weights, tmp_path):
    patient, series = write_input(tmp_path, "single_series")
    out = interpolate(input=str(patient), t="[0.25,0.5,0.75]", start_frame=1, end_frame=3,
                      output_dir=str(tmp_path / "o"), output_format="both", model=weights)
    plan = [CineFrame(1, 1, 0.0), CineFrame(1, 3, 0.25), CineFrame(1, 3, 0.5), CineFrame(1, 3, 0.75),
            CineFrame(3, 3, 0.0)]
    check_cine(out, patient, series, plan)
    back = read_dicom_series(Path(out) / "dicom")
    np.testing.assert_array_equal(back.array[..., [0, 4]], series.array[..., [1, 3]])
    nifti = nib.load(Path(out) / "interp_4d.nii.gz").get_fdata(dtype=np.float32)
    np.testing.assert_allclose(back.array[..., 1:4], nifti, atol=0.5)


def test_command_line_flags(nifti_series, weights, tmp_path):
    import subprocess
    import sys

    from scripts.utils.paths import ROOT

    path, data = nifti_series
    run = subprocess.run([sys.executable, "-m", "scripts", "interpolate", "--input", str(path), "--upsample", "2",
                          "--cyclic", "False", "--model", weights, "--output_dir", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert nib.load(tmp_path / "o" / "upsampled_4d.nii.gz").shape[3] == (data.shape[3] - 1) * 2 + 1

