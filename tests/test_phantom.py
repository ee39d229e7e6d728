"""Synthetic phantoms: determinism, the truth convention (MONAI Warp), nonlinear and regional motion, anatomy
plausibility, and the ACDC layout on disk."""

import os

import fire
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.blocks import Warp

from scripts.phantoms.base import case_seed, load_truth
from scripts.phantoms.cardiac import cardiac_phantom
from scripts.phantoms.lung import lung_phantom
from scripts.phantoms.make import phantom, write_acdc_layout
from scripts.utils.errors import InputError, OutputExistsError

CARDIAC = {"shape": (48, 48, 12), "frames": 20, "spacing": (4.0, 4.0, 10.0)}  # 192 mm in-plane, as the default
LUNG = {"shape": (48, 48, 48), "phases": 10, "spacing": (6.5, 6.5, 6.5)}  # 312 mm, about the default 320 mm
SMALL = {"shape": (32, 32, 6), "frames": 8}


@pytest.fixture(scope="module")
def heart():
    return cardiac_phantom(7, **CARDIAC)


@pytest.fixture(scope="module")
def chest():
    return lung_phantom(7, **LUNG)


@pytest.fixture(scope="module")
def acdc(tmp_path_factory):
    return write_acdc_layout(tmp_path_factory.mktemp("acdc") / "data", num_cases=2, seed=5, **SMALL)


def warp(image: np.ndarray, ddf: np.ndarray) -> np.ndarray:
    """MONAI's Warp, the convention the truth promises: ``image(x + ddf(x))``."""
    moved = Warp("bilinear", "border")(torch.from_numpy(image)[None, None], torch.from_numpy(ddf)[None])
    return moved[0, 0].numpy()


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))


def retrace_gap(path: np.ndarray, turn: int) -> float:
    """Largest distance from a point of ``path[:turn]`` (``(T, D)``, the way out) to the polyline ``path[turn:]`` +
    ``path[0]`` (the way back): 0 when the motion returns along the path it came."""
    back = np.vstack([path[turn:], path[:1]])
    a, d = back[:-1], np.diff(back, axis=0)
    gaps = []
    for point in path[1:turn]:
        along = np.clip(np.einsum("ij,ij->i", point - a, d) / np.maximum(np.einsum("ij,ij->i", d, d), 1e-12), 0, 1)
        gaps.append(np.min(np.linalg.norm(point - a - along[:, None] * d, axis=1)))
    return float(max(gaps))


