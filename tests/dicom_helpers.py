"""Small DICOM acquisitions for tests: synthetic 4D series, in-place edits of written files, scrambled folders,
a non-image object."""

import shutil
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, generate_uid

from scripts.io.dicom_write import encode_int16
from scripts.io.series import Series4D

SHAPE = (24, 20, 6)
FRAMES = 5


def rotation(a, b, c):
    """Rotation matrix about x by ``a``, then y by ``b``, then z by ``c`` (radians)."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(oblique=True, spacing=(0.8, 0.9, 2.5), origin=(12.5, -30.25, 41.0)):
    """Voxel-to-RAS affine: a double-oblique rotation (no axis along x, y or z) or axial."""
    affine = np.eye(4)
    affine[:3, :3] = (rotation(0.35, 0.5, 0.2) if oblique else np.eye(3)) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def make_series(modality="CT", frames=FRAMES, shape=SHAPE, oblique=True, seed=0):
    """Frames that all differ (frame t has mean ~ 100 t), CT as integer HU, MR as float signal."""
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 40, (*shape, frames)) + 100 * np.arange(frames)
    array = np.round(array - 500) if modality == "CT" else np.abs(array) / 7.0
    times = np.arange(frames) * 37.5 + 12.0
    return Series4D(array.astype(np.float32), make_affine(oblique), "synthetic", times)


def dicom_files(folder):
    return sorted(p for p in Path(folder).rglob("*.dcm"))


def edit(files, change):
    """Apply ``change(ds)`` to every file (read with pixels) and save it in place."""
    for path in files:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)


def write_text_sr(path):
    """A minimal Basic Text SR document: DICOM, but not an image."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = pydicom.uid.BasicTextSRStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


class _MissingDecoder:
    """What ``pydicom.pixels.get_decoder`` returns for a syntax whose plugins are not installed."""

    is_available = False
    missing_dependencies = ("pylibjpeg>=2.0; pylibjpeg-libjpeg>=2.1", "gdcm>=3.0.10")


def without_decoders(monkeypatch):
    """The reader as on a machine without pixel decoder plugins (the shipped requirements install them)."""
    monkeypatch.setattr("scripts.io.dicom_read.get_decoder", lambda syntax: _MissingDecoder())


def mark_jpeg_ls(path):
    """Rewrite ``path`` as JPEG-LS compressed (a stub codestream: only a decoder's absence is tested with it)."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 30])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)


def scramble(folder, seed=0):
    """Move every file into one flat folder under a random name, in random order: no folder or file name survives."""
    rng = np.random.default_rng(seed)
    files = dicom_files(folder)
    flat = Path(folder).parent / f"flat-{uuid.uuid4().hex[:8]}"
    flat.mkdir()
    for index in rng.permutation(len(files)):
        files[index].rename(flat / f"{uuid.UUID(int=int(rng.integers(2**62))).hex}.dcm")
    (flat / "README.txt").write_text("exported by a scanner\n")
    (flat / ".cache").mkdir()
    (flat / ".cache" / "thumbnail").write_bytes(b"not DICOM")  # hidden: ignored
    shutil.rmtree(folder)
    return flat


def assert_same_series(read, written, modality):
    assert read.array.shape == written.array.shape
    np.testing.assert_allclose(read.affine, written.affine, atol=1e-4)
    _, slope, _ = encode_int16(written.array)
    np.testing.assert_allclose(read.array, written.array, atol=slope / 2 + 1e-6 * np.abs(written.array).max())
    if modality == "CT":
        assert slope == 1.0  # integer HU are stored exactly
