"""The ONNX op table: an (cut) ONNX graph run with torch ops as a trainable ``nn.Module``.

The graph is held as plain data (a :data:`GraphSpec`) so that it can travel inside a
checkpoint and be rebuilt without the ``.onnx`` file or the ``onnx`` package;
:mod:`reidctl.model.graph_exec` runs it, :mod:`reidctl.model.onnx_import` turns an
``.onnx`` file into such a spec plus the initializer tensors.

Only the op types needed by the OSNet feature extractor are supported; any
other op raises :class:`~reidctl.errors.ModelError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from reidctl.errors import ModelError
from reidctl.model import graph_exec
from reidctl.model.graph_exec import (
    MAX_INITIALIZER_ELEMENTS,
    MAX_WINDOW,
    GraphModule,
    GraphSpec,
    NodeSpec,
    Op,
    int_list,
    sanitize_names,
    where,
)

GRAPH_FORMAT = "reidctl.onnxgraph/1"
LABEL = "ONNX"

SUPPORTED_OPS = frozenset(
    {"Conv", "Relu", "Sigmoid", "Mul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool"}
)

__all__ = [
    "GRAPH_FORMAT", "MAX_INITIALIZER_ELEMENTS", "MAX_WINDOW", "SUPPORTED_OPS", "GraphSpec",
    "NodeSpec", "OnnxGraphModule", "check_graph_spec", "prune_nodes", "sanitize_names",
]


def _symmetric_pads(attrs: Mapping[str, Any], node: NodeSpec) -> tuple[int, int]:
    """ONNX ``pads`` ``[top, left, bottom, right]`` -> torch ``(pad_h, pad_w)``."""
    pads = int_list(attrs, "pads", (0, 0, 0, 0), where(LABEL, node), 0, 4)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise ModelError(f"{where(LABEL, node)}: unsupported pads {list(pads)}")
    return pads[0], pads[1]


def _check_auto_pad(attrs: Mapping[str, Any], node: NodeSpec) -> None:
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad != "NOTSET":
        raise ModelError(f"{where(LABEL, node)}: unsupported auto_pad {auto_pad!r}")


def _make_op(node: NodeSpec) -> Op:
    """Compile one ONNX node into a callable taking its input tensors in order."""
    op, attrs, at = node["op"], node["attrs"], where(LABEL, node)
    if op == "Conv":
        _check_auto_pad(attrs, node)
        stride = int_list(attrs, "strides", (1, 1), at, 1, 2)
        dilation = int_list(attrs, "dilations", (1, 1), at, 1, 2)
        padding = _symmetric_pads(attrs, node)
        group = attrs.get("group", 1)
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise ModelError(f"{at}: bad group {group!r}")

        def conv(xs: list[torch.Tensor]) -> torch.Tensor:
            bias = xs[2] if len(xs) > 2 else None
            return F.conv2d(xs[0], xs[1], bias, stride, padding, dilation, group)

        return conv
    if op in ("AveragePool", "MaxPool"):
        _check_auto_pad(attrs, node)
        kernel = int_list(attrs, "kernel_shape", (), at, 1, 2)
        stride = int_list(attrs, "strides", (1, 1), at, 1, 2)
        padding = _symmetric_pads(attrs, node)
        ceil_mode = bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            dilation = int_list(attrs, "dilations", (1, 1), at, 1, 2)
            return lambda xs: F.max_pool2d(xs[0], kernel, stride, padding, dilation, ceil_mode)
        include_pad = bool(attrs.get("count_include_pad", 0))
        return lambda xs: F.avg_pool2d(xs[0], kernel, stride, padding, ceil_mode, include_pad)
    if op == "GlobalAveragePool":
        return lambda xs: xs[0].mean(dim=tuple(range(2, xs[0].dim())), keepdim=True)
    if op == "Relu":
        return lambda xs: F.relu(xs[0])
    if op == "Sigmoid":
        return lambda xs: torch.sigmoid(xs[0])
    if op == "Mul":
        return lambda xs: xs[0] * xs[1]  # ONNX broadcasting == numpy == torch
    if op == "Add":
        return lambda xs: xs[0] + xs[1]
    raise ModelError(f"unsupported ONNX op type {op!r} (node {node['name']!r})")


def check_graph_spec(spec: Any) -> None:
    """:func:`reidctl.model.graph_exec.check_graph_spec` for an ONNX graph spec."""
    graph_exec.check_graph_spec(spec, LABEL)


def prune_nodes(nodes: Sequence[NodeSpec], output: str) -> list[NodeSpec]:
    """:func:`reidctl.model.graph_exec.prune_nodes` for ONNX nodes."""
    return graph_exec.prune_nodes(nodes, output, LABEL)


class OnnxGraphModule(GraphModule):
    """Runs a pruned ONNX graph node by node with torch ops (see :class:`GraphModule`).

    OSNet's gate fc weights are used four times each and registered once.

    Args:
        spec: the graph as plain data, format ``"reidctl.onnxgraph/1"``.
        tensors: initializer values by ONNX name, or ``None`` to rebuild from a
            checkpoint (zeros; load a state dict next).

    Raises:
        ModelError: unknown op type, missing initializer, malformed spec.
    """

    FORMAT = GRAPH_FORMAT
    LABEL = "ONNX"
    make_op = staticmethod(_make_op)
