"""Run a graph held as plain data with torch ops, as a trainable ``nn.Module``.

A graph is a :data:`GraphSpec`: lists, dicts, strings and numbers only, so that it
travels inside a checkpoint and is rebuilt without the file it was imported from.
:class:`GraphModule` compiles each node into a torch callable through an *op table*
(a function from a node to a callable), registers the weights as parameters, plans
when each intermediate tensor can be freed, and runs the nodes in order. The op
tables live beside their importers: :mod:`reidctl.model.onnx_graph` (ONNX) and
:mod:`reidctl.model.ir_ops` (OpenVINO IR).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from reidctl.errors import ModelError
from reidctl.model._util import first_line

# A node: {"op": str, "name": str, "inputs": [str], "outputs": [str], "attrs": {str: ...}}.
# A spec: {"format", "input", "output", "nodes": [node], "initializers": {name: shape}}.
GraphSpec = dict[str, Any]
NodeSpec = dict[str, Any]
Op = Callable[[list[torch.Tensor]], torch.Tensor]

# Largest kernel, stride, dilation or pad accepted (the largest window of the supported
# networks is the 16x8 pooling convolution of the OMZ heads): a graph read from a file
# must not turn one image into gigabytes of activations.
MAX_WINDOW = 32
MAX_INITIALIZER_ELEMENTS = 2**26  # 256 MB of float32 for one weight
MAX_RANK = 8  # dimensions of any tensor a graph names
# Largest intermediate tensor a probe (one image) accepts: broadcasting ops could otherwise
# build a huge activation that the probe on the meta device never pays for.
MAX_ACTIVATION_ELEMENTS = 2**26


def where(label: str, node: NodeSpec) -> str:
    """How messages name a node: ``"ONNX node 'conv1' (Conv)"``."""
    return f"{label} node {node['name']!r} ({node['op']})"


def int_list(attrs: Mapping[str, Any], key: str, default: Sequence[int] | None, at: str,
             low: int, count: int, high: int = MAX_WINDOW) -> tuple[int, ...]:
    """Attribute ``key`` as ``count`` ints in ``[low, high]``.

    Args:
        attrs: the node's attributes.
        key: the attribute; ``default`` when absent (``None``: required).
        at: the node, as :func:`where` names it.
        low, high: the allowed range of each value.
        count: how many values.

    Raises:
        ModelError: ``"<at>: <key> must be <count> integers in [low, high], got ..."``.
    """
    value = attrs.get(key, default)
    if (not isinstance(value, (list, tuple)) or len(value) != count
            or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high
                   for v in value)):
        raise ModelError(
            f"{at}: {key} must be {count} integers in [{low}, {high}], got {value!r}"
        )
    return tuple(value)


def sanitize_names(names: Sequence[str]) -> dict[str, str]:
    """Map tensor names to unique, valid module attribute names.

    Args:
        names: initializer names, e.g. ``"conv2.0.gate.fc1.weight"``,
            ``"onnx::Conv_1047"`` or ``"1148"``.

    Returns:
        ``{name: attribute name}``, e.g. ``"conv2_0_gate_fc1_weight"``,
        ``"onnx__Conv_1047"``, ``"p_1148"``; collisions get a numeric suffix.
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


