"""Each IR op and attribute variant against the OpenVINO runtime, on small graphs built
with OpenVINO's own op constructors and written as IR v11 by OpenVINO itself.

The OMZ networks use only a few attribute values (no auto_pad, symmetric pads, floor
rounding, ...); these graphs reach the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reidctl.errors import ModelError
from reidctl.model import load_ir_module

ov = pytest.importorskip("openvino")
op = pytest.importorskip("openvino.opset8")

SHAPE = (1, 4, 9, 7)  # (B, C, H, W) of every test graph's input


def _const(*shape: int, seed: int = 0, dtype: Any = np.float32) -> Any:
    return op.constant(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _ints(*values: int) -> Any:
    return op.constant(np.array(values, dtype=np.int64))


def _conv_same_upper(x: Any) -> Any:
    y = op.convolution(x, _const(6, 4, 3, 3), [2, 2], [0, 0], [0, 0], [1, 1], "same_upper")
    return op.relu(op.add(y, _const(1, 6, 1, 1, seed=1)))


def _conv_uneven_pads(x: Any) -> Any:
    y = op.convolution(x, _const(6, 4, 3, 3), [1, 1], [0, 2], [1, 0], [2, 1])
    return op.group_convolution(y, _const(2, 3, 3, 3, 3, seed=2), [2, 2], [0, 0], [0, 0],
                                [1, 1], "same_lower")


def _pools(x: Any) -> Any:
    y = op.max_pool(x, [2, 2], [1, 1], [1, 1], [1, 1], [3, 3], "ceil").output(0)
    y = op.avg_pool(y, [1, 1], [1, 0], [0, 1], [2, 2], False)
    return op.avg_pool(y, [2, 2], [1, 1], [1, 1], [3, 3], True, "ceil")


def _auto_pad_modes(x: Any) -> Any:
    y = op.convolution(x, _const(4, 4, 2, 3), [1, 2], [5, 5], [5, 5], [1, 1], "valid")
    y = op.max_pool(y, [1, 1], [1, 1], [0, 0], [0, 0], [2, 2], "floor", "valid").output(0)
    return op.avg_pool(y, [2, 2], [0, 0], [0, 0], [2, 2], False, "floor", "same_upper")


def _normalise_and_activate(x: Any) -> Any:
    y = op.mvn(x, _ints(1, 2, 3), True, 0.1, "outside_sqrt")  # eps large enough to tell
    y = op.add(y, op.mvn(x, _ints(2, 3), False, 1e-9, "inside_sqrt"))
    y = op.prelu(y, _const(4, seed=3))  # per channel
    y = op.prelu(op.subtract(y, _const(1, 4, 1, 1, seed=4)), op.constant(np.float32([[0.2]])))
    y = op.multiply(op.sigmoid(y), op.floor(op.multiply(x, op.constant(np.float32(3.0)))))
    f16 = op.convert(_const(1, 4, 1, 1, seed=5, dtype=np.float16), "f32")
    return op.concat([y, op.multiply(op.relu(x), f16)], 1)


def _gather(x: Any) -> Any:
    y = op.gather(x, _ints(2, -1, 0), op.constant(np.int64(1)))  # channel reorder
    return op.gather(y, op.constant(np.int64(-2)), op.constant(np.int64(3)))  # drops W


def _head(x: Any) -> Any:
    """The OMZ head's pattern: pooled vector, fc by MatMul, a Reshape whose target is
    computed from ShapeOf at run time, PReLU, a special_zero Reshape."""
    v = op.reduce_mean(x, _ints(2, 3), False)  # (B, 4)
    v = op.add(op.matmul(v, _const(5, 4, seed=6), False, True), _const(1, 5, seed=7))
    batch = op.gather(op.shape_of(v), _ints(0), op.constant(np.int64(0)))
    v = op.reshape(v, op.concat([batch, _ints(5), _ints(1)], 0), True)  # (B, 5, 1)
    v = op.prelu(v, op.constant(np.float32([[0.1]])))
    return op.reshape(v, _ints(0, -1), True)  # (B, 5)


def _matmul_transpose_a(x: Any) -> Any:
    flat = op.reshape(x, _ints(0, 4, -1), True)  # (B, 4, 63)
    return op.matmul(flat, _const(4, 3, seed=8), True, False)  # (B, 63, 3)


def _gather_out_of_range(x: Any) -> Any:
    """Gather-8: an index outside [-n, n) yields zeros."""
    return op.gather(x, _ints(1, 9, -4), op.constant(np.int64(1)))


CASES: dict[str, Callable[[Any], Any]] = {
    "conv_same_upper": _conv_same_upper, "conv_uneven_pads": _conv_uneven_pads,
    "pools": _pools, "auto_pad_modes": _auto_pad_modes,
    "normalise_and_activate": _normalise_and_activate, "gather": _gather,
    "head": _head, "matmul_transpose_a": _matmul_transpose_a,
    "gather_out_of_range": _gather_out_of_range,
}


def _write(tmp_path: Path, build: Callable[[Any], Any]) -> Path:
    x = op.parameter(list(SHAPE), np.float32, name="data")
    xml = tmp_path / "graph.xml"
    ov.serialize(ov.Model([build(x)], [x], "test"), str(xml), str(xml.with_suffix(".bin")))
    return xml


@pytest.mark.parametrize("case", list(CASES))
def test_op_matches_openvino(case: str, tmp_path: Path) -> None:
    xml = _write(tmp_path, CASES[case])
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    module = load_ir_module(xml).eval()
    x = np.random.default_rng(9).standard_normal((3, *SHAPE[1:])).astype(np.float32)
    ref = np.concatenate([compiled(x[i:i + 1])[0] for i in range(3)])  # one by one
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()  # the batch of 3 at once
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    xml = _write(tmp_path, lambda x: op.tanh(op.relu(x)))
    with pytest.raises(ModelError, match="unsupported IR op type 'Tanh'"):
        load_ir_module(xml)


def test_output_that_ignores_the_input_is_refused(tmp_path: Path) -> None:
    bias = op.constant(np.float32([1.0]), name="bias")
    xml = _write(tmp_path, lambda x: op.add(op.relu(x), bias))
    with pytest.raises(ModelError, match="does not depend on the input"):
        load_ir_module(xml, "bias")
