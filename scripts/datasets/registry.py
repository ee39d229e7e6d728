"""One entry point for the training and evaluation configs: a dataset kind and a folder -> an (I0, I1, It, t) dataset.

    kind      layout of ``dataset_dir``                                         module
    acdc      patientNNN/patientNNN_4d.nii.gz + Info.cfg (ED, ES)               scripts.datasets.acdc
    lung4d    patient/study/series-per-phase/*.dcm (4D-Lung)                    scripts.datasets.lung4d
    nifti4d   *.nii.gz 4D files, optional <name>.json with start/end frame      scripts.datasets.nifti4d
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence

from scripts.utils.errors import InputError

KINDS = {
    "acdc": "scripts.datasets.acdc:acdc_dataset",
    "lung4d": "scripts.datasets.lung4d:lung4d_dataset",
    "nifti4d": "scripts.datasets.nifti4d:nifti4d_dataset",
}


def check_options(kind: str, build, options: Mapping[str, object] | None) -> None:
    """Refuse an option that ``build`` (the kind's builder or folder lister) does not take.

    Raises:
        InputError: naming ``dataset options``, the kind, the option and the options it takes; before any work.
    """
    accepted = set(inspect.signature(build).parameters) - {"dataset_dir", "split", "spatial_size"}
    for option in options or {}:
        if option not in accepted:
            raise InputError("dataset options", f"{kind!r} datasets take no option {option!r}; "
                             f"they take {sorted(accepted)}")


def make_dataset(
    kind: str,
    dataset_dir: str | os.PathLike,
    split: str = "train",
    spatial_size: Sequence[int] | None = None,
    options: Mapping[str, object] | None = None,
    **kwargs,
):
    """Build the dataset of ``kind`` (see the module table) for ``split``; other keywords go to its builder.

    ``spatial_size`` None keeps the kind's protocol grid (ACDC 128x128x32, 4D-Lung 128^3). ``options`` are more
    keywords for the builder, as one mapping a config can set from the command line, e.g. a validation split held
    out of ACDC's training patients: ``{"train_range": [1, 80]}`` for training and ``{"test_range": [81, 90]}`` with
    split ``"test"`` for validation. ``{"cycle": {...}}`` (acdc, nifti4d) draws training triplets from the whole
    series instead of the endpoints' only (:mod:`scripts.datasets.cycle_triplets`; absent: the paper's protocol).

    Raises:
        InputError: naming the kind or the folder when unknown or missing, or an option the kind's builder does
            not take.
    """
    if kind not in KINDS:
        raise InputError("dataset", f"unknown dataset kind {kind!r}; choose one of {sorted(KINDS)}")
    if not os.path.isdir(dataset_dir):
        raise InputError(dataset_dir, f"dataset folder not found (dataset kind {kind!r})")
    module, name = KINDS[kind].split(":")
    build = getattr(importlib.import_module(module), name)
    check_options(kind, build, options)
    kwargs.update(options or {})
    if spatial_size is not None:
        kwargs["spatial_size"] = tuple(spatial_size)
    return build(dataset_dir, split=split, **kwargs)
