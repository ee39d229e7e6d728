"""ACDC layout and protocol, the triplet dataset machinery, and the nifti4d dataset kind (tiny fake data only)."""

import functools
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader

from scripts.datasets.acdc import acdc_case, acdc_cases, acdc_dataset, parse_info_cfg
from scripts.datasets.nifti4d import nifti4d_case, nifti4d_cases, nifti4d_dataset
from scripts.datasets.protocol import protocol_frames
from scripts.datasets.triplets import TripletCase, TripletDataset, frames_between
from scripts.utils.errors import InputError

SIZE = (8, 8, 4)  # a small protocol grid for dataset tests


def series(shape, seed=0):
    """A 4D series whose frames all differ: noise plus 100 x frame index, in MR-like units."""
    rng = np.random.default_rng(seed)
    frames = np.arange(shape[3], dtype=np.float32) * 100
    return (rng.random(shape, dtype=np.float32) * 50 + frames).astype(np.float32)


def make_patient(root, name, shape=(10, 9, 3, 6), ed=1, es=5, nb_frame="auto", extra="Group: DCM\nHeight: 184.0\n"):
    folder = root / name
    folder.mkdir(parents=True)
    data = series(shape, seed=len(name) + int(name[7:10]))
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 10.0, 1.0])), folder / f"{name[:10]}_4d.nii.gz")
    lines = [f"ED: {ed}", f"ES: {es}"]
    if nb_frame is not None:
        lines.append(f"NbFrame: {shape[3] if nb_frame == 'auto' else nb_frame}")
    (folder / "Info.cfg").write_text("\n".join(lines) + "\n" + extra)
    return folder, data


# --- Info.cfg -----------------------------------------------------------------------------------------------------


def test_parse_info_cfg_gives_zero_based_frames_and_metadata(tmp_path):
    path = tmp_path / "Info.cfg"
    path.write_text("ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95\n")
    assert parse_info_cfg(path) == {"ED": 0, "ES": 11, "NbFrame": 30, "Group": "DCM", "Height": 184.0, "Weight": 95.0}


def test_parse_info_cfg_tolerates_missing_metadata(tmp_path):
    path = tmp_path / "Info.cfg"
    path.write_text("ED: 3\nES: 1\n\nHeight: n/a\n")
    assert parse_info_cfg(path) == {"ED": 2, "ES": 0, "NbFrame": None, "Group": None, "Height": None, "Weight": None}


@pytest.mark.parametrize(
    "text, words",
    [
        (None, ["file not found"]),
        ("ES: 5\nNbFrame: 10\n", ["no 'ED:' line"]),
        ("ED: 1\nNbFrame: 10\n", ["no 'ES:' line"]),
        ("ED: 4\nES: 4\nNbFrame: 10\n", ["ED and ES are both frame 4"]),
        ("ED: 0\nES: 4\nNbFrame: 10\n", ["ED 0 is outside 1..10"]),
        ("ED: 1\nES: 11\nNbFrame: 10\n", ["ES 11 is outside 1..10"]),
        ("ED: one\nES: 4\n", ["ED must be an integer", "'one'"]),
        ("ED: 1\nES: 4\nthis line has no colon\n", ["line 3", "not 'Key: value'"]),
    ],
)
def test_parse_info_cfg_errors_name_the_file(tmp_path, text, words):
    path = tmp_path / "Info.cfg"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as caught:
        parse_info_cfg(path)
    assert caught.value.source == str(path)
    for word in words:
        assert word in caught.value.problem


@pytest.mark.parametrize(
    "nb_frame, es, words", [(8, 5, ["NbFrame 8", "has 6 frames"]), (None, 7, ["ES 7 is beyond the 6 frames"])]
)
def test_acdc_case_checks_info_against_the_4d_file(tmp_path, nb_frame, es, words):
    folder, _ = make_patient(tmp_path, "patient001", es=es, nb_frame=nb_frame)
    with pytest.raises(InputError) as caught:
        acdc_case(folder)
    assert caught.value.source == str(folder / "Info.cfg")
    for word in [*words, "patient001_4d.nii.gz"]:
        assert word in caught.value.problem


