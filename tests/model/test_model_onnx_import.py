"""The ONNX importer against onnx's own reference evaluator (the key correctness test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from reidctl.errors import ModelError
from reidctl.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OnnxGraphModule,
    load_onnx_module,
    read_onnx_graph,
)
from reidctl.model.backbones import OSNET_CUT, build_osnet_x0_25
from tests.model.helpers import seeded_images


class BatchNormalization(OpRun):
    """Inference-mode BatchNormalization, as the ONNX spec defines a one-output BN.

    onnx.reference's BatchNormalization-9 blends batch statistics into the running
    ones whenever ``momentum`` is set (and the schema default sets it), which is not
    what the exporter (torch, eval mode) meant; this overrides it for the test.
    """

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, epsilon=None, **_):  # noqa: ANN001, ANN003, ANN202
        eps = 1e-5 if epsilon is None else epsilon
        return (((x - mean) / np.sqrt(var + eps) * scale + bias).astype(x.dtype),)


@pytest.fixture(scope="module")
def reference(osnet_weights: Path) -> tuple[ReferenceEvaluator, dict[str, np.ndarray]]:
    model = onnx.load(str(osnet_weights))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return ReferenceEvaluator(model, new_ops=[BatchNormalization]), inits


@pytest.fixture(scope="module")
def module(osnet_weights: Path) -> OnnxGraphModule:
    return load_onnx_module(osnet_weights, OSNET_CUT).eval()


def _head(fmap: torch.Tensor, inits: dict[str, np.ndarray]) -> torch.Tensor:
    """The graph's tail after the cut, by hand: GAP -> fc.0 Gemm -> fc.1 BN (eval) -> ReLU."""
    t = {k: torch.from_numpy(np.array(v)) for k, v in inits.items() if k.startswith("fc.")}
    x = fmap.mean(dim=(2, 3))  # (B, 128)
    x = x @ t["fc.0.weight"].T + t["fc.0.bias"]  # (B, 512)
    x = (x - t["fc.1.running_mean"]) / torch.sqrt(t["fc.1.running_var"] + 1e-5) * t[
        "fc.1.weight"
    ] + t["fc.1.bias"]
    return torch.relu(x)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    return (images - mean) / std


def _compare(module: OnnxGraphModule, reference: tuple, images: torch.Tensor) -> None:
    evaluator, inits = reference
    x = _normalise(images)
    ref_map, ref_out = evaluator.run([OSNET_CUT, "output"], {"images": x.numpy()})
    with torch.no_grad():
        fmap = module(x)
    assert fmap.shape == (1, 128, 16, 8)
    np.testing.assert_allclose(
        fmap.numpy(), ref_map, rtol=0, atol=1e-3 * max(1.0, np.abs(ref_map).max())
    )
    out = _head(fmap, inits).numpy()
    assert out.shape == ref_out.shape == (1, 512)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-3 * max(1.0, np.abs(ref_out).max()))


def test_matches_reference_on_random_input(module: OnnxGraphModule, reference: tuple) -> None:
    _compare(module, reference, seeded_images(1, (256, 128)))


def test_matches_reference_on_real_image(
    module: OnnxGraphModule, reference: tuple, cuhk_image: torch.Tensor
) -> None:
    _compare(module, reference, cuhk_image.unsqueeze(0))


def test_parameters_are_trainable_and_registered_once(module: OnnxGraphModule) -> None:
    params = dict(module.named_parameters())
    assert all(p.requires_grad for p in params.values())
    # 200,138 parameters in the file, minus the fc head (66,048 + 4 * 512) and two int64 constants.
    assert sum(p.numel() for p in params.values()) == 200_138 - 66_048 - 4 * 512 - 2
    assert all(name.isidentifier() for name in params)
    shared = module.param_names["conv2.0.gate.fc1.weight"]  # used by four gate calls
    assert shared in params and len(set(module.param_names.values())) == len(module.param_names)


def test_gradients_flow(module: OnnxGraphModule) -> None:
    module.zero_grad()
    module(seeded_images(1, (256, 128))).sum().backward()
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    module.zero_grad(set_to_none=True)


def test_graph_spec_rebuilds_without_onnx_file(module: OnnxGraphModule) -> None:
    rebuilt = OnnxGraphModule(module.graph_spec())  # zero weights, no file read
    rebuilt.load_state_dict(module.state_dict())
    x = seeded_images(2, (256, 128), seed=3)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), module(x))


def test_unknown_op_names_the_op(osnet_weights: Path) -> None:
    spec, tensors = read_onnx_graph(osnet_weights, OSNET_CUT)
    spec["nodes"][1] = {**spec["nodes"][1], "op": "Softplus"}
    with pytest.raises(ModelError, match="Softplus"):
        OnnxGraphModule(spec, tensors)


def test_missing_or_broken_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.onnx"
    monkeypatch.setenv("REIDCTL_OSNET_WEIGHTS", str(missing))
    with pytest.raises(ModelError, match=r"nope\.onnx.*REIDCTL_OSNET_WEIGHTS"):
        build_osnet_x0_25()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError):
        build_osnet_x0_25(broken)


def test_unknown_cut_tensor(osnet_weights: Path) -> None:
    with pytest.raises(ModelError, match="no_such_tensor"):
        load_onnx_module(osnet_weights, "no_such_tensor")