def _bad_spec(label: str, what: str, value: Any) -> ModelError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ModelError(f"malformed {label} graph spec: {what}, got {shown}")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_graph_spec(spec: Any, label: str) -> None:
    """Check the types of a :data:`GraphSpec` and its initializer shapes.

    Args:
        spec: the spec, e.g. read from a checkpoint.
        label: the graph kind for messages, ``"ONNX"`` or ``"IR"``.

    Raises:
        ModelError: naming the first field that is missing or of the wrong type,
            or an initializer shape that is not a list of non-negative ints of at
            most ``MAX_INITIALIZER_ELEMENTS`` elements.
    """
    if not isinstance(spec, dict):
        raise _bad_spec(label, "the spec must be a dict", type(spec).__name__)
    for key, kind in (("format", str), ("input", str), ("output", str), ("nodes", list),
                      ("initializers", dict)):
        if not isinstance(spec.get(key), kind):
            raise _bad_spec(label, f"{key!r} must be a {kind.__name__}", spec.get(key))
    for i, node in enumerate(spec["nodes"]):
        if not (isinstance(node, dict) and isinstance(node.get("op"), str)
                and isinstance(node.get("name"), str) and _is_str_list(node.get("inputs"))
                and _is_str_list(node.get("outputs")) and node["outputs"]
                and isinstance(node.get("attrs"), dict)):
            raise _bad_spec(label, f"node {i} needs op, name, inputs, outputs (strings) and "
                            "attrs", node)
    for name, shape in spec["initializers"].items():
        if not (isinstance(shape, list) and len(shape) <= MAX_RANK
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise _bad_spec(label, f"initializer {name!r}: a shape is a list of non-negative "
                            "ints", shape)
        if math.prod(shape) > MAX_INITIALIZER_ELEMENTS:
            raise _bad_spec(label, f"initializer {name!r} is larger than "
                            f"{MAX_INITIALIZER_ELEMENTS:,} elements", shape)


def prune_nodes(nodes: Sequence[NodeSpec], output: str, label: str) -> list[NodeSpec]:
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
        raise ModelError(f"no {label} node produces tensor {output!r}")
    return kept[::-1]


class GraphModule(nn.Module):
    """Runs a pruned graph node by node with torch ops.

    Subclasses set :attr:`FORMAT` (the spec's format tag), :attr:`LABEL` (the graph
    kind in messages) and :meth:`make_op` (their op table). Initializers are
    ``nn.Parameter`` (floating point, trainable) or buffers (other dtypes), each
    registered once under a sanitized name even when several nodes share it.
    Intermediate tensors are dropped right after their last use.

    Args:
        spec: the graph as plain data (see :data:`GraphSpec`); nodes after
            ``spec["output"]`` are pruned away.
        tensors: initializer values by name; when ``None`` (rebuilding from a
            checkpoint) zero tensors of the recorded shapes are created and the
            caller loads a state dict afterwards.

    Raises:
        ModelError: unknown op type, bad attributes, missing initializer, malformed spec.
    """

    FORMAT: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""

    @staticmethod
    def make_op(node: NodeSpec) -> Op:
        """Compile one node into a callable taking its input tensors in order."""
        raise NotImplementedError

    def __init__(self, spec: GraphSpec, tensors: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        check_graph_spec(spec, self.LABEL)
        if spec["format"] != self.FORMAT:
            raise ModelError(f"unknown {self.LABEL} graph format {spec['format']!r}")
        self.input_name: str = spec["input"]
        self.output_name: str = spec["output"]
        nodes = prune_nodes(spec["nodes"], self.output_name, self.LABEL)
        shapes: dict[str, list[int]] = dict(spec["initializers"])
        self._ops = [self.make_op(node) for node in nodes]  # raises on unknown ops first
        used = [n for node in nodes for n in node["inputs"] if n in shapes]
        self.param_names: dict[str, str] = sanitize_names(list(dict.fromkeys(used)))
        for name, attr in self.param_names.items():
            if tensors is None:
                value = torch.zeros(shapes[name])
            elif name not in tensors:
                raise ModelError(f"{self.LABEL} initializer {name!r} has no value")
            else:
                value = tensors[name].detach().clone()
            if list(value.shape) != list(shapes[name]):
                raise ModelError(f"{self.LABEL} initializer {name!r}: "
                                 f"shape {list(value.shape)} != {shapes[name]}")
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
                raise ModelError(f"{where(self.LABEL, node)} reads undefined tensor "
                                 f"{missing[0]!r}")
            defined.add(node["outputs"][0])  # every supported op has one output

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
            "format": self.FORMAT,
            "input": self.input_name,
            "output": self.output_name,
            "nodes": copy.deepcopy(self._nodes),
            "initializers": shapes,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph.

        Args:
            x: the graph input, e.g. ``(B, 3, 256, 128)`` images.

        Returns:
            The tensor named ``output_name``, e.g. ``(B, K, 16, 8)``.
        """
        return self._run(x, name_failures=False)

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`, with a node that cannot run named in a ModelError.

        Meant for meta tensors: checks a graph read from a file, shapes only.

        Raises:
            ModelError: ``<LABEL> node '<name>' (<op>): <what torch said>``, or an
                output of more than ``MAX_ACTIVATION_ELEMENTS`` elements per image.
        """
        return self._run(x, name_failures=True)

    def _run(self, x: torch.Tensor, name_failures: bool, start: int = 0, stop: int | None = None,
             input_name: str | None = None, output_name: str | None = None) -> torch.Tensor:
        """Nodes ``start:stop`` fed ``x`` as ``input_name`` (default: all): ``output_name``."""
        env: dict[str, torch.Tensor] = {
            name: getattr(self, attr) for name, attr in self.param_names.items()
        }
        env[input_name or self.input_name] = x
        stop = len(self._nodes) if stop is None else stop
        for node, op, free in zip(self._nodes[start:stop], self._ops[start:stop],
                                  self._plan[start:stop], strict=True):
            try:
                out = op([env[name] for name in node["inputs"] if name])
            except (RuntimeError, IndexError, ValueError) as exc:
                if not name_failures:  # at run time, e.g. out of memory: not the graph's fault
                    raise
                raise ModelError(f"{where(self.LABEL, node)}: {first_line(exc)}") from exc
            if name_failures and out.numel() > MAX_ACTIVATION_ELEMENTS * max(1, x.shape[0]):
                raise ModelError(f"{where(self.LABEL, node)}: output of shape "
                                 f"{list(out.shape)} is larger than "
                                 f"{MAX_ACTIVATION_ELEMENTS:,} elements per image")
            env[node["outputs"][0]] = out
            for name in free:
                del env[name]
        return env[output_name or self.output_name]

    def clean_cuts(self) -> list[str]:
        """Every tensor the graph can be split at (see :meth:`split`), in node order.

        Returns:
            Node outputs after which nothing computed earlier (the input included) is
            read again; the graph's output is not one.
        """
        last_use: dict[str, int] = {}
        for i, node in enumerate(self._nodes):
            for name in node["inputs"]:
                if name and name not in self.param_names:
                    last_use[name] = i
        cuts: list[str] = []
        reach = last_use.get(self.input_name, -1)  # last read of anything computed so far
        for i, node in enumerate(self._nodes[:-1]):
            if reach <= i:
                cuts.append(node["outputs"][0])
            reach = max(reach, last_use.get(node["outputs"][0], -1))
        return cuts

    def split(self, cut: str) -> tuple[GraphSegment, GraphSegment]:
        """The graph as two modules: input -> ``cut`` and ``cut`` -> output.

        Both hold this module's very ``nn.Parameter`` objects (training either trains
        this one). Buffers are read from this module: move it, not a segment.

        Args:
            cut: a tensor after which nothing computed earlier is read again
                (:meth:`clean_cuts` lists them).

        Returns:
            ``(prefix, suffix)``: ``suffix(prefix(x))`` equals ``self(x)``.

        Raises:
            ModelError: ``cut`` is unknown, the output, or not a clean cut (naming a
                tensor read across it); the message lists a few clean cuts.
        """
        index = {node["outputs"][0]: i for i, node in enumerate(self._nodes)}
        cuts = self.clean_cuts()
        shown = ", ".join(repr(c) for c in cuts[::max(1, len(cuts) // 6)][:8]) or "none"
        if cut not in index or cut == self.output_name:
            raise ModelError(f"{self.LABEL} graph has no inner tensor {cut!r} to split at "
                             f"(clean cuts include {shown})")
        i = index[cut]
        if cut not in cuts:
            before = {self.input_name, *(n["outputs"][0] for n in self._nodes[:i])}
            late = next(n for node in self._nodes[i + 1:] for n in node["inputs"] if n in before)
            raise ModelError(f"{self.LABEL} tensor {cut!r} is not a clean cut: {late!r}, computed "
                             f"before it, is read after it (clean cuts include {shown})")
        return (GraphSegment(self, 0, i + 1, self.input_name, cut),
                GraphSegment(self, i + 1, len(self._nodes), cut, self.output_name))

    def extra_repr(self) -> str:
        return f"input={self.input_name!r}, output={self.output_name!r}, nodes={len(self._nodes)}"


class GraphSegment(nn.Module):
    """Nodes ``start:stop`` of a :class:`GraphModule`, sharing its parameters.

    Made by :meth:`GraphModule.split`. The whole graph is a plain attribute, not a
    submodule: ``parameters()`` gives only the weights this segment's nodes read.

    Args:
        graph: the whole graph.
        start, stop: the node range.
        input_name, output_name: the tensor it is fed and the one it returns.
    """

    def __init__(self, graph: GraphModule, start: int, stop: int, input_name: str,
                 output_name: str) -> None:
        super().__init__()
        object.__setattr__(self, "_graph", graph)  # not registered: its weights stay its own
        self.start, self.stop = start, stop
        self.input_name, self.output_name = input_name, output_name
        read = {n for node in graph._nodes[start:stop] for n in node["inputs"]}
        for name, attr in graph.param_names.items():
            value = getattr(graph, attr)
            if name in read and isinstance(value, nn.Parameter):
                self.register_parameter(attr, value)  # the same object: shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor ``output_name`` of ``x``, the tensor ``input_name`` (e.g.
        ``(B, 3, 256, 128)`` images or a ``(B, C, h, w)`` map)."""
        graph: GraphModule = self._graph
        return graph._run(x, False, self.start, self.stop, self.input_name, self.output_name)

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` naming a node that cannot run (see :meth:`GraphModule.probe`)."""
        graph: GraphModule = self._graph
        return graph._run(x, True, self.start, self.stop, self.input_name, self.output_name)

    def spec_digest(self) -> str:
        """sha256 of the segment's nodes as JSON, to recognise the same computation."""
        nodes = self._graph._nodes[self.start:self.stop]
        return hashlib.sha256(json.dumps(nodes, sort_keys=True).encode()).hexdigest()