def test_acdc_case_names_a_folder_without_4d_file(tmp_path):
    folder, _ = make_patient(tmp_path, "patient001")
    (folder / "patient001_4d.nii.gz").unlink()
    with pytest.raises(InputError, match="has no patient001_4d.nii.gz") as caught:
        acdc_case(folder)
    assert caught.value.source == str(folder)


# --- layout and split ---------------------------------------------------------------------------------------------


@pytest.fixture
def acdc_tree(tmp_path):
    for name in ["patient092", "patient001", "patient003", "patient091", "patient002", "patient015_test"]:
        make_patient(tmp_path, name)
    (tmp_path / "notes").mkdir()
    (tmp_path / "patient004").write_text("a file, not a patient folder")
    return tmp_path


def _names(folders):
    return [folder.name for folder in folders]


def test_acdc_split_by_patient_number_in_order(acdc_tree):
    assert _names(acdc_cases(acdc_tree, "train")) == ["patient001", "patient002", "patient003"]
    assert _names(acdc_cases(acdc_tree, "test")) == ["patient091", "patient092"]
    assert _names(acdc_cases(acdc_tree, "all")) == [
        "patient001", "patient002", "patient003", "patient091", "patient092"
    ]
    assert _names(acdc_cases(acdc_tree, "train", train_range=(2, 91))) == ["patient002", "patient003", "patient091"]


def test_acdc_cases_errors_name_the_folder_and_layout(tmp_path):
    with pytest.raises(InputError, match="holds no patientNNN folder.*Info.cfg") as caught:
        acdc_cases(tmp_path)
    assert caught.value.source == str(tmp_path)
    make_patient(tmp_path, "patient001")
    with pytest.raises(InputError, match=r"no patient numbered 91..100 \(the test split\)"):
        acdc_cases(tmp_path, "test")
    with pytest.raises(InputError, match="is not a folder"):
        acdc_cases(tmp_path / "missing")
    with pytest.raises(InputError, match="must be one of") as caught:
        acdc_cases(tmp_path, "val")
    assert caught.value.source == "split"


# --- frames between the endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, num_frames, cyclic, expected",
    [
        (1, 5, 8, False, [(2, 0.25), (3, 0.5), (4, 0.75)]),
        (1, 5, 8, True, [(2, 0.25), (3, 0.5), (4, 0.75)]),
        (5, 1, 8, False, [(4, 0.25), (3, 0.5), (2, 0.75)]),
        (6, 1, 8, True, [(7, 1 / 3), (0, 2 / 3)]),
        (3, 4, 8, False, []),
        (7, 0, 8, True, []),
    ],
)
def test_frames_between(start, end, num_frames, cyclic, expected):
    got = frames_between(start, end, num_frames, cyclic)
    assert [frame for frame, _ in got] == [frame for frame, _ in expected]
    np.testing.assert_allclose([t for _, t in got], [t for _, t in expected], rtol=0, atol=1e-12)


# --- protocol -----------------------------------------------------------------------------------------------------


def test_protocol_pads_small_volumes_with_zeros_around_the_normalised_input():
    data = series((100, 95, 6, 3)) - 20.0
    out = protocol_frames(data, (128, 128, 32), "cine.nii.gz")
    assert out.shape == (128, 128, 32, 3) and out.dtype == np.float32
    # centred like UVI-Net: (128 - 100) // 2 = 14, (128 - 95) // 2 = 16, (32 - 6) // 2 = 13 voxels before
    centre = (slice(14, 114), slice(16, 111), slice(13, 19))
    expected = (data - data.min()) / (data.max() - data.min())
    np.testing.assert_allclose(out[centre], expected, rtol=0, atol=1e-6)
    border = np.ones(out.shape, dtype=bool)
    border[centre] = False
    assert np.count_nonzero(out[border]) == 0
    assert out[centre].min() == 0.0 and out[centre].max() == pytest.approx(1.0)


