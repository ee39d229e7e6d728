"""One entry point for the training and evaluation configs: a dataset kind and a folder -> an (I0, I1, It, t) dataset.

    kind      layout of ``dataset_dir``                                         module
    acdc      patientNNN/patientNNN_4d.nii.gz + Info.cfg (ED, ES)               scripts.data.acdc
    lung4d    patient/study/series-per-phase/*.dcm (4D-Lung)                    scripts.data.lung4d
    nifti4d   *.nii.gz 4D files, optional <name>.json with start/end frame      scripts.data.nifti4d
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

from scripts.errors import InputError

KINDS = {
    "acdc": "scripts.data.acdc:acdc_dataset",
    "lung4d": "scripts.data.lung4d:lung4d_dataset",
    "nifti4d": "scripts.data.nifti4d:nifti4d_dataset",
}


def make_dataset(
    kind: str,
    dataset_dir: str | os.PathLike,
    split: str = "train",
    spatial_size: Sequence[int] | None = None,
    **kwargs,
):
    """Build the dataset of ``kind`` (see the module table) for ``split``; other keywords go to its builder.

    ``spatial_size`` None keeps the kind's protocol grid (ACDC 128x128x32, 4D-Lung 128^3).
    """
    if kind not in KINDS:
        raise InputError("dataset", f"unknown dataset kind {kind!r}; choose one of {sorted(KINDS)}")
    if not os.path.isdir(dataset_dir):
        raise InputError(dataset_dir, f"dataset folder not found (dataset kind {kind!r})")
    module, name = KINDS[kind].split(":")
    build = getattr(importlib.import_module(module), name)
    if spatial_size is not None:
        kwargs["spatial_size"] = tuple(spatial_size)
    return build(dataset_dir, split=split, **kwargs)
