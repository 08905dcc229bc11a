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
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reidctl.errors import ModelError
from reidctl.model._util import first_line

GRAPH_FORMAT = "reidctl.onnxgraph/1"

# A node: {"op": str, "name": str, "inputs": [str], "outputs": [str], "attrs": {str: ...}}.
# A spec: {"format", "input", "output", "nodes": [node], "initializers": {onnx name: shape}}.
GraphSpec = dict[str, Any]
NodeSpec = dict[str, Any]

SUPPORTED_OPS = frozenset(
    {"Conv", "Relu", "Sigmoid", "Mul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool"}
)

_Op = Callable[[list[torch.Tensor]], torch.Tensor]


# Largest kernel, stride, dilation or pad accepted (OSNet's largest is its 7x7 stem): a
# graph read from a file must not turn one image into gigabytes of activations.
MAX_WINDOW = 32
MAX_INITIALIZER_ELEMENTS = 2**26  # 256 MB of float32 for one weight; OSNet's largest is 64 KB


def _ints(attrs: Mapping[str, Any], key: str, default: Sequence[int], node: NodeSpec,
          low: int, count: int) -> tuple[int, ...]:
    """Attribute ``key`` as ``count`` ints in ``[low, MAX_WINDOW]``."""
    value = attrs.get(key, default)
    if (not isinstance(value, (list, tuple)) or len(value) != count
            or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= MAX_WINDOW
                   for v in value)):
        raise ModelError(
            f"ONNX node {node['name']!r} ({node['op']}): {key} must be {count} integers "
            f"in [{low}, {MAX_WINDOW}], got {value!r}"
        )
    return tuple(value)


def _symmetric_pads(attrs: Mapping[str, Any], node: NodeSpec) -> tuple[int, int]:
    """ONNX ``pads`` ``[top, left, bottom, right]`` -> torch ``(pad_h, pad_w)``."""
    pads = _ints(attrs, "pads", (0, 0, 0, 0), node, 0, 4)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise ModelError(
            f"ONNX node {node['name']!r} ({node['op']}): unsupported pads {list(pads)}"
        )
    return pads[0], pads[1]


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
        stride = _ints(attrs, "strides", (1, 1), node, 1, 2)
        dilation = _ints(attrs, "dilations", (1, 1), node, 1, 2)
        padding = _symmetric_pads(attrs, node)
        group = attrs.get("group", 1)
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise ModelError(f"ONNX node {node['name']!r} (Conv): bad group {group!r}")

        def conv(xs: list[torch.Tensor]) -> torch.Tensor:
            bias = xs[2] if len(xs) > 2 else None
            return F.conv2d(xs[0], xs[1], bias, stride, padding, dilation, group)

        return conv
    if op in ("AveragePool", "MaxPool"):
        _check_auto_pad(attrs, node)
        kernel = _ints(attrs, "kernel_shape", (), node, 1, 2)
        stride = _ints(attrs, "strides", (1, 1), node, 1, 2)
        padding = _symmetric_pads(attrs, node)
        ceil_mode = bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            dilation = _ints(attrs, "dilations", (1, 1), node, 1, 2)
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


def _bad_spec(what: str, value: Any) -> ModelError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ModelError(f"malformed ONNX graph spec: {what}, got {shown}")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_graph_spec(spec: Any) -> None:
    """Check the types of a :data:`GraphSpec` and its initializer shapes.

    Raises:
        ModelError: naming the first field that is missing or of the wrong type,
            or an initializer shape that is not a list of non-negative ints of at
            most ``MAX_INITIALIZER_ELEMENTS`` elements.
    """
    if not isinstance(spec, dict):
        raise _bad_spec("the spec must be a dict", type(spec).__name__)
    for key, kind in (("format", str), ("input", str), ("output", str), ("nodes", list),
                      ("initializers", dict)):
        if not isinstance(spec.get(key), kind):
            raise _bad_spec(f"{key!r} must be a {kind.__name__}", spec.get(key))
    for i, node in enumerate(spec["nodes"]):
        if not (isinstance(node, dict) and isinstance(node.get("op"), str)
                and isinstance(node.get("name"), str) and _is_str_list(node.get("inputs"))
                and _is_str_list(node.get("outputs")) and node["outputs"]
                and isinstance(node.get("attrs"), dict)):
            raise _bad_spec(f"node {i} needs op, name, inputs, outputs (strings) and attrs", node)
    for name, shape in spec["initializers"].items():
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise _bad_spec(f"initializer {name!r}: a shape is a list of non-negative ints", shape)
        if math.prod(shape) > MAX_INITIALIZER_ELEMENTS:
            raise _bad_spec(f"initializer {name!r} is larger than {MAX_INITIALIZER_ELEMENTS:,} "
                            "elements", shape)


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
        check_graph_spec(spec)
        if spec["format"] != GRAPH_FORMAT:
            raise ModelError(f"unknown ONNX graph format {spec['format']!r}")
        self.input_name: str = spec["input"]
        self.output_name: str = spec["output"]
        nodes = prune_nodes(spec["nodes"], self.output_name)
        shapes: dict[str, list[int]] = dict(spec["initializers"])
        self._ops = [_make_op(node) for node in nodes]  # raises on unknown ops first
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
        return self._run(x, name_failures=False)

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`, with a node that cannot run named in a ModelError.

        Meant for meta tensors: checks a graph read from a file, shapes only.

        Raises:
            ModelError: ``ONNX node '<name>' (<op>): <what torch said>``.
        """
        return self._run(x, name_failures=True)

    def _run(self, x: torch.Tensor, name_failures: bool) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {
            name: getattr(self, attr) for name, attr in self.param_names.items()
        }
        env[self.input_name] = x
        for node, op, free in zip(self._nodes, self._ops, self._plan, strict=True):
            try:
                env[node["outputs"][0]] = op([env[name] for name in node["inputs"] if name])
            except RuntimeError as exc:
                if not name_failures:  # at run time, e.g. out of memory: not the graph's fault
                    raise
                raise ModelError(
                    f"ONNX node {node['name']!r} ({node['op']}): {first_line(exc)}"
                ) from exc
            for name in free:
                del env[name]
        return env[self.output_name]

    def extra_repr(self) -> str:
        return f"input={self.input_name!r}, output={self.output_name!r}, nodes={len(self._nodes)}"