def test_protocol_crops_large_volumes_centrally_before_normalising():
    data = series((140, 130, 40, 2))
    data[0, 0, 0, 1] = 1e6  # outside the crop: must not influence the scale
    out = protocol_frames(data, (128, 128, 32), "big.nii.gz")
    cropped = data[6:134, 1:129, 4:36]
    np.testing.assert_allclose(out, (cropped - cropped.min()) / (cropped.max() - cropped.min()), rtol=0, atol=1e-6)


def test_protocol_per_frame_scales_each_frame_to_unit_range():
    data = series((10, 9, 3, 4))
    out = protocol_frames(data, (12, 12, 4), "cine.nii.gz", per_frame=True)
    content = out[1:11, 1:10, 0:3]
    np.testing.assert_allclose(content.min(axis=(0, 1, 2)), 0.0, atol=0)
    np.testing.assert_allclose(content.max(axis=(0, 1, 2)), 1.0, atol=1e-6)


# --- datasets -----------------------------------------------------------------------------------------------------


def test_acdc_dataset_samples_are_the_protocol_frames_with_exact_t(tmp_path):
    _, data1 = make_patient(tmp_path, "patient001", shape=(10, 9, 3, 7), ed=2, es=6)
    _, data2 = make_patient(tmp_path, "patient002", shape=(10, 9, 3, 5), ed=1, es=5)
    dataset = acdc_dataset(tmp_path, "train", spatial_size=SIZE)
    assert len(dataset) == 3 + 3
    protocol = {"patient001": protocol_frames(data1, SIZE, "p1"), "patient002": protocol_frames(data2, SIZE, "p2")}
    endpoints = {"patient001": (1, 5), "patient002": (0, 4)}
    seen = []
    for sample in dataset:
        ed, es = endpoints[sample["case"]]
        frames = protocol[sample["case"]]
        f = sample["frame"]
        assert ed < f < es
        assert sample["t"].dtype == torch.float32 and sample["t"].shape == ()
        assert sample["t"].item() == np.float32((f - ed) / (es - ed))
        assert sample["image"].shape == (2, *SIZE) and sample["target"].shape == (1, *SIZE)
        np.testing.assert_array_equal(sample["image"][0].numpy(), frames[..., ed])
        np.testing.assert_array_equal(sample["image"][1].numpy(), frames[..., es])
        np.testing.assert_array_equal(sample["target"][0].numpy(), frames[..., f])
        seen.append((sample["case"], f))
    assert seen == [("patient001", 2), ("patient001", 3), ("patient001", 4)] + [("patient002", f) for f in (1, 2, 3)]


def test_rescaled_copies_give_the_same_samples_as_raw_ones(tmp_path):
    """The reachable ACDC copy stores 65 patients rescaled to 0-255 (uint8) with 1 mm spacing and 35 raw (MR units,
    true spacing): per-series min-max makes both give the same samples, and smaller volumes are zero-padded."""
    levels = np.random.default_rng(3).integers(0, 256, size=(10, 9, 3, 6)).astype(np.uint8)
    levels[0, 0, 0, 0], levels[0, 0, 0, 1] = 0, 255
    raw = levels.astype(np.float32) * 3.7 + 12.0  # the same anatomy in scanner units
    for name, data, spacing in (("patient001", raw, [1.4, 1.4, 8.0, 1.0]), ("patient002", levels, [1, 1, 1, 1])):
        make_patient(tmp_path, name)  # Info.cfg (ED 1, ES 5); the image is replaced below
        nib.save(nib.Nifti1Image(data, np.diag(spacing)), tmp_path / name / f"{name}_4d.nii.gz")
    assert nib.load(tmp_path / "patient002" / "patient002_4d.nii.gz").get_data_dtype() == np.uint8
    samples = {}
    for sample in acdc_dataset(tmp_path, "train", spatial_size=(12, 12, 4)):
        samples.setdefault(sample["case"], []).append(sample)
    assert [len(v) for v in samples.values()] == [3, 3]
    for a, b in zip(samples["patient001"], samples["patient002"]):
        assert a["frame"] == b["frame"] and a["t"] == b["t"]
        for key in ("image", "target"):
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-6)
        assert float(b["target"][0, [0, 11]].abs().max()) == 0.0  # 10 rows centred in 12: one padded row each side


