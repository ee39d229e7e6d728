"""Export: MONAI's ckpt_export scripts the student with t as an input (traced with ``--use_trace`` it bakes t = 0.5);
scripts.inference.export keeps t an input in traced TorchScript and ONNX.

A small random-init student (``tests/small_bundle.py``) on a 16 x 16 x 8 grid keeps each export to a few seconds. Every comparison is against the eager network with the same weights, and each checks that ``t``
really changes the output (a graph with ``t`` baked in would match at one ``t`` only).
"""

import json

import numpy as np
import pytest
import torch

from scripts.inference.export import (
    bundle_network,
    example_inputs,
    export,
    export_onnx,
    export_torchscript,
)
from scripts.utils.errors import InputError, OutputExistsError
from scripts.utils.paths import ROOT
from tests.small_bundle import OVERRIDES, save_random_weights

SHAPE = (2, 2, 16, 16, 8)  # batch 2: two different t in one call
TOL = 1e-5


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_weights(tmp_path_factory.mktemp("weights") / "student.pt")


@pytest.fixture(scope="module")
def eager(weights):
    return bundle_network(weights, overrides=OVERRIDES)[0]


def _images():
    torch.manual_seed(2)
    return torch.rand(SHAPE)


def _check_follows_t(run, eager):
    """``run(image, t)`` equals ``eager`` at two sets of t, closer than a twentieth of what changing t changes.

    (A graph with t baked in would be off at one of them by the whole effect of t.) Returns the max abs difference.
    """
    image = _images()
    t_a, t_b = torch.tensor([0.2, 0.7]), torch.tensor([0.9, 0.35])
    with torch.no_grad():
        ref_a, ref_b = eager(image, t_a), eager(image, t_b)
    diff = max(float((torch.as_tensor(run(image, t)) - ref).abs().max()) for t, ref in ((t_a, ref_a), (t_b, ref_b)))
    assert diff < TOL
    assert float((ref_a - ref_b).abs().max()) > 20 * diff
    return diff


def test_ckpt_export_bakes_t_half(weights, eager, tmp_path):
    from monai.bundle import ckpt_export

    target = tmp_path / "model.ts"
    ckpt_export("network_def", filepath=str(target), ckpt_file=str(weights), meta_file=str(ROOT / "configs/metadata.json"),
                config_file=str(ROOT / "configs/inference.json"), use_trace=True, input_shape=list(SHAPE),
                converter_kwargs={"check_trace": False}, **OVERRIDES)
    traced = torch.jit.load(str(target))
    image = _images()
    with torch.no_grad():
        out = traced(image)
        diff = float((out - eager(image, 0.5)).abs().max())
        assert diff < TOL
        assert float((out - eager(image, 0.9)).abs().max()) > 20 * diff  # t is a constant of this graph
    with pytest.raises(RuntimeError, match="expected at most 2 argument"):
        traced(image, torch.tensor([0.9, 0.9]))


def test_ckpt_export_scripts_with_t_as_input(weights, eager, tmp_path):
    """``ckpt_export`` with its default (``torch.jit.script``, no ``--use_trace``) keeps ``t`` and any grid size."""
    from monai.bundle import ckpt_export

    target = tmp_path / "model.ts"
    ckpt_export("network_def", filepath=str(target), ckpt_file=str(weights),
                meta_file=str(ROOT / "configs/metadata.json"), config_file=str(ROOT / "configs/inference.json"), **OVERRIDES)
    scripted = torch.jit.load(str(target))
    assert isinstance(scripted, torch.jit.ScriptModule) and "forward" in scripted.code
    with torch.no_grad():
        _check_follows_t(scripted, eager)
        image = torch.rand(1, 2, 13, 10, 5)  # another size, not a multiple of 8: padded and cropped inside
        assert float((scripted(image, 0.3) - eager(image, 0.3)).abs().max()) < TOL
        assert float((scripted(image) - eager(image)).abs().max()) < TOL  # default t = 0.5
        with pytest.raises(Exception, match=r"image: expected \(B, 2"):
            scripted(torch.rand(1, 3, 8, 8, 8))


@pytest.mark.parametrize("name", ["Student", "Teacher"])
def test_shipped_networks_script_and_match_eager(name):
    """The default-width networks compile with ``torch.jit.script``; the scripted copy matches the eager one,
    intermediates (the fields the losses read) included."""
    import scripts.networks

    torch.manual_seed(3)
    network = getattr(scripts.networks, name)().eval()
    with torch.no_grad():
        for p in network.parameters():  # leave the zero-initialised heads' identity behind
            p.add_(0.01 * torch.randn_like(p))
    scripted = torch.jit.script(network)
    image, t = torch.rand(2, network.num_inputs, 16, 12, 8), torch.tensor([0.25, 0.8])
    with torch.no_grad():
        assert float((scripted(image, t) - network(image, t)).abs().max()) < TOL
        ref, out = network(image, t, intermediates=True), scripted(image, t, True)
        for a, b in zip(ref.phi0 + ref.warped1 + ref.velocity0, out.phi0 + out.warped1 + out.velocity0):
            assert a.shape == b.shape and float((a - b).abs().max()) < TOL


