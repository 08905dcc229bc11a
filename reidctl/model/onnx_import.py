"""Read an ``.onnx`` file into an :class:`OnnxGraphModule` cut at one tensor.

This is the only module that imports ``onnx``, and only inside the loader
function, so that the rest of the package (and checkpoints of ONNX-derived
models) works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidctl.errors import ModelError
from reidctl.model.onnx_graph import GRAPH_FORMAT, GraphSpec, OnnxGraphModule, prune_nodes


def _attr_value(value: Any) -> Any:
    """ONNX attribute value -> plain python (bytes -> str, repeated -> list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_attr_value(v) for v in value]
    raise ModelError(f"unsupported ONNX attribute value of type {type(value).__name__}")


def read_onnx_graph(path: str | Path, output: str) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """Read an ONNX model and cut its graph at the tensor ``output``.

    Args:
        path: the ``.onnx`` file.
        output: name of the tensor to stop at, e.g. ``"/conv5/relu/Relu_output_0"``.

    Returns:
        ``(spec, tensors)``: the pruned graph as plain data and the initializer
        values (float32 etc. as stored) used by the kept nodes, by ONNX name.

    Raises:
        ModelError: missing or unreadable file, no such tensor, graph without
            a non-initializer input.
    """
    import onnx  # only here: loading checkpoints must not need it
    from onnx import helper, numpy_helper

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX weights file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelError(f"cannot read ONNX file {path}: {type(exc).__name__}") from exc
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ModelError(f"ONNX file {path}: expected one graph input, found {inputs}")
    nodes = [
        {
            "op": n.op_type,
            "name": n.name,
            "inputs": list(n.input),
            "outputs": list(n.output),
            "index": i,
        }
        for i, n in enumerate(graph.node)
    ]
    kept = prune_nodes(nodes, output)
    try:  # attributes only of kept nodes: ops after the cut may carry exotic ones
        for node in kept:
            attrs = graph.node[node.pop("index")].attribute
            node["attrs"] = {a.name: _attr_value(helper.get_attribute_value(a)) for a in attrs}
    except ModelError as exc:
        raise ModelError(f"ONNX file {path}: {exc}") from exc
    used = {name for node in kept for name in node["inputs"]}
    tensors: dict[str, torch.Tensor] = {}
    for init in graph.initializer:
        if init.name in used:
            array = np.array(numpy_helper.to_array(init))  # own, writable copy
            tensors[init.name] = torch.from_numpy(array)
    spec: GraphSpec = {
        "format": GRAPH_FORMAT,
        "input": inputs[0],
        "output": output,
        "nodes": kept,
        "initializers": {name: list(t.shape) for name, t in tensors.items()},
    }
    return spec, tensors


def load_onnx_module(path: str | Path, output: str) -> OnnxGraphModule:
    """Build a trainable torch module from an ``.onnx`` file, cut at ``output``.

    Args:
        path: the ``.onnx`` file.
        output: name of the tensor the module returns.

    Returns:
        An :class:`OnnxGraphModule` whose parameters are the initializers.

    Raises:
        ModelError: unreadable file, unknown tensor, unsupported op type.
    """
    spec, tensors = read_onnx_graph(path, output)
    return OnnxGraphModule(spec, tensors)