def test_dataset_keeps_only_the_frames_from_ed_to_es(tmp_path):
    make_patient(tmp_path, "patient001", shape=(10, 9, 3, 12), ed=3, es=7)
    dataset = acdc_dataset(tmp_path, "train", spatial_size=SIZE)
    frames, rows = dataset.store.cache["patient001"]
    assert frames.shape == (5, *SIZE)
    assert sorted(rows) == [2, 3, 4, 5, 6]


def test_uncached_dataset_gives_the_same_samples(tmp_path):
    make_patient(tmp_path, "patient001", shape=(10, 9, 3, 6), ed=1, es=5)
    cached, uncached = (acdc_dataset(tmp_path, "all", spatial_size=SIZE, cache=c) for c in (True, False))
    assert uncached.store.cache is None
    for a, b in zip(cached, uncached, strict=True):
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["target"], b["target"], rtol=0, atol=0)
        assert a["t"] == b["t"] and a["frame"] == b["frame"]


def test_default_collate_batches_samples(tmp_path):
    make_patient(tmp_path, "patient001", shape=(10, 9, 3, 7), ed=1, es=6)
    loader = DataLoader(acdc_dataset(tmp_path, "train", spatial_size=SIZE), batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 2, *SIZE) and batch["target"].shape == (3, 1, *SIZE)
    assert batch["t"].shape == (3,) and batch["t"].dtype == torch.float32
    torch.testing.assert_close(batch["t"], torch.tensor([0.2, 0.4, 0.6]))
    assert batch["case"] == ["patient001"] * 3
    assert batch["frame"].tolist() == [1, 2, 3]


def _undo_augmentation(plain, augmented):
    """The flips and swap that turn ``plain`` into ``augmented``, or None when there are none."""
    for swap in (False, True):
        for axes in ([], [1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]):
            image = plain["image"].flip(0) if swap else plain["image"]
            if torch.equal(image.flip(axes), augmented["image"]) and torch.equal(
                plain["target"].flip(axes), augmented["target"]
            ):
                t = 1 - plain["t"] if swap else plain["t"]
                return (swap, tuple(axes)) if torch.equal(t, augmented["t"]) else None
    return None


def test_augmentation_flips_all_three_volumes_alike_and_swaps_with_one_minus_t(tmp_path):
    make_patient(tmp_path, "patient001", shape=(10, 9, 3, 4), ed=1, es=4)
    plain = acdc_dataset(tmp_path, "train", spatial_size=SIZE)
    augmented = acdc_dataset(tmp_path, "train", spatial_size=SIZE, augment=True)
    assert len(plain) == 2
    augmented.transform.set_random_state(seed=0)
    found = set()
    for _ in range(30):
        for k in range(len(plain)):
            sample = augmented[k]
            assert type(sample["image"]) is torch.Tensor  # plain tensors, not MetaTensor, for any collate
            change = _undo_augmentation(plain[k], sample)
            assert change is not None
            found.add(change)
    assert {swap for swap, _ in found} == {False, True}
    assert {axis for _, axes in found for axis in axes} == {1, 2, 3}


def _loader(array):
    return array


