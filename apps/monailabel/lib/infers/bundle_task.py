"""What the app's infer tasks share: the bundle's package on ``sys.path``, the objects of its
``configs/inference.json`` (the ``inferer``, the motion ``region``), the request parameters every task takes, checked
as data, and refused requests answered as HTTP 422 naming the parameter.

Request parameters are data: each task's ``check`` types and checks every one (:func:`check_common` for ``image``,
``device``, the writer's options and ``logging``) before MONAI Label's pipeline or the bundle config sees it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

logger = logging.getLogger(__name__)

REQUEST_DEVICES = "cpu, cuda or cuda:N"
_CUDA = re.compile(r"cuda(?::\d{1,3})?")
_EXTENSIONS = (".nii.gz", ".nii")
_DTYPES = ("float32",)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# command-line flags the bundle's readers and checks name, given to a client as its request parameters
_FLAGS = re.compile(r"--(t|start_frame|end_frame|upsample|cyclic|series)\b")


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


def check_common(request: dict[str, Any]) -> dict[str, Any]:
    """The parameters every task takes, each checked and typed: ``image`` / ``end_image`` (paths as strings,
    ``end_image`` None when absent), ``series`` (of a DICOM folder holding a whole study, the series to read:
    :func:`scripts.utils.args.parse_series`; None when absent), ``device`` (``cpu``, ``cuda`` or ``cuda:N``), the writer's ``result_extension`` /
    ``result_dtype`` and ``logging`` from allow-lists.

    Raises:
        InputError: naming the request parameter (``image``, ``device``, ...), never a command-line flag.
    """
    from scripts.utils.args import parse_path, parse_series
    from scripts.utils.errors import InputError

    image, end_image = request.get("image"), request.get("end_image")
    if not isinstance(image, (str, os.PathLike)) or not str(image):
        raise InputError("image", f"expected the path of a 4D NIfTI, a DICOM folder or a 3D volume, got {image!r}")
    checked = {"image": str(parse_path(image, "image")),
               "end_image": None if end_image in (None, "") else str(parse_path(end_image, "end_image")),
               "series": parse_series(request.get("series"), "series")}
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
    command-line flag name (``--t``, ``--upsample``) in a reader's error is given as the request parameter."""
    from scripts.utils.errors import InputError

    error = InputError(err.source.removeprefix("--"), _FLAGS.sub(r"\1", err.problem))
    try:
        from fastapi import HTTPException
    except ImportError:
        return error
    return HTTPException(status_code=422, detail=str(error))


def _refinement_weights(parser) -> list[str]:
    """``[the neighbour refinement's weights file]`` where the config runs it (its ``neighbour_refiner`` is not
    disabled), else ``[]``."""
    refiner = parser.get_parsed_content("neighbour_refiner")
    return [] if refiner is None else [str(refiner.checkpoint)]


class BundleTask(BasicInferTask):
    """An image-to-image infer task run by the bundle's own inference objects.

    Args:
        bundle_root: the bundle folder (``configs/inference.json``, ``models/``).
        config_overrides: ids of ``configs/inference.json`` -> values (e.g. ``checkpoint``, ``network_def``),
            applied before the config's objects are built.
        description: shown by MONAI Label's ``/info``.
        defaults: the task's request defaults (MONAI Label's ``config``, shown by ``/info``).

    Subclasses give ``check(request)`` (every parameter typed and checked, the bundle's ``InputError`` naming the
    parameter otherwise), the transforms and ``run_inferer``.
    """

    def __init__(self, bundle_root: str | os.PathLike, config_overrides: dict | None, description: str,
                 defaults: dict[str, Any]):
        self.bundle_root = use_bundle(bundle_root)
        self.config_overrides = dict(config_overrides or {})
        parser = self._parser()
        # the weights of both jobs: a change to either file on disk rebuilds the inferer
        self.weights = list(dict.fromkeys(str(parser.get_parsed_content(k)) for k in ("checkpoint", "cine_checkpoint")))
        self.watched = [*self.weights, *_refinement_weights(parser)]  # and the neighbour refinement's, where it runs
        super().__init__(
            path=self.weights[0],
            network=None,
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=description,
            input_key="image",
            output_label_key="pred",
            config=dict(defaults),
        )
        self._interpolators: dict[str, tuple[Any, tuple[float, ...]]] = {}
        self._region = None

    def _parser(self, **overrides):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(self.bundle_root / "configs" / "inference.json")
        parser.update({"bundle_root": str(self.bundle_root), **self.config_overrides, **overrides})
        return parser

    def interpolator(self, device: str):
        """The config's ``SeriesInterpolator`` on ``device`` (``cpu``, ``cuda``, ``cuda:N``: the checked request value
        or MONAI Label's fallback to ``cpu``), rebuilt when a weights file of either job (or of the neighbour
        refinement it runs) changes on disk."""
        if not isinstance(device, str) or not (device == "cpu" or _CUDA.fullmatch(device)):
            raise RuntimeError(f"unchecked device {device!r}")  # check_common guarantees this; never parse it
        mtime = tuple(os.stat(path).st_mtime for path in self.watched)
        cached = self._interpolators.get(device)
        if cached is None or cached[1] != mtime:
            logger.info("loading %s on %s", ", ".join(self.watched), device)
            self._interpolators[device] = (self._parser(device=device).get_parsed_content("inferer"), mtime)
        return self._interpolators[device][0]

    def region(self):
        """The config's motion region (``MotionRegion``): where the network runs, as ``interpolate`` runs it."""
        if self._region is None:
            self._region = self._parser().get_parsed_content("region")
        return self._region

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, request: dict[str, Any], callbacks=None):
        """Check the request's parameters (:meth:`check`) before anything sees them, then run the task; a bad request
        or input raises :func:`request_error` (HTTP 422 on the server) naming the parameter or file."""
        from scripts.utils.errors import InputError

        try:
            request = {**request, **self.check({**self._config, **request})}
            return super().__call__(request, callbacks)
        except InputError as err:
            raise request_error(err) from err

    def clear_cache(self):
        self._interpolators.clear()
        self._region = None
