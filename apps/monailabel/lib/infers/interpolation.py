"""MONAI Label infer task serving the bundle's student as an image-to-image task.

The request names a 4D series (``image``: a 4D NIfTI file or a DICOM folder, as the bundle's own inference reads
them) or two 3D volumes (``image`` and ``end_image``), and the parameters ``t`` (default 0.5), ``start_frame``
(default 0) and ``end_frame`` (default -1, the last). The result is one 3D float32 NIfTI volume on the input's grid,
in the input's intensity units: the phase at ``t`` between the two endpoint frames, computed exactly as
``configs/inference.json`` computes it (the config's ``SeriesInterpolator`` with ``models/model.pt``: joint min-max of
the endpoints to [0, 1], the student, back to the input's units). The result JSON repeats ``t``, the endpoint frames
and the intensity range.

Request parameters are data: :func:`check_request` types and checks each one (``t`` one number in [0, 1],
frames whole numbers, ``device`` from an allow-list, the writer's options from allow-lists) before MONAI Label's
pipeline or the bundle config sees them; a refused request answers HTTP 422 with ``<parameter>: <problem>``.

MONAI Label's ``BundleInferTask`` would treat the output as a label map (labels from the output ``channel_def``,
argmax-style post-processing), so this task subclasses ``BasicInferTask`` and calls the bundle's engine instead.
"""

from __future__ import annotations

import logging
import os
import re
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


