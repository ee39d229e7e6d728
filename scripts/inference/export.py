"""Export the student for deployment: TorchScript and ONNX, both with ``t`` as a second input.

MONAI's ``python -m monai.bundle ckpt_export network_def --use_trace True --input_shape "[1, 2, 32, 32, 16]" ...``
traces ``network_def(image)`` with one example input, so its TorchScript file computes the volume at the forward's
default ``t = 0.5`` only: the trace records ``t`` as a constant (``ckpt_export`` and ``onnx_export`` pass their
converters a single random ``image``; ``torch.jit.trace`` ignores ``example_kwarg_inputs`` when it is also given
``example_inputs``). The functions here trace with ``(image, t)`` instead and write the same kinds of file:

- :func:`export_torchscript`: MONAI's ``convert_to_torchscript`` (traced, checked against the eager network) and
  ``save_net_with_metadata`` (``metadata.json`` and ``inference.json`` embedded, as ``ckpt_export`` does); load it
  with ``torch.jit.load`` and call ``model(image, t)``.
- :func:`export_onnx`: MONAI's ``convert_to_onnx`` (torch's dynamo exporter, opset 20: 5D ``GridSample`` needs
  opset >= 20) checked against onnxruntime; inputs ``image`` ``(B, 2, X, Y, Z)`` and ``t`` ``(B,)`` float32, output
  ``pred`` ``(B, 1, X, Y, Z)``; the bundle's metadata and inference config are stored as ONNX metadata properties.

Both graphs are fixed to the exported spatial shape, the ONNX graph to its batch size too (the network computes its
padding, grid sizes and resampling sizes from the shape as Python numbers, e.g. ``int(s)`` in
``scripts.networks.warping.resize_field``, which ``torch.export`` specialises); the TorchScript trace runs any batch size.
Export at the spatial shape you deploy (sizes that are multiples of 8 keep the padding out of the graph).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from scripts.networks.refine import warm_start
from scripts.utils.atomic import atomic_file
from scripts.utils.errors import InputError
from scripts.utils.paths import ROOT

logger = logging.getLogger(__name__)

DEFAULT_INPUT_SHAPE = (1, 2, 32, 32, 16)
ONNX_OPSET = 20
FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}


def bundle_network(checkpoint: str | os.PathLike | None = None, bundle_root: str | os.PathLike = ROOT,
                   overrides: dict | None = None) -> tuple[torch.nn.Module, dict, dict]:
    """The config's ``network_def`` with its weights, in eval mode, and the metadata and inference config dicts.

    Args:
        checkpoint: the weights (default: the config's ``checkpoint``, ``models/model.pt``).
        bundle_root: the bundle folder holding ``configs/``.
        overrides: config ids -> values applied before parsing (e.g. ``{"channels": [8, 16, 32, 32]}``).
    """
    from monai.bundle import ConfigParser

    configs = Path(bundle_root) / "configs"
    parser = ConfigParser()
    parser.read_config(configs / "inference.json")
    parser.read_meta(configs / "metadata.json")
    parser.update({"bundle_root": str(bundle_root), **(overrides or {})})
    checkpoint = checkpoint or parser.get_parsed_content("checkpoint")
    network = warm_start(parser.get_parsed_content("network_def"), checkpoint)
    config = ConfigParser.load_config_file(configs / "inference.json")
    return network.eval(), parser.get("_meta_"), config


def example_inputs(input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
                   t: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``image`` of ``input_shape`` ``(B, 2, X, Y, Z)`` in [0, 1] and ``t`` ``(B,)`` filled with ``t``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 5 or shape[1] != 2 or min(shape) < 1:
        raise InputError("--input_shape", f"expected [B, 2, X, Y, Z] with positive sizes, got {list(input_shape)}")
    return torch.rand(shape), torch.full((shape[0],), float(t))


def export_torchscript(filepath: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                       input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE, overwrite: bool = False,
                       bundle_root: str | os.PathLike = ROOT, overrides: dict | None = None) -> Path:
    """Trace the student with ``(image, t)`` and save it with the bundle's metadata and inference config.

    The trace is compared with the eager network on the example inputs (MONAI ``convert_to_torchscript``,
    ``rtol=1e-4, atol=1e-5``); the file appears only when that passes. Returns ``filepath``.
    """
    from monai.data import save_net_with_metadata
    from monai.networks.utils import convert_to_torchscript

    inputs = list(example_inputs(input_shape))
    with atomic_file(filepath, overwrite=overwrite) as tmp:
        network, meta, config = bundle_network(checkpoint, bundle_root, overrides)
        with warnings.catch_warnings():  # the trace fixes shape-derived numbers, as the module docstring says
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # verify=True compares the trace with the eager network; the tracer's own check_trace (three more
            # traced runs) would only triple the time
            traced = convert_to_torchscript(network, inputs=inputs, use_trace=True, verify=True,
                                            device=torch.device("cpu"), rtol=1e-4, atol=1e-5, check_trace=False)
        save_net_with_metadata(traced, str(tmp), meta_values=meta, include_config_vals=False, append_timestamp=False,
                               more_extra_files={"inference.json": json.dumps(config).encode()})
    logger.info("wrote %s (TorchScript, forward(image %s, t (B,)))", filepath, list(input_shape))
    return Path(filepath)


def export_onnx(filepath: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE, overwrite: bool = False,
                bundle_root: str | os.PathLike = ROOT, overrides: dict | None = None) -> Path:
    """Export the student to one ONNX file (opset 20, inputs ``image`` and ``t``, output ``pred``).

    The graph is run in onnxruntime on the example inputs and compared with the eager network (MONAI
    ``convert_to_onnx``, ``rtol=1e-4, atol=1e-5``); the file appears only when that passes. Needs ``onnx``,
    ``onnxscript`` and ``onnxruntime``. Returns ``filepath``.
    """
    import onnx
    from monai.networks.utils import convert_to_onnx

    inputs = list(example_inputs(input_shape))
    with atomic_file(filepath, overwrite=overwrite) as tmp:
        network, meta, config = bundle_network(checkpoint, bundle_root, overrides)
        model = convert_to_onnx(network, inputs=inputs, input_names=["image", "t"],
                                output_names=["pred"], opset_version=ONNX_OPSET, filename=str(tmp), verify=True,
                                device=torch.device("cpu"), use_ort=True, rtol=1e-4, atol=1e-5, external_data=False)
        onnx.helper.set_model_props(model, {"metadata.json": json.dumps(meta), "inference.json": json.dumps(config)})
        onnx.save(model, str(tmp))
    logger.info("wrote %s (ONNX opset %d, inputs image %s and t (B,))", filepath, ONNX_OPSET, list(input_shape))
    return Path(filepath)


def export(format: str = "torchscript", filepath: str | None = None, model: str | None = None,
           input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE, overwrite: bool = False) -> str:
    """Export the student with ``t`` as an input (see this module's docstring for why not plain ``ckpt_export``).

    Args:
        format: ``torchscript`` or ``onnx``.
        filepath: output file (default ``models/model.ts`` or ``models/model.onnx``).
        model: the student's weights (default ``models/model.pt``).
        input_shape: ``[B, 2, X, Y, Z]`` the exported graph is fixed to.
        overwrite: replace ``filepath`` if it exists.
    """
    if format not in FORMATS:
        raise InputError("--format", f"must be one of {sorted(FORMATS)}, got {format!r}")
    filepath = filepath or str(ROOT / "models" / f"model{FORMATS[format]}")
    writer = export_torchscript if format == "torchscript" else export_onnx
    return str(writer(filepath, model, input_shape, overwrite=overwrite))