def test_triplet_dataset_contract_for_other_dataset_kinds():
    """What a dataset kind outside this package (4D-Lung) relies on: cases in, samples out."""
    phases = np.stack([np.full((4, 4, 4), k / 5, np.float32) for k in range(6)], axis=-1)
    case = TripletCase("lung1", 0, 5, [(k, k / 5) for k in range(1, 5)], functools.partial(_loader, phases))
    dataset = TripletDataset([case])
    assert [s["frame"] for s in dataset] == [1, 2, 3, 4]
    sample = dataset[2]
    assert sample["t"].item() == np.float32(0.6)
    assert sample["target"].unique().tolist() == [np.float32(0.6)]
    assert sample["image"][1].unique().tolist() == [1.0]


def test_triplet_dataset_refuses_cases_on_different_grids():
    small, large = np.zeros((4, 4, 4, 3), np.float32), np.zeros((4, 4, 5, 3), np.float32)
    cases = [TripletCase(name, 0, 2, [(1, 0.5)], lambda a=a: a) for name, a in (("a", small), ("b", large))]
    with pytest.raises(ValueError, match="different grids"):
        TripletDataset(cases)


# --- nifti4d ------------------------------------------------------------------------------------------------------


@pytest.fixture
def nifti_folder(tmp_path):
    nib.save(nib.Nifti1Image(series((6, 5, 2, 5)), np.eye(4)), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(series((6, 5, 2, 6), seed=1), np.eye(4)), tmp_path / "b.nii.gz")
    (tmp_path / "b.json").write_text(json.dumps({"start_frame": -1, "end_frame": 1}))
    nib.save(nib.Nifti1Image(series((6, 5, 2, 6), seed=2), np.eye(4)), tmp_path / "c.nii")
    (tmp_path / "c.json").write_text(json.dumps({"start_frame": 4, "end_frame": 1, "cyclic": True}))
    (tmp_path / "readme.txt").write_text("not a case")
    return tmp_path


def test_nifti4d_endpoints_from_sidecars_or_first_and_last(nifti_folder):
    cases = {c.case_id: c for c in (nifti4d_case(p, SIZE) for p in nifti4d_cases(nifti_folder))}
    assert sorted(cases) == ["a", "b", "c"]
    assert (cases["a"].start, cases["a"].end, cases["a"].targets) == (0, 4, [(1, 0.25), (2, 0.5), (3, 0.75)])
    assert (cases["b"].start, cases["b"].end, cases["b"].targets) == (5, 1, [(4, 0.25), (3, 0.5), (2, 0.75)])
    assert (cases["c"].start, cases["c"].end, [f for f, _ in cases["c"].targets]) == (4, 1, [5, 0])


def test_nifti4d_split_is_a_name_ordered_fraction(nifti_folder):
    assert [p.name for p in nifti4d_cases(nifti_folder, "train", 0.3)] == ["a.nii.gz", "b.nii.gz"]
    assert [p.name for p in nifti4d_cases(nifti_folder, "test", 0.3)] == ["c.nii"]
    assert [p.name for p in nifti4d_cases(nifti_folder, "test", 0.34)] == ["b.nii.gz", "c.nii"]
    dataset = nifti4d_dataset(nifti_folder, "all", spatial_size=SIZE)
    assert len(dataset) == 3 + 3 + 2
    assert dataset[0]["image"].shape == (2, *SIZE)