REQUEST_DEVICES = "cpu, cuda or cuda:N"
_CUDA = re.compile(r"cuda(?::\d{1,3})?")
_EXTENSIONS = (".nii.gz", ".nii")
_DTYPES = ("float32",)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters, each checked and typed before anything else sees it (they are data, never code).

    Returns ``image`` / ``end_image`` (paths as strings, ``end_image`` None when absent), ``t`` (one float in
    [0, 1]), ``start_frame`` / ``end_frame`` (ints), ``device`` (``cpu``, ``cuda`` or ``cuda:N``) and the writer's
    ``result_extension`` / ``result_dtype`` and ``logging`` from allow-lists.

    Raises:
        InputError: naming the request parameter (``t``, ``device``, ...), never a command-line flag.
    """
    from scripts.utils.args import parse_int, parse_path, parse_times
    from scripts.utils.errors import InputError

    image, end_image = request.get("image"), request.get("end_image")
    if not isinstance(image, (str, os.PathLike)) or not str(image):
        raise InputError("image", f"expected the path of a 4D NIfTI, a DICOM folder or a 3D volume, got {image!r}")
    checked = {"image": str(parse_path(image, "image")),
               "end_image": None if end_image in (None, "") else str(parse_path(end_image, "end_image"))}
    times = parse_times(request.get("t"), "t")
    if len(times) != 1:
        raise InputError("t", f"one time point per request, got {times}")
    if not 0.0 <= times[0] <= 1.0:
        raise InputError("t", f"time points must lie in [0, 1] (0 = start_frame, 1 = end_frame), got {times[0]}")
    checked["t"] = times[0]
    for name in ("start_frame", "end_frame"):
        checked[name] = parse_int(request.get(name), name)
    device = request.get("device", "cuda")
    device = device[0] if isinstance(device, (list, tuple)) and device else device  # the task's config lists them
    if not isinstance(device, str) or not (device == "cpu" or _CUDA.fullmatch(device)):
        raise InputError("device", f"must be {REQUEST_DEVICES}; got {device!r}")
    checked["device"] = device
    for name, allowed in (("result_extension", _EXTENSIONS), ("result_dtype", _DTYPES)):
        if request.get(name) not in allowed:
            raise InputError(name, f"must be one of {', '.join(allowed)}; got {request.get(name)!r}")
    level = request.get("logging", "INFO")
    if not isinstance(level, str) or level.upper() not in _LOG_LEVELS:
        raise InputError("logging", f"must be one of {', '.join(_LOG_LEVELS)}; got {level!r}")
    return checked


def request_error(err: Exception) -> Exception:
    """The error a client gets for a refused request: HTTP 422 with ``<parameter>: <problem>`` when the server's
    FastAPI is importable (what MONAI Label's endpoint passes on), else the :class:`InputError` itself; a
    command-line flag name (``--t``) in a reader's error is given as the request parameter (``t``)."""
    from scripts.utils.errors import InputError

    error = InputError(err.source.removeprefix("--"), err.problem.replace("--start_frame", "start_frame")
                       .replace("--end_frame", "end_frame").replace("--t", "t"))
    try:
        from fastapi import HTTPException
    except ImportError:
        return error
    return HTTPException(status_code=422, detail=str(error))


class LoadEndpointsd:
    """Read the request's series, pick its endpoint frames and scale them jointly to [0, 1].

    Expects the parameters :func:`check_request` returned. Sets ``image`` to ``(2, X, Y, Z)`` float32 (I0, I1) in
    [0, 1], ``image_meta_dict`` (``affine``: voxel -> RAS mm, ``filename_or_obj``), ``intensity_scale`` (the
    :class:`~scripts.transforms.intensity.IntensityScale` to map back) and ``result`` (what the result JSON reports).
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from scripts.inference.inputs import read_series
        from scripts.inference.warp_choice import span_fraction
        from scripts.io.nifti_read import frame_endpoints
        from scripts.transforms.intensity import IntensityScale

        source = [data["image"], data["end_image"]] if data["end_image"] else data["image"]
        series = read_series(source)
        start, end = frame_endpoints(series.num_frames, data["start_frame"], data["end_frame"],
                                     names=("start_frame", "end_frame"))
        endpoints = np.stack([series.array[..., start], series.array[..., end]])
        scale = IntensityScale.of(endpoints, series.source)
        data.update(
            image=scale.to_unit(endpoints).astype(np.float32),
            image_meta_dict={"affine": series.affine, "filename_or_obj": series.source},
            intensity_scale=scale,
            span=span_fraction(start, end, series.num_frames),  # chooses the image warp, as interpolate does
            result={"t": data["t"], "start_frame": start, "end_frame": end,
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
        """The config's ``SeriesInterpolator`` on ``device`` (``cpu``, ``cuda``, ``cuda:N``: the checked request value
        or MONAI Label's fallback to ``cpu``), rebuilt when the weights file changes on disk."""
        if not isinstance(device, str) or not (device == "cpu" or _CUDA.fullmatch(device)):
            raise RuntimeError(f"unchecked device {device!r}")  # check_request guarantees this; never parse it
        mtime = os.stat(self.path[0]).st_mtime
        cached = self._interpolators.get(device)
        if cached is None or cached[1] != mtime:
            logger.info("loading %s on %s", self.path[0], device)
            self._interpolators[device] = (self._parser(device=device).get_parsed_content("inferer"), mtime)
        return self._interpolators[device][0]

    def __call__(self, request: dict[str, Any], callbacks=None):
        """Check the request's parameters (:func:`check_request`) before anything sees them, then run the task; a
        bad request or input raises :func:`request_error` (HTTP 422 on the server) naming the parameter or file."""
        from scripts.utils.errors import InputError

        try:
            request = {**request, **check_request({**self._config, **request})}
            return super().__call__(request, callbacks)
        except InputError as err:
            raise request_error(err) from err

    def pre_transforms(self, data=None):
        return [LoadEndpointsd()]

    def post_transforms(self, data=None):
        return [RestoreUnitsd()]

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        """Set ``pred`` to the student's volume at ``t``: ``(X, Y, Z)`` float32 in [0, 1] (``synthesise``)."""
        i0, i1 = data[self.input_key]
        interpolator = self.interpolator(device)
        data[self.output_label_key] = interpolator.synthesise(i0, i1, [data["t"]], data["span"])[..., 0]
        data["result"]["image_warp"] = interpolator.network.image_warp
        return data

    def clear_cache(self):
        self._interpolators.clear()
