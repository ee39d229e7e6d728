"""MONAI Label infer task serving the bundle's student as an image-to-image task.

The request names a 4D series (``image``: a 4D NIfTI file or a DICOM folder, as the bundle's own inference reads
them) or two 3D volumes (``image`` and ``end_image``), and the parameters ``t`` (default 0.5), ``start_frame``
(default 0) and ``end_frame`` (default -1, the last). The result is one 3D float32 NIfTI volume on the input's grid,
in the input's intensity units: the phase at ``t`` between the two endpoint frames, computed exactly as
``configs/inference.json`` computes it (the config's ``SeriesInterpolator`` with ``models/model.pt``: joint min-max of
the endpoints to [0, 1], the student where the series moves (the config's motion ``region``, the blend of the
endpoints around it), back to the input's units). The result JSON repeats ``t``, the endpoint frames and the
intensity range.

Request parameters are data: :func:`check_request` types and checks each one (``t`` one number in [0, 1],
frames whole numbers; ``device``, the writer's options: :func:`~.bundle_task.check_common`) before MONAI Label's
pipeline or the bundle config sees them; a refused request answers HTTP 422 with ``<parameter>: <problem>``.

MONAI Label's ``BundleInferTask`` would treat the output as a label map (labels from the output ``channel_def``,
argmax-style post-processing), so this task subclasses ``BasicInferTask`` and calls the bundle's engine instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from monai.data import MetaTensor

from .bundle_task import BundleTask, check_common, request_error, use_bundle

__all__ = ["DEFAULTS", "Interpolation", "check_request", "request_error", "use_bundle"]

logger = logging.getLogger(__name__)

DEFAULTS = {"t": 0.5, "start_frame": 0, "end_frame": -1, "result_extension": ".nii.gz", "result_dtype": "float32"}


def check_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters, each checked and typed before anything else sees it (they are data, never code).

    Returns :func:`~.bundle_task.check_common`'s (``image``, ``end_image``, ``device``, the writer's options) with
    ``t`` (one float in [0, 1]) and ``start_frame`` / ``end_frame`` (ints).

    Raises:
        InputError: naming the request parameter (``t``, ``device``, ...), never a command-line flag.
    """
    from scripts.utils.args import parse_int, parse_times
    from scripts.utils.errors import InputError

    checked = check_common(request)
    times = parse_times(request.get("t"), "t")
    if len(times) != 1:
        raise InputError("t", f"one time point per request, got {times}")
    if not 0.0 <= times[0] <= 1.0:
        raise InputError("t", f"time points must lie in [0, 1] (0 = start_frame, 1 = end_frame), got {times[0]}")
    checked["t"] = times[0]
    for name in ("start_frame", "end_frame"):
        checked[name] = parse_int(request.get(name), name)
    return checked


class LoadEndpointsd:
    """Read the request's series and pick its endpoint frames.

    Expects the parameters :func:`check_request` returned. Sets ``series`` (the bundle's ``Series4D``, ``(X, Y, Z, T)``
    in the input's units), ``start`` / ``end`` (0-based endpoint frames), ``intensity_scale`` (the endpoints' joint
    min-max, an :class:`~scripts.transforms.intensity.IntensityScale`), ``image_meta_dict`` (``affine``: voxel -> RAS
    mm, ``filename_or_obj``) and ``result`` (what the result JSON reports).
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from scripts.inference.inputs import read_series
        from scripts.inference.workflow import check_grid
        from scripts.io.nifti_read import frame_endpoints
        from scripts.transforms.intensity import IntensityScale

        source = [data["image"], data["end_image"]] if data["end_image"] else data["image"]
        series = read_series(source, data["series"])
        check_grid(series)
        start, end = frame_endpoints(series.num_frames, data["start_frame"], data["end_frame"],
                                     names=("start_frame", "end_frame"))
        scale = IntensityScale.of(np.stack([series.array[..., start], series.array[..., end]]), series.source)
        data.update(
            series=series, start=start, end=end, intensity_scale=scale,
            image_meta_dict={"affine": series.affine, "filename_or_obj": series.source},
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


class Interpolation(BundleTask):
    """Synthesise the phase at ``t`` between two frames of a 4D series with the bundle's student.

    Args: ``bundle_root``, ``config_overrides``, ``description`` as :class:`~.bundle_task.BundleTask`'s.
    """

    def __init__(self, bundle_root: str | os.PathLike, config_overrides: dict | None = None,
                 description: str = "Synthesise the phase at time t between two frames of a 4D series (TMSDF-KD)"):
        super().__init__(bundle_root, config_overrides, description, DEFAULTS)

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        return check_request(request)

    def pre_transforms(self, data=None):
        return [LoadEndpointsd()]

    def post_transforms(self, data=None):
        return [RestoreUnitsd()]

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        """Set ``pred`` to the volume at ``t``: ``(X, Y, Z)`` float32 in [0, 1], as ``interpolate`` makes it
        (:func:`~scripts.inference.workflow.synthesise_between`: the student in the motion region)."""
        from scripts.inference.workflow import check_finite, synthesise_between

        interpolator = self.interpolator(device)
        frames = synthesise_between(interpolator, self.region(), data["series"], data["start"], data["end"],
                                    [data["t"]], data["intensity_scale"])
        check_finite(frames, interpolator.checkpoint)
        data[self.output_label_key] = frames[..., 0]
        data["result"]["image_warp"] = interpolator.network.image_warp
        return data