@pytest.mark.parametrize(
    "sidecar, source_suffix, words",
    [
        ("{not json", "a.json", ["cannot read it as JSON"]),
        ("[0, 4]", "a.json", ["expected an object"]),
        ('{"start_frame": 0, "end_frame": 5}', "a.json: end_frame", ["frame 5 is out of range"]),
        ('{"start_frame": 2, "end_frame": -3}', "a.json: start_frame/", ["both select frame 2"]),
        ('{"cyclic": "yes"}', "a.json", ["cyclic must be true or false"]),
    ],
)
def test_nifti4d_sidecar_errors_name_the_sidecar(tmp_path, sidecar, source_suffix, words):
    nib.save(nib.Nifti1Image(series((6, 5, 2, 5)), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "a.json").write_text(sidecar)
    with pytest.raises(InputError) as caught:
        nifti4d_case(tmp_path / "a.nii.gz")
    assert str(tmp_path / source_suffix) in caught.value.source
    for word in words:
        assert word in caught.value.problem


def test_nifti4d_folder_errors(tmp_path):
    with pytest.raises(InputError, match="holds no .nii.gz or .nii file"):
        nifti4d_cases(tmp_path)
    nib.save(nib.Nifti1Image(series((6, 5, 2, 5)), np.eye(4)), tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match="leave the train split empty"):
        nifti4d_cases(tmp_path, "train", 0.1)
    nib.save(nib.Nifti1Image(series((6, 5, 2, 5)), np.eye(4)), tmp_path / "a.nii")
    with pytest.raises(InputError, match="a.nii and a.nii.gz are both case 'a'") as caught:
        nifti4d_cases(tmp_path)
    assert caught.value.source == str(tmp_path)


def full_field_of_view(path):
    """A 64 x 64 x 4 field of view, 1.5 mm, 6 frames: a static textured body and a square pulsing in one corner
    (x, y 46..58), far from the image centre. Returns the array."""
    rng = np.random.default_rng(3)
    body = rng.random((64, 64, 4)).astype(np.float32) * 200 + 100
    frames = []
    for k in range(6):
        frame = body.copy()
        half = 3 + k % 3  # the square grows and shrinks: motion
        frame[52 - half:52 + half, 52 - half:52 + half] = 900
        frames.append(frame)
    array = np.stack(frames, axis=-1)
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 8.0, 1.0])), path)
    return array


def test_motion_crop_centres_the_protocol_on_the_moving_region(tmp_path):
    """A full field of view whose heart is off centre: the protocol's centre crop alone keeps static body only, with
    ``motion_crop`` it keeps the moving square (the box the product's motion region runs the network in)."""
    from scripts.datasets.dropped_frames import series_cases
    from scripts.datasets.nifti4d import nifti4d_series
    from scripts.transforms.motion_roi import find_roi, motion_map

    array = full_field_of_view(tmp_path / "cine.nii.gz")
    x0, x1, y0, y1 = find_roi(motion_map(np.moveaxis(array, -1, 0)), (1.5, 1.5, 8.0)).box
    assert x0 <= 46 and x1 >= 58 and y0 <= 46 and y1 >= 58 and (x1 - x0) < 64  # a box around the motion only

    def moving_voxels(**options):
        (case,) = nifti4d_series(tmp_path, "all", (24, 24, 4), **options)
        return int((case.load().std(axis=-1) > 0.05).sum())

    assert moving_voxels() == 0  # the middle of the image: static body
    assert moving_voxels(motion_crop=True) >= 4 * 6 * 6  # the square's ring of change, on every slice
    (case,) = nifti4d_dataset(tmp_path, "all", (24, 24, 4), motion_crop="true").store.cases.values()
    assert int((case.load().std(axis=-1) > 0.05).sum()) == moving_voxels(motion_crop=True)  # the pair job's too
    (_, load), = series_cases("nifti4d", tmp_path, "all", (24, 24, 4), motion_crop=True)
    np.testing.assert_array_equal(load(), case.load())
    # a crop wider than the moving box: a window around the box inside the image, no zero padding the image could fill
    (wide,) = nifti4d_series(tmp_path, "all", (48, 48, 4), motion_crop=True)
    frames = wide.load()
    assert frames.shape == (48, 48, 4, 6)
    assert (frames.std(axis=-1) > 0.05).sum() >= 4 * 6 * 6
    assert not (frames == 0).all(axis=(1, 2, 3)).any() and not (frames == 0).all(axis=(0, 2, 3)).any()


