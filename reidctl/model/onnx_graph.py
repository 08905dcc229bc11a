"""Execute a (cut) ONNX graph with torch ops, as a trainable ``nn.Module``.

The graph is held as plain data (a :data:`GraphSpec`: lists, dicts, strings,
numbers) so that it can travel inside a checkpoint and be rebuilt without the
``.onnx`` file or the ``onnx`` package. :mod:`reidctl.model.onnx_import` turns
an ``.onnx`` file into such a spec plus the initializer tensors.

Only the op types needed by the OSNet feature extractor are supported; any
other op raises :class:`~reidctl.errors.ModelError` naming it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reidctl.errors import ModelError

GRAPH_FORMAT = "reidctl.onnxgraph/1"

# A node: {"op": str, "name": str, "inputs": [str], "outputs": [str], "attrs": {str: ...}}.
# A spec: {"format", "input", "output", "nodes": [node], "initializers": {onnx name: shape}}.
GraphSpec = dict[str, Any]
NodeSpec = dict[str, Any]

SUPPORTED_OPS = frozenset(
    {"Conv", "Relu", "Sigmoid", "Mul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool"}
)

_Op = Callable[[list[torch.Tensor]], torch.Tensor]


def _symmetric_pads(pads: Sequence[int], node: NodeSpec) -> tuple[int, int]:
    """ONNX ``pads`` ``[top, left, bottom, right]`` -> torch ``(pad_h, pad_w)``."""
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise ModelError(
            f"ONNX node {node['name']!r} ({node['op']}): unsupported pads {list(pads)}"
        )
    return int(pads[0]), int(pads[1])


def _check_auto_pad(attrs: Mapping[str, Any], node: NodeSpec) -> None:
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad != "NOTSET":
        raise ModelError(
            f"ONNX node {node['name']!r} ({node['op']}): unsupported auto_pad {auto_pad!r}"
        )


def _make_op(node: NodeSpec) -> _Op:
    """Compile one node into a callable taking its input tensors in order."""
    op, attrs = node["op"], node["attrs"]
    if op == "Conv":
        _check_auto_pad(attrs, node)
        stride = tuple(attrs.get("strides", (1, 1)))
        dilation = tuple(attrs.get("dilations", (1, 1)))
        padding = _symmetric_pads(attrs.get("pads", (0, 0, 0, 0)), node)
        groups = int(attrs.get("group", 1))

        def conv(xs: list[torch.Tensor]) -> torch.Tensor:
            bias = xs[2] if len(xs) > 2 else None
            return F.conv2d(xs[0], xs[1], bias, stride, padding, dilation, groups)

        return conv
    if op in ("AveragePool", "MaxPool"):
        _check_auto_pad(attrs, node)
        kernel = tuple(attrs["kernel_shape"])
        stride = tuple(attrs.get("strides", (1, 1)))
        padding = _symmetric_pads(attrs.get("pads", (0, 0, 0, 0)), node)
        ceil_mode = bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            dilation = tuple(attrs.get("dilations", (1, 1)))
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


def sanitize_names(names: Sequence[str]) -> dict[str, str]:
    """Map ONNX tensor names to unique, valid module attribute names.

    Args:
        names: ONNX initializer names, e.g. ``"conv2.0.gate.fc1.weight"`` or
            ``"onnx::Conv_1047"``.

    Returns:
        ``{onnx name: attribute name}``, e.g. ``"conv2_0_gate_fc1_weight"``,
        ``"onnx__Conv_1047"``; collisions get a numeric suffix.
    """
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = re.sub(r"\W", "_", name) or "p"
        if base[0].isdigit():
            base = "p_" + base
        attr, i = base, 1
        while attr in used:
            attr, i = f"{base}_{i}", i + 1
        used.add(attr)
        mapping[name] = attr
    return mapping


def prune_nodes(nodes: Sequence[NodeSpec], output: str) -> list[NodeSpec]:
    """Keep only the nodes needed to compute ``output`` (topological order kept).

    Raises:
        ModelError: when no node produces ``output``.
    """
    needed = {output}
    kept: list[NodeSpec] = []
    for node in reversed(nodes):
        if needed.intersection(node["outputs"]):
            kept.append(node)
            needed.update(node["inputs"])
    if not kept:
        raise ModelError(f"no ONNX node produces tensor {output!r}")
    return kept[::-1]


class OnnxGraphModule(nn.Module):
    """Runs a pruned ONNX graph node by node with torch ops.

    Initializers are ``nn.Parameter`` (floating point, trainable) or buffers
    (other dtypes), each registered once under a sanitized name even when
    several nodes share it (OSNet's gate fc weights are used four times).
    Intermediate tensors are dropped right after their last use.

    Args:
        spec: the graph as plain data (see :data:`GraphSpec`); nodes after
            ``spec["output"]`` are pruned away.
        tensors: initializer values by ONNX name; when ``None`` (rebuilding
            from a checkpoint) zero tensors of the recorded shapes are created
            and the caller loads a state dict afterwards.

    Raises:
        ModelError: unknown op type, missing initializer, malformed spec.
    """

    def __init__(self, spec: GraphSpec, tensors: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        try:
            if spec["format"] != GRAPH_FORMAT:
                raise ModelError(f"unknown ONNX graph format {spec['format']!r}")
            self.input_name: str = spec["input"]
            self.output_name: str = spec["output"]
            nodes = prune_nodes(spec["nodes"], self.output_name)
            shapes: dict[str, list[int]] = dict(spec["initializers"])
            self._ops = [_make_op(node) for node in nodes]  # raises on unknown ops first
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed ONNX graph spec: missing or bad field {exc}") from exc
        used = [n for node in nodes for n in node["inputs"] if n in shapes]
        self.param_names: dict[str, str] = sanitize_names(list(dict.fromkeys(used)))
        for onnx_name, attr in self.param_names.items():
            if tensors is None:
                value = torch.zeros(shapes[onnx_name])
            elif onnx_name not in tensors:
                raise ModelError(f"ONNX initializer {onnx_name!r} has no value")
            else:
                value = tensors[onnx_name].detach().clone()
            if list(value.shape) != list(shapes[onnx_name]):
                raise ModelError(
                    f"ONNX initializer {onnx_name!r}: "
                    f"shape {list(value.shape)} != {shapes[onnx_name]}"
                )
            if value.is_floating_point():
                self.register_parameter(attr, nn.Parameter(value))
            else:
                self.register_buffer(attr, value)
        self._nodes = nodes
        self._check_inputs_defined()
        self._plan = self._last_use_plan()

    def _check_inputs_defined(self) -> None:
        defined = {self.input_name, *self.param_names}
        for node in self._nodes:
            missing = [n for n in node["inputs"] if n and n not in defined]
            if missing:
                raise ModelError(
                    f"ONNX node {node['name']!r} reads undefined tensor {missing[0]!r}"
                )
            # every supported op has one output (MaxPool's optional indices are not supported)
            defined.add(node["outputs"][0])

    def _last_use_plan(self) -> list[list[str]]:
        """For each node, the activations that can be freed after it runs."""
        last_use: dict[str, int] = {}
        for i, node in enumerate(self._nodes):
            for name in node["inputs"]:
                if name and name not in self.param_names:
                    last_use[name] = i
        plan: list[list[str]] = [[] for _ in self._nodes]
        for name, i in last_use.items():
            if name != self.output_name:
                plan[i].append(name)
        return plan

    def graph_spec(self) -> GraphSpec:
        """The pruned graph as plain data, enough to rebuild this module.

        Returns:
            A :data:`GraphSpec` (lists/dicts/str/int/float only, so it loads
            with ``torch.load(weights_only=True)``).
        """
        shapes = {name: list(getattr(self, attr).shape) for name, attr in self.param_names.items()}
        return {
            "format": GRAPH_FORMAT,
            "input": self.input_name,
            "output": self.output_name,
            "nodes": copy.deepcopy(self._nodes),
            "initializers": shapes,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph.

        Args:
            x: the graph input, for OSNet ``(B, 3, 256, 128)`` normalised images.

        Returns:
            The tensor named ``output_name``, for OSNet ``(B, 128, 16, 8)``.
        """
        env: dict[str, torch.Tensor] = {
            name: getattr(self, attr) for name, attr in self.param_names.items()
        }
        env[self.input_name] = x
        for node, op, free in zip(self._nodes, self._ops, self._plan, strict=True):
            env[node["outputs"][0]] = op([env[name] for name in node["inputs"] if name])
            for name in free:
                del env[name]
        return env[self.output_name]

    def extra_repr(self) -> str:
        return f"input={self.input_name!r}, output={self.output_name!r}, nodes={len(self._nodes)}"