def region_mean(ddf: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(T, 3)`` mean displacement over the voxels of ``mask`` for every frame of ``ddf`` ``(T, 3, X, Y, Z)``."""
    return ddf[:, :, mask].mean(axis=2)


def test_same_seed_gives_the_same_phantom(heart):
    again = cardiac_phantom(7, **CARDIAC)
    np.testing.assert_array_equal(again.array, heart.array)
    np.testing.assert_array_equal(again.modes, heart.modes)
    np.testing.assert_array_equal(again.weights, heart.weights)
    np.testing.assert_array_equal(again.labels, heart.labels)
    assert (again.ed, again.es, again.frame_time_ms) == (heart.ed, heart.es, heart.frame_time_ms)


def test_other_seeds_give_other_anatomy(heart, chest):
    other = cardiac_phantom(8, **CARDIAC)
    assert np.mean(other.labels[..., 0] != heart.labels[..., 0]) > 0.01
    assert abs(int((other.labels[..., 0] == 3).sum()) - int((heart.labels[..., 0] == 3).sum())) > 20
    other_chest = lung_phantom(8, **LUNG)
    assert np.mean(other_chest.labels[..., 0] != chest.labels[..., 0]) > 0.01


@pytest.mark.parametrize("name", ["heart", "chest"])
def test_truth_warps_the_reference_onto_each_frame(name, request):
    p = request.getfixturevalue(name)
    assert p.truth.shape == (p.array.shape[3], 3) + p.array.shape[:3] and p.truth.dtype == np.float32
    np.testing.assert_array_equal(p.truth[p.ed], 0.0)
    reference = p.array[..., p.ed]
    for f in (p.es // 2, p.es, p.es + 2):  # systole / exhalation, the end frame, diastole / inhalation
        moving = np.linalg.norm(p.truth[f], axis=0) > 0.5
        assert moving.sum() > 500
        frame = p.array[..., f]
        residual = rms((warp(reference, p.truth[f]) - frame)[moving])
        assert residual < 0.3 * rms((reference - frame)[moving]), f


@pytest.mark.parametrize("name", ["heart", "chest"])
def test_motion_is_not_a_linear_scaling_of_the_end_frame(name, request):
    p = request.getfixturevalue(name)
    mid = (p.ed + p.es) // 2
    truth, linear = p.truth[mid], (mid - p.ed) / (p.es - p.ed) * p.truth[p.es]
    assert np.linalg.norm(truth - linear) > 0.2 * np.linalg.norm(truth)
    reference, frame = p.array[..., p.ed], p.array[..., mid]
    moving = (np.linalg.norm(truth, axis=0) > 0.5) | (np.linalg.norm(linear, axis=0) > 0.5)
    noise_level = rms((warp(reference, truth) - frame)[moving])  # what is left is noise (two frames' worth)
    assert rms((warp(reference, linear) - frame)[moving]) > 1.5 * noise_level


@pytest.mark.parametrize("name", ["heart", "chest"])
def test_truth_never_folds(name, request):
    p = request.getfixturevalue(name)
    for u in p.truth:
        jac = np.stack([np.stack(np.gradient(u[i]), axis=0) for i in range(3)]) + np.eye(3)[:, :, None, None, None]
        assert np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1))).min() > 0.2


def _lv_wall_regions(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Septal and lateral LV myocardium: wall voxels facing the RV, and facing away, slice by slice."""
    septal, lateral = np.zeros(labels.shape, bool), np.zeros(labels.shape, bool)
    for z in range(labels.shape[2]):
        lv, rv, myo = (np.argwhere(labels[:, :, z] == k) for k in (3, 1, 2))
        if min(len(lv), len(rv), len(myo)) < 10:
            continue
        centre, towards_rv = lv.mean(0), rv.mean(0) - lv.mean(0)
        cos = (myo - centre) @ towards_rv / np.linalg.norm(myo - centre, axis=1) / np.linalg.norm(towards_rv)
        septal[myo[cos > 0.7, 0], myo[cos > 0.7, 1], z] = True
        lateral[myo[cos < -0.7, 0], myo[cos < -0.7, 1], z] = True
    return septal, lateral


def test_septum_contracts_before_the_lateral_wall(heart):
    septal, lateral = _lv_wall_regions(heart.labels[..., heart.ed])
    assert septal.sum() > 30 and lateral.sum() > 30
    centre = np.argwhere(heart.labels[..., heart.ed] == 3).mean(0)
    peaks = []
    for region in (septal, lateral):
        outward = np.argwhere(region)[:, :2] - centre[:2]
        outward /= np.linalg.norm(outward, axis=1, keepdims=True)
        # pull-back displacement points outwards (where the wall was at ED) while the wall contracts
        radial = np.einsum("tkn,nk->tn", heart.truth[:, :2, region], outward).mean(1)
        peaks.append(int(np.argmax(radial)))
    assert peaks[1] - peaks[0] >= 1, peaks


def test_relaxation_is_not_contraction_reversed(heart):
    septal, lateral = _lv_wall_regions(heart.labels[..., heart.ed])
    wall = np.argwhere(septal | lateral)[::7]
    paths = [heart.truth[:, :, i, j, k] for i, j, k in wall]  # (T, 3) each
    relative_gaps = [retrace_gap(path, heart.es) / np.linalg.norm(path[heart.es]) for path in paths]
    assert len(wall) > 20 and np.median(relative_gaps) > 0.15


def test_es_is_the_smallest_lv_and_the_ejection_plausible(heart):
    volume = (heart.labels == 3).sum(axis=(0, 1, 2))
    assert abs(int(np.argmin(volume)) - heart.es) <= 1
    assert 0.35 < 1 - volume.min() / volume[heart.ed] < 0.75
    assert 0.35 <= heart.es / heart.array.shape[3] <= 0.45
    assert 0 <= heart.array.min() and 800 < np.percentile(heart.array[heart.labels == 3], 50) < 1300


def test_lung_hounsfield_units_are_plausible(chest):
    image, labels = chest.array[..., 0], chest.labels[..., 0]
    assert -1010 < np.median(image[labels == 0]) < -985  # air
    assert -900 < np.median(image[labels == 2]) < -780  # lung
    assert -120 < np.median(image[labels == 1]) < 80  # body: fat, muscle, organs
    assert image[labels == 3].max() > np.median(image[labels == 2]) + 500  # a solid nodule (few voxels at 6.5 mm)
    assert np.percentile(image[labels == 1], 99.5) > 250  # bone


def test_diaphragm_moves_more_at_the_base_than_at_the_apex(chest):
    lung = chest.labels[..., chest.es] == 2
    z_mm = chest.truth[chest.es, 2] * LUNG["spacing"][2]
    heights = np.argwhere(lung)[:, 2]
    low, high = np.percentile(heights, [15, 85])
    base, apex = lung & (np.arange(lung.shape[2]) <= low), lung & (np.arange(lung.shape[2]) >= high)
    assert np.mean(np.abs(z_mm[base])) > 3 * np.mean(np.abs(z_mm[apex]))
    assert 8 < np.percentile(np.abs(z_mm[lung]), 99) < 22
    assert np.all(z_mm[lung] <= 1e-3)  # at end-exhale everything in the lung came from further down
    right = np.arange(lung.shape[0])[:, None, None] > lung.shape[0] // 2
    assert abs(np.mean(z_mm[base & right]) - np.mean(z_mm[base & ~right])) > 1.0


def test_lung_breathing_has_hysteresis(chest):
    lung = chest.labels[..., chest.ed] == 2
    front = lung & (np.arange(lung.shape[1])[None, :, None] > np.argwhere(lung)[:, 1].mean())
    path = region_mean(chest.truth, front)[:, 1:]  # (anterior-posterior, superior-inferior)
    assert retrace_gap(path, chest.es) > 0.1 * np.linalg.norm(path[chest.es])


def test_acdc_layout_on_disk(acdc):
    assert sorted(os.listdir(acdc)) == ["patient001", "patient002"]
    for patient in (1, 2):
        case = acdc / f"patient{patient:03d}"
        ref = cardiac_phantom(case_seed(5, patient), spacing=(6.0, 6.0, 10.0), **SMALL)
        assert sorted(os.listdir(case)) == ["Info.cfg", f"patient{patient:03d}_4d.nii.gz", "truth"]
        image = nib.load(case / f"patient{patient:03d}_4d.nii.gz")
        data = np.asanyarray(image.dataobj)
        assert data.dtype == np.int16 and data.shape == (32, 32, 6, 8)
        np.testing.assert_allclose(image.affine, ref.affine)
        np.testing.assert_allclose(image.header.get_zooms(), (6.0, 6.0, 10.0, ref.frame_time_ms), rtol=1e-6)
        assert np.abs(data - ref.array).max() <= 0.5
        info = [line.split(": ") for line in (case / "Info.cfg").read_text().splitlines()]
        assert [key for key, _ in info] == ["ED", "ES", "Group", "Height", "NbFrame", "Weight"]
        values = dict(info)
        assert (values["ED"], values["ES"], values["NbFrame"]) == ("1", str(ref.es + 1), "8")
        assert 150 <= float(values["Height"]) <= 195 and 50 <= float(values["Weight"]) <= 105
        np.testing.assert_array_equal(load_truth(case), ref.truth)


def test_a_case_does_not_depend_on_how_many_are_written(acdc, tmp_path):
    alone = write_acdc_layout(tmp_path / "one", num_cases=1, seed=5, first_patient=2, **SMALL)
    assert os.listdir(alone) == ["patient002"]
    image = "patient002/patient002_4d.nii.gz"
    np.testing.assert_array_equal(np.asanyarray(nib.load(alone / image).dataobj),
                                  np.asanyarray(nib.load(acdc / image).dataobj))
    assert (alone / "patient002" / "Info.cfg").read_text() == (acdc / "patient002" / "Info.cfg").read_text()
    np.testing.assert_array_equal(load_truth(alone / "patient002"), load_truth(acdc / "patient002"))


def test_existing_output_is_refused_unless_overwrite(acdc, tmp_path):
    out = write_acdc_layout(tmp_path / "data", num_cases=1, **SMALL)
    with pytest.raises(OutputExistsError):
        write_acdc_layout(out, num_cases=1, seed=1, **SMALL)
    first = np.asanyarray(nib.load(out / "patient001" / "patient001_4d.nii.gz").dataobj)
    write_acdc_layout(out, num_cases=1, seed=1, overwrite=True, **SMALL)
    assert not np.array_equal(np.asanyarray(nib.load(out / "patient001" / "patient001_4d.nii.gz").dataobj), first)


def test_failed_generation_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="--frames"):
        write_acdc_layout(tmp_path / "data", num_cases=1, shape=(32, 32, 6), frames=3)
    assert os.listdir(tmp_path) == []


def test_load_truth_names_a_case_without_truth(tmp_path):
    with pytest.raises(InputError, match="truth"):
        load_truth(tmp_path)


def test_cli_writes_the_layout(tmp_path):
    out = tmp_path / "cli"
    fire.Fire(phantom, command=["--kind", "cardiac", "--out", str(out), "--num_cases", "1", "--seed", "3",
                                "--shape", "32,32,6", "--frames", "8"])
    assert nib.load(out / "patient001" / "patient001_4d.nii.gz").shape == (32, 32, 6, 8)


@pytest.mark.parametrize("arguments, source", [({"kind": "brain"}, "--kind"), ({"shape": "32,32"}, "--shape"),
                                               ({"shape": "32,32,x"}, "--shape"), ({"num_cases": 0}, "--num_cases"),
                                               ({"seed": -1}, "--seed")])
def test_cli_names_the_bad_argument(arguments, source, tmp_path):
    with pytest.raises(InputError) as error:
        phantom(out=str(tmp_path / "cli"), **arguments)
    assert error.value.source == source
    assert not (tmp_path / "cli").exists()