def fine_pixels(path, pixel_mm):
    """A 240 x 240 x 2 field of view of ``pixel_mm`` pixels, 5 frames: a textured body and a square whose side pulses
    between 12 and 20 mm off the image centre (its centre at 100 mm, 100 mm)."""
    rng = np.random.default_rng(5)
    body = rng.random((240, 240, 2)).astype(np.float32) * 200 + 100
    centre = round(100 / pixel_mm)
    frames = []
    for k in range(5):
        frame = body.copy()
        half = round((6 + 2 * (k % 3)) / pixel_mm)  # 6, 8, 10 mm
        frame[centre - half:centre + half, centre - half:centre + half] = 900
        frames.append(frame)
    nib.save(nib.Nifti1Image(np.stack(frames, axis=-1), np.diag([pixel_mm, pixel_mm, 8.0, 1.0])), path)


def moving_extent_mm(frames, pixel_mm):
    """The in-plane extent (mm) of the voxels that change over ``frames`` ``(X, Y, Z, T)`` along x and along y."""
    xs, ys = np.nonzero((frames.std(axis=-1) > 0.05).any(axis=2))
    return (xs.max() - xs.min() + 1) * pixel_mm, (ys.max() - ys.min() + 1) * pixel_mm


@pytest.mark.parametrize("pixel_mm, resampled", [(0.6, True), (1.0, False)])
def test_motion_crop_resamples_fine_pixels_as_the_motion_region_does(tmp_path, pixel_mm, resampled):
    """Pixels more than twice finer than the training spacing: the crop is the moving box resampled in plane to
    1.5 mm, so the network trains on the scale inference's motion region gives it (the 20 mm square spans about 20 mm
    of the crop, 13 of its voxels; a crop at native pixels spans 20 mm in 33 voxels). Within the tolerance the crop
    is the native one."""
    from scripts.datasets.nifti4d import nifti4d_series
    from scripts.transforms.motion_roi import find_roi, motion_map

    fine_pixels(tmp_path / "cine.nii.gz", pixel_mm)
    options = {"motion_crop": True, "training_spacing": (1.5, 1.5), "zoom_tolerance": 2.0}
    (case,) = nifti4d_series(tmp_path, "all", (32, 32, 2), **options)
    frames = case.load()
    assert frames.shape == (32, 32, 2, 5) and np.isfinite(frames).all()
    grid_mm = 1.5 if resampled else pixel_mm
    extent = moving_extent_mm(frames, grid_mm)
    assert all(18 <= e <= 24 for e in extent), extent  # the square's 20 mm, on the crop's grid
    (native,) = nifti4d_series(tmp_path, "all", (32, 32, 2), motion_crop=True)
    if not resampled:
        np.testing.assert_array_equal(native.load(), frames)
    else:
        assert moving_extent_mm(native.load(), pixel_mm) == pytest.approx(extent, abs=3)  # same mm, other grid
        # what inference's motion region runs the network on: the same scale
        array = np.asarray(nib.load(tmp_path / "cine.nii.gz").dataobj)
        roi = find_roi(motion_map(np.moveaxis(array, -1, 0)), (pixel_mm, pixel_mm, 8.0), (1.5, 1.5), tolerance=2.0)
        assert roi.zoom == pytest.approx((pixel_mm / 1.5, pixel_mm / 1.5))
    (item,) = nifti4d_dataset(tmp_path, "all", (32, 32, 2), **options).store.cases.values()
    np.testing.assert_array_equal(item.load(), frames)  # the pair job's crop is the same


def test_make_dataset_options_reach_the_builder_and_unknown_ones_are_named(acdc_tree):
    from scripts.datasets.registry import make_dataset

    data = make_dataset("acdc", acdc_tree, split="test", spatial_size=(8, 8, 4), options={"test_range": [1, 2]})
    assert sorted({item["case"] for item in data.data}) == ["patient001", "patient002"]
    with pytest.raises(InputError, match="'acdc' datasets take no option 'num_train'.*'test_range'"):
        make_dataset("acdc", acdc_tree, options={"num_train": 3})