@pytest.fixture(scope="module")
def torchscript_file(weights, tmp_path_factory):
    return export_torchscript(tmp_path_factory.mktemp("ts") / "model.ts", weights, SHAPE, overrides=OVERRIDES)


def test_torchscript_takes_t(torchscript_file, eager):
    traced = torch.jit.load(str(torchscript_file))
    with torch.no_grad():
        _check_follows_t(traced, eager)


@pytest.mark.parametrize("batch", [1, 3])
def test_torchscript_other_batch_sizes(torchscript_file, eager, batch):
    traced = torch.jit.load(str(torchscript_file))
    image, t = _images()[:1].expand(batch, -1, -1, -1, -1), torch.linspace(0.1, 0.9, batch)
    with torch.no_grad():
        assert float((traced(image, t) - eager(image, t)).abs().max()) < TOL


def test_torchscript_embeds_bundle_configs(torchscript_file):
    from monai.data import load_net_with_metadata

    _, meta, extra = load_net_with_metadata(str(torchscript_file), more_extra_files=["inference.json"])
    assert meta["network_data_format"] == json.loads((ROOT / "configs/metadata.json").read_text())["network_data_format"]
    assert json.loads(extra["inference.json"]) == json.loads((ROOT / "configs/inference.json").read_text())


def test_onnx_matches_eager_with_t_input(weights, eager, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    target = export_onnx(tmp_path / "model.onnx", weights, SHAPE, overrides=OVERRIDES)
    model = onnx.load(str(target))
    assert [i.name for i in model.graph.input] == ["image", "t"]
    assert [o.name for o in model.graph.output] == ["pred"]
    assert {p.domain: p.version for p in model.opset_import}[""] == 20
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["inference.json"]) == json.loads((ROOT / "configs/inference.json").read_text())
    assert not list(tmp_path.glob("*.data"))  # one self-contained file
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])

    def run(image, t):
        return session.run(None, {"image": image.numpy(), "t": t.numpy().astype(np.float32)})[0]

    _check_follows_t(run, eager)


def test_export_refuses_to_overwrite(weights, tmp_path):
    target = tmp_path / "model.ts"
    target.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        export_torchscript(target, weights, SHAPE, overrides=OVERRIDES)
    assert target.read_bytes() == b"keep"


@pytest.mark.parametrize("shape", [(1, 3, 16, 16, 8), (1, 2, 16, 16), (1, 2, 0, 16, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(InputError, match="--input_shape"):
        example_inputs(shape)


def test_bad_format(tmp_path):
    with pytest.raises(InputError, match="--format"):
        export("tensorrt", str(tmp_path / "model.plan"))


def test_ckpt_export_scripts_the_neighbour_refinement(tmp_path):
    """The neighbour refinement of whole cines exports as MONAI exports the student: ``ckpt_export neighbour_def``
    scripts it; the file takes ``(volumes, t)`` at any size and equals the eager network with the shipped weights."""
    from monai.bundle import ckpt_export

    from scripts.networks.neighbours import NeighbourRefinement
    from scripts.utils.checkpoint import load_weights

    weights = ROOT / "models" / "neighbour_refinement.pt"
    target = tmp_path / "neighbour_refinement.ts"
    ckpt_export("neighbour_def", filepath=str(target), ckpt_file=str(weights),
                meta_file=str(ROOT / "configs/metadata.json"), config_file=str(ROOT / "configs/inference.json"))
    scripted = torch.jit.load(str(target))
    eager = load_weights(NeighbourRefinement(), weights).eval()
    torch.manual_seed(3)
    for shape in ((2, 5, 32, 32, 4), (1, 5, 22, 30, 3)):  # another size, not a multiple of 4: padded inside
        volumes, t = torch.rand(shape), torch.rand(shape[0])
        with torch.no_grad():
            reference = eager(volumes, t)
            assert torch.allclose(scripted(volumes, t), reference, atol=1e-6)
            assert not torch.allclose(scripted(volumes, 1 - t), reference, atol=1e-4)  # t is an input
    with pytest.raises(Exception, match="expected"):
        scripted(torch.rand(1, 4, 8, 8, 2), torch.rand(1))
