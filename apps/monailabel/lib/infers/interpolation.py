"""MONAI Label infer task serving the bundle's student as an image-to-image task.

The request names a 4D series (``image``: a 4D NIfTI file or a DICOM folder, as the bundle's own inference reads
them) or two 3D volumes (``image`` and ``end_image``), and the parameters ``t`` (default 0.5), ``start_frame``
(default 0) and ``end_frame`` (default -1, the last). The result is one 3D float32 NIfTI volume on the input's grid,
in the input's intensity units: the phase at ``t`` between the two endpoint frames, computed exactly as
``configs/inference.json`` computes it (the config's ``SeriesInterpolator`` with ``models/model.pt``: joint min-max of
the endpoints to [0, 1], the student, back to the input's units). The result JSON repeats ``t``, the endpoint frames
and the intensity range.

MONAI Label's ``BundleInferTask`` would treat the output as a label map (labels from the output ``channel_def``,
argmax-style post-processing), so this task subclasses ``BasicInferTask`` and calls the bundle's engine instead.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import MetaTensor
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

logger = logging.getLogger(__name__)

DEFAULTS = {"t": 0.5, "start_frame": 0, "end_frame": -1, "result_extension": ".nii.gz", "result_dtype": "float32"}


def use_bundle(bundle_root: str | os.PathLike) -> Path:
    """Put ``bundle_root`` first on ``sys.path`` so ``import scripts`` finds this bundle's package.

    Raises:
        RuntimeError: when a ``scripts`` package from another folder is already imported (two bundles in one
            process would silently share one of them).
    """
    root = Path(bundle_root).resolve()
    if not (root / "configs" / "inference.json").is_file():
        raise FileNotFoundError(f"{root}: not a bundle folder (no configs/inference.json)")
    loaded = sys.modules.get("scripts")
    loaded_from = Path(loaded.__file__).resolve().parents[1] if loaded is not None and loaded.__file__ else None
    if loaded_from is not None and loaded_from != root:
        raise RuntimeError(f"{root}: another bundle's scripts package is already imported (from {loaded_from})")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


class LoadEndpointsd:
    """Read the request's series, pick its endpoint frames and scale them jointly to [0, 1].

    Sets ``image`` to ``(2, X, Y, Z)`` float32 (I0, I1) in [0, 1], ``image_meta_dict`` (``affine``: voxel -> RAS mm,
    ``filename_or_obj``), ``intensity_scale`` (the :class:`~scripts.transforms.intensity.IntensityScale` to map back),
    ``t`` (one validated time point) and ``result`` (what the result JSON reports).
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from scripts.inference.inputs import load_input
        from scripts.inference.times import resolve_times
        from scripts.transforms.intensity import IntensityScale
        from scripts.utils.errors import InputError

        image, end_image = data.get("image"), data.get("end_image")
        if not isinstance(image, (str, os.PathLike)) or not str(image):
            raise InputError("image", f"expected the path of a 4D NIfTI, a DICOM folder or a 3D volume, got {image!r}")
        source = [str(image), str(end_image)] if end_image else str(image)
        times = resolve_times(data["t"], None)
        if len(times) != 1:
            raise InputError("t", f"one time point per request, got {times}")
        loaded = load_input(source, data["start_frame"], data["end_frame"])
        series = loaded.series
        endpoints = np.stack([series.array[..., loaded.start], series.array[..., loaded.end]])
        scale = IntensityScale.of(endpoints, series.source)
        data.update(
            image=scale.to_unit(endpoints).astype(np.float32),
            image_meta_dict={"affine": series.affine, "filename_or_obj": series.source},
            intensity_scale=scale,
            t=times[0],
            result={"t": times[0], "start_frame": loaded.start, "end_frame": loaded.end,
                    "intensity_range": [scale.lo, scale.hi], "grid": list(series.array.shape[:3])},
        )
        return data


class RestoreUnitsd:
    """Map ``pred`` (``(X, Y, Z)`` in [0, 1]) back to the input's units as a MetaTensor carrying the input's affine."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        volume = data["intensity_scale"].from_unit(np.asarray(data["pred"], dtype=np.float32))
        data["pred"] = MetaTensor(volume, affine=data["image_meta_dict"]["affine"])
        return data


class Interpolation(BasicInferTask):
    """Synthesise the phase at ``t`` between two frames of a 4D series with the bundle's student.

    Args:
        bundle_root: the bundle folder (``configs/inference.json``, ``models/``).
        config_overrides: ids of ``configs/inference.json`` -> values (e.g. ``checkpoint``, ``network_def``),
            applied before the config's ``inferer`` is built.
        description: shown by MONAI Label's ``/info``.
    """

    def __init__(self, bundle_root: str | os.PathLike, config_overrides: dict | None = None,
                 description: str = "Synthesise the phase at time t between two frames of a 4D series (TMSDF-KD)"):
        self.bundle_root = use_bundle(bundle_root)
        self.config_overrides = dict(config_overrides or {})
        super().__init__(
            path=str(self._parser().get_parsed_content("checkpoint")),
            network=None,
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=description,
            input_key="image",
            output_label_key="pred",
            config=dict(DEFAULTS),
        )
        self._interpolators: dict[str, tuple[Any, float]] = {}

    def _parser(self, **overrides):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(self.bundle_root / "configs" / "inference.json")
        parser.update({"bundle_root": str(self.bundle_root), **self.config_overrides, **overrides})
        return parser

    def interpolator(self, device: str):
        """The config's ``SeriesInterpolator`` on ``device``, rebuilt when the weights file changes on disk."""
        mtime = os.stat(self.path[0]).st_mtime
        cached = self._interpolators.get(device)
        if cached is None or cached[1] != mtime:
            logger.info("loading %s on %s", self.path[0], device)
            self._interpolators[device] = (self._parser(device=device).get_parsed_content("inferer"), mtime)
        return self._interpolators[device][0]

    def pre_transforms(self, data=None):
        return [LoadEndpointsd()]

    def post_transforms(self, data=None):
        return [RestoreUnitsd()]

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        """Set ``pred`` to the student's volume at ``t``: ``(X, Y, Z)`` float32 in [0, 1] (``synthesise``)."""
        i0, i1 = data[self.input_key]
        data[self.output_label_key] = self.interpolator(device).synthesise(i0, i1, [data["t"]])[..., 0]
        return data

    def clear_cache(self):
        self._interpolators.clear()
