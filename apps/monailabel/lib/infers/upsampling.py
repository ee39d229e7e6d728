"""MONAI Label infer task serving the bundle's whole-cine job: a 4D series made ``upsample`` times finer in time.

The request names a 4D series (``image``: a 4D NIfTI file or a DICOM folder of one acquisition, as the bundle's own
inference reads them) and the parameters ``upsample`` (K, default 2: K - 1 new frames between every two consecutive
acquired frames) and ``cyclic`` (true: also between the last frame and the first, for a heart or breathing cycle;
false: not; default auto, as the command line's ``--cyclic``: true unless the input says it is not one cycle, a DICOM
series timed by a clock or by trigger times over several heartbeats). The result is one 4D float32 NIfTI cine on the input's grid, in the input's intensity units, with the acquired
frames exactly as read and the new frames between them, pixdim[4] the acquired time step / K in ms when the input's
frame times are known: what ``python -m scripts interpolate --input <series> --upsample K`` writes as
``upsampled_4d.nii.gz`` (:func:`~scripts.inference.workflow.upsample_cine`: the whole series' min-max, the student in
the motion region, each pair's frames refined with the acquired frames around it where the config's neighbour
refinement applies). The result JSON gives the factor, the frame counts, the time step, the intensity range, the image
warp and whether the refinement ran.

MONAI Label's own writer takes a 4D array for a multi-channel label map (``.seg.nrrd``), so this task writes its
cine with the bundle's NIfTI writer.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from .bundle_task import BundleTask, check_common

__all__ = ["DEFAULTS", "Upsampling", "check_upsample_request"]

logger = logging.getLogger(__name__)

DEFAULTS = {"upsample": 2, "cyclic": "auto", "result_extension": ".nii.gz", "result_dtype": "float32"}


def check_upsample_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters, each checked and typed before anything else sees it (they are data, never code).

    Returns :func:`~.bundle_task.check_common`'s (``image``, ``device``, the writer's options) with ``upsample`` (an
    int >= 2) and ``cyclic`` (a bool, or None for auto: decided from the series by
    :func:`~scripts.inference.workflow.resolve_cyclic`).

    Raises:
        InputError: naming the request parameter (``upsample``, ``cyclic``, ...); ``end_image`` is refused (the job
            reads one whole series).
    """
    from scripts.utils.args import parse_cyclic, parse_int
    from scripts.utils.errors import InputError

    checked = check_common(request)
    if checked.pop("end_image") is not None:
        raise InputError("end_image", "the upsampling task reads one 4D series (image); two volumes are the "
                                      "interpolation task's job")
    checked["upsample"] = parse_int(request.get("upsample"), "upsample", minimum=2)
    checked["cyclic"] = parse_cyclic(request.get("cyclic"), "cyclic")
    return checked


class LoadSeriesd:
    """Read the request's series. Sets ``series`` (the bundle's ``Series4D``, ``(X, Y, Z, T)`` in the input's units)
    and ``image_meta_dict`` (``affine``: voxel -> RAS mm, ``filename_or_obj``)."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from scripts.inference.inputs import read_series
        from scripts.inference.workflow import check_grid

        series = read_series(data["image"], data["series"])
        check_grid(series)
        data.update(series=series, image_meta_dict={"affine": series.affine, "filename_or_obj": series.source})
        return data


class Upsampling(BundleTask):
    """Make a whole 4D series ``upsample`` times finer in time with the bundle's student (module docstring).

    Args: ``bundle_root``, ``config_overrides``, ``description`` as :class:`~.bundle_task.BundleTask`'s.
    """

    def __init__(self, bundle_root: str | os.PathLike, config_overrides: dict | None = None,
                 description: str = "Make a whole 4D series K times finer in time: a cine with K times the frames "
                                    "(TMSDF-KD)"):
        super().__init__(bundle_root, config_overrides, description, DEFAULTS)

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        return check_upsample_request(request)

    def pre_transforms(self, data=None):
        return [LoadSeriesd()]

    def post_transforms(self, data=None):
        return []

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        """Set ``pred`` to the cine ``(X, Y, Z, M)`` float32 in the input's units and ``result`` to what the result
        JSON reports (:func:`~scripts.inference.workflow.upsample_cine`, as ``interpolate --upsample`` runs it)."""
        from scripts.inference.workflow import check_finite, resolve_cyclic, upsample_cine

        interpolator = self.interpolator(device)
        series = data["series"]
        data["cyclic"] = resolve_cyclic(data["cyclic"], series)
        cine = upsample_cine(interpolator, self.region(), series, data["upsample"], data["cyclic"])
        network, checkpoint = interpolator.job(upsample=True)
        check_finite(cine.cine, checkpoint)
        data[self.output_label_key] = cine.cine
        data["time_step_ms"] = cine.time_step_ms
        data["result"] = {
            "upsample": data["upsample"], "cyclic": data["cyclic"], "frames_in": series.num_frames,
            "frames_out": len(cine.plan), "time_step_ms": cine.time_step_ms,
            "intensity_range": [cine.scale.lo, cine.scale.hi], "grid": list(series.array.shape[:3]),
            "image_warp": network.image_warp,
            "neighbour_refinement": interpolator.refines(series.num_frames),
            "retiming": interpolator.retimes(data["cyclic"], series.gated),
        }
        return data

    def writer(self, data: dict[str, Any], extension=None, dtype=None):
        """Write the cine as one 4D float32 NIfTI (the input's affine, pixdim[4] its time step in ms when known) to a
        new temporary file, as MONAI Label's writer names its results; returns ``(path, result JSON)``."""
        from scripts.io.nifti_write import write_nifti_series

        suffix = extension or data["result_extension"]
        handle, path = tempfile.mkstemp(suffix=suffix)
        os.close(handle)
        try:
            write_nifti_series(data[self.output_label_key], data["image_meta_dict"]["affine"], path,
                               data["time_step_ms"], overwrite=True)
        except BaseException:
            os.remove(path)  # no partly written result left behind
            raise
        return path, data["result"]
