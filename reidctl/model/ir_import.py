"""Import an OpenVINO IR graph as an :class:`IrGraphModule`, cut at one tensor.

Everything that does not depend on the image is folded here, once: constants and
their ``Convert`` (FP16 weights become f32 tensors), and the shape subgraph
(``ShapeOf``, ``Gather``, ``Concat``, ``Reshape`` targets, reduction axes). What is
left are static ops on tensors whose float constants become trainable parameters.

The IR states shapes for batch 1 only. To know which folded numbers are the batch
size, the graph is traced twice on the meta device (no memory), with batch 1 and
batch 2: a ``Reshape`` dimension that differs between the two becomes ``-1``, and
every shape of the batch-1 trace is checked against the shape the file states for
that layer, so an op whose semantics were read wrongly fails at import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reidctl.errors import ModelError
from reidctl.model._util import first_line
from reidctl.model.graph_exec import GraphSpec, NodeSpec
from reidctl.model.ir_ops import (
    IR_GRAPH_FORMAT,
    OP_TABLE,
    IrGraphModule,
    check_folded_size,
    make_ir_op,
)
from reidctl.model.ir_read import (
    IrFile,
    IrLayer,
    output_port,
    read_const,
    read_ir_file,
    tensor_names,
    topological_order,
)

BATCHES = (1, 2)  # the two traces
# Inputs folded into attributes (by position): they must be constants.
STRUCTURAL: dict[str, dict[int, str]] = {
    "Reshape": {1: "shape"}, "ReduceMean": {1: "axes"}, "MVN": {1: "axes"},
    "Gather": {1: "indices", 2: "axis"},
}
# Attributes each op keeps from the file (MaxPool's axis and index_element_type describe its
# indices output, which is not supported; Reshape's special_zero is applied at import).
KEPT_ATTRS: dict[str, tuple[str, ...]] = {
    "Convolution": ("strides", "dilations", "pads_begin", "pads_end", "auto_pad"),
    "AvgPool": ("strides", "pads_begin", "pads_end", "kernel", "exclude_pad", "rounding_type",
                "auto_pad"),
    "MaxPool": ("strides", "dilations", "pads_begin", "pads_end", "kernel", "rounding_type",
                "auto_pad"),
    "Add": ("auto_broadcast",), "MVN": ("eps", "eps_mode", "normalize_variance"),
    "ReduceMean": ("keep_dims",), "Gather": ("batch_dims",), "Concat": ("axis",),
    "MatMul": ("transpose_a", "transpose_b"), "Convert": ("destination_type",),
}
KEPT_ATTRS.update(GroupConvolution=KEPT_ATTRS["Convolution"], Subtract=KEPT_ATTRS["Add"],
                  Multiply=KEPT_ATTRS["Add"])
MVN_VERSIONS = ("opset6",)  # MVN-1 (across_channels) has other semantics


@dataclass(frozen=True)
class _Const:
    """A folded value, per trace (the same tensor twice unless it depends on the batch)."""

    values: tuple[torch.Tensor, torch.Tensor]
    name: str = ""  # the tensor name of the layer output it is

    def plain(self, at: str) -> torch.Tensor:
        a, b = self.values
        if a.shape != b.shape or not torch.equal(a, b):
            raise ModelError(f"{at}: a constant input depends on the batch size")
        return a


@dataclass(frozen=True)
class _Dyn:
    """A tensor computed at run time: its meta tensor per trace and its name in the spec."""

    metas: tuple[torch.Tensor, torch.Tensor]
    name: str


_Value = _Const | _Dyn


def _input_shape(layer: IrLayer) -> list[int]:
    """The Parameter's shape with its batch dimension (dim 0) left open."""
    text = str(layer.data.get("shape", ""))
    dims = [d.strip() for d in text.split(",")] if text.strip() else []
    if layer.data.get("element_type") != "f32" or not dims or not all(
            d.isdigit() and 0 < int(d) <= 2**16 for d in dims[1:]):
        raise ModelError(f"{layer.where}: expected an f32 input of static shape "
                         f"[batch, ...], got {layer.data.get('element_type')} [{text}]")
    return [int(d) for d in dims[1:]]


def _resolve_reshape(at: str, pattern: _Const, data: _Value, special_zero: bool) -> list[int]:
    """The Reshape target as concrete dims, ``-1`` for the one that follows the batch."""
    outs = []
    for target, in_shape in zip(pattern.values, _shapes(data), strict=True):
        dims = [int(v) for v in target.flatten().tolist()]
        if special_zero:  # 0 copies the input's dimension at the same place
            dims = [in_shape[i] if v == 0 and i < len(in_shape) else v
                    for i, v in enumerate(dims)]
        known = math.prod(v for v in dims if v != -1)
        outs.append([math.prod(in_shape) // known if v == -1 and known else v for v in dims])
    if len(outs[0]) != len(outs[1]):
        raise ModelError(f"{at}: target rank depends on the batch size")
    merged = [a if a == b else -1 for a, b in zip(*outs, strict=True)]
    if merged.count(-1) > 1:
        raise ModelError(f"{at}: target shape depends on the batch size in more than one "
                         "dimension")
    return merged


def _shapes(value: _Value) -> tuple[list[int], list[int]]:
    pair = value.values if isinstance(value, _Const) else value.metas
    return list(pair[0].shape), list(pair[1].shape)


def _explicit_pads(layer: IrLayer, attrs: dict[str, Any], inputs: list[_Value]) -> None:
    """Turn ``auto_pad`` valid/same_upper/same_lower into explicit pads (in place)."""
    mode = str(attrs.get("auto_pad", "explicit")).lower()
    if mode in ("explicit", "notset"):
        return
    if mode not in ("valid", "same_upper", "same_lower"):
        raise ModelError(f"{layer.where}: unsupported auto_pad {mode!r}")
    spatial = _shapes(inputs[0])[0][2:]
    if "kernel" in attrs:
        kernel = attrs["kernel"]
    else:
        kernel = _shapes(inputs[1])[0][-2:] if len(inputs) > 1 else []
    strides, dilations = attrs.get("strides", []), attrs.get("dilations", [1] * len(spatial))
    if not len(spatial) == len(kernel) == len(strides) == len(dilations):
        raise ModelError(f"{layer.where}: auto_pad needs 2-D strides, dilations and kernel")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        total = 0
        if mode != "valid":
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        first = total // 2 if mode == "same_upper" else total - total // 2
        begin.append(first)
        end.append(total - first)
    attrs.update(auto_pad="explicit", pads_begin=begin, pads_end=end)


def _torch_group_weight(layer: IrLayer, weight: _Value, attrs: dict[str, Any]) -> _Const:
    """A GroupConvolution weight ``(G, O/G, C/G, kh, kw)`` as torch's ``(O, C/G, kh, kw)``;
    ``groups`` goes to ``attrs``."""
    if not isinstance(weight, _Const):
        raise ModelError(f"{layer.where}: a computed weight is not supported")
    value = weight.plain(layer.where)
    if value.dim() != 5:
        raise ModelError(f"{layer.where}: weight of shape {list(value.shape)}, expected "
                         "[groups, out/groups, in/groups, kh, kw]")
    attrs["groups"] = value.shape[0]
    flat = value.flatten(0, 1)  # (O, C/G, kh, kw)
    return _Const((flat, flat), weight.name)


class _Folder:
    """One pass over the layers in order, folding constants and emitting runtime nodes."""

    def __init__(self, ir: IrFile, names: dict[tuple[str, str], str]) -> None:
        self.ir, self.names = ir, names
        self.values: dict[tuple[str, str], _Value] = {}
        self.nodes: list[NodeSpec] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.input_name: str | None = None

    def input_values(self, layer: IrLayer) -> list[_Value]:
        out = []
        for port in layer.inputs:
            src = self.ir.edges[(layer.id, port)]
            if src not in self.values:
                raise ModelError(f"{layer.where}: reads output port {src[1]} of layer "
                                 f"{self.ir.layers[src[0]].name!r}, which is not supported")
            out.append(self.values[src])
        return out

    def run(self, order: list[IrLayer]) -> None:
        with open(self.ir.bin_path, "rb") as weights:
            for layer in order:
                if layer.type == "Result":
                    continue
                value = self.layer(layer, weights)
                self.check_dims(layer, value)
                if isinstance(value, _Const):
                    value = _Const(value.values, self.names[(layer.id, layer.outputs[0])])
                self.values[(layer.id, layer.outputs[0])] = value

    def layer(self, layer: IrLayer, weights: Any) -> _Value:
        if not layer.outputs:
            raise ModelError(f"{layer.where}: has no output port")
        if layer.type == "Const":
            value = read_const(layer, weights, self.ir.bin_size)
            return _Const((value, value))
        if layer.type == "Parameter":
            if self.input_name is not None:
                raise ModelError(f"{layer.where}: a second input; one is supported")
            shape = _input_shape(layer)
            self.input_name = self.names[(layer.id, layer.outputs[0])]
            metas = [torch.empty(b, *shape, device="meta") for b in BATCHES]
            return _Dyn((metas[0], metas[1]), self.input_name)
        inputs = self.input_values(layer)
        if layer.type == "ShapeOf":
            if len(inputs) != 1:
                raise ModelError(f"{layer.where}: takes 1 input, has {len(inputs)}")
            dtype = torch.int32 if layer.data.get("output_type") == "i32" else torch.int64
            shapes = _shapes(inputs[0])
            return _Const((torch.tensor(shapes[0], dtype=dtype),
                           torch.tensor(shapes[1], dtype=dtype)))
        if layer.type not in OP_TABLE:
            raise ModelError(f"unsupported IR op type {layer.type!r} (layer {layer.name!r})")
        if layer.type == "MVN" and layer.version not in MVN_VERSIONS:
            raise ModelError(f"{layer.where}: unsupported version {layer.version!r} "
                             f"(supported: {', '.join(MVN_VERSIONS)})")
        return self.op(layer, inputs)

    def op(self, layer: IrLayer, inputs: list[_Value]) -> _Value:
        attrs = {k: layer.data[k] for k in KEPT_ATTRS.get(layer.type, ()) if k in layer.data}
        structural = STRUCTURAL.get(layer.type, {})
        consts: dict[str, _Const] = {}
        for i, key in structural.items():
            value = inputs[i] if i < len(inputs) else None
            if not isinstance(value, _Const):
                raise ModelError(f"{layer.where}: input {i} ({key}) must be a constant")
            consts[key] = value
        data = [v for i, v in enumerate(inputs) if i not in structural]
        for key, const in consts.items():
            if key == "shape":
                attrs[key] = _resolve_reshape(layer.where, const, data[0],
                                              bool(layer.data.get("special_zero", False)))
                continue
            value = const.plain(layer.where)
            if key == "axis":
                if value.numel() != 1:
                    raise ModelError(f"{layer.where}: axis must hold one value")
                attrs[key] = int(value.item())
            else:
                attrs[key] = [int(v) for v in value.flatten().tolist()]
            if key == "indices":
                attrs["indices_shape"] = list(value.shape)
        if layer.type == "GroupConvolution":
            data[1] = _torch_group_weight(layer, data[1], attrs)
        _explicit_pads(layer, attrs, inputs)
        node = {"op": layer.type, "name": layer.name, "inputs": [v.name for v in data],
                "attrs": attrs, "outputs": [self.names[(layer.id, layer.outputs[0])]]}
        fn = make_ir_op(node)
        try:
            if all(isinstance(v, _Const) for v in data):  # fold: shape first, then values
                consts = [v for v in data if isinstance(v, _Const)]
                check_folded_size(fn([v.values[0].to("meta") for v in consts]).shape,
                                  layer.where)
                return _Const((fn([v.values[0] for v in consts]),
                               fn([v.values[1] for v in consts])))
            metas = tuple(fn([v.metas[t] if isinstance(v, _Dyn) else v.values[t].to("meta")
                              for v in data]) for t in range(len(BATCHES)))
        except (RuntimeError, IndexError, ValueError) as exc:
            raise ModelError(f"{layer.where}: {first_line(exc)}") from exc
        for v in data:
            if isinstance(v, _Const):
                self.tensors.setdefault(v.name, v.plain(layer.where))
        self.nodes.append(node)
        return _Dyn((metas[0], metas[1]), node["outputs"][0])

    def check_dims(self, layer: IrLayer, value: _Value) -> None:
        """The batch-1 trace must give the shape the file states for the layer."""
        got = _shapes(value)[0]
        want = layer.dims[0] if layer.dims else ()
        if len(got) != len(want) or any(w is not None and w != g
                                        for g, w in zip(got, want, strict=True)):
            shown = ["?" if w is None else w for w in want]
            raise ModelError(f"{layer.where}: computes shape {got}, the file states {shown}")


def read_ir_graph(xml_path: str | Path, output: str | None = None,
                  bin_path: str | Path | None = None,
                  ) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """Read an IR graph, fold it, and cut it at the tensor ``output``.

    Args:
        xml_path: the ``.xml`` graph.
        output: the tensor to stop at, named after its layer (e.g. ``"1126"``, the last
            conv map of the OMZ ReID graphs); ``None``: the graph's single Result
            (``"reid_embedding"``).
        bin_path: the weights; default the ``.bin`` beside ``xml_path``.

    Returns:
        ``(spec, tensors)``: the folded graph as plain data and its weights (f32,
        by name).

    Raises:
        ModelError: unreadable or malformed files, an unsupported op, version or
            attribute, constants outside the ``.bin``, shapes that disagree with the
            file, an output that does not depend on the input.
    """
    ir = read_ir_file(xml_path, bin_path)
    names = tensor_names(ir)
    try:
        out_key = output_port(ir, names, output)
        folder = _Folder(ir, names)
        folder.run(topological_order(ir, out_key[0]))
    except ModelError as exc:
        raise ModelError(f"{xml_path}: {exc}") from exc
    if out_key not in folder.values:
        raise ModelError(f"{xml_path}: tensor {names[out_key]!r} is not the first output of "
                         "its layer")
    result = folder.values[out_key]
    if not isinstance(result, _Dyn) or folder.input_name is None:
        raise ModelError(f"{xml_path}: tensor {names[out_key]!r} does not depend on the input")
    used = {n for node in folder.nodes for n in node["inputs"]}
    tensors = {k: v for k, v in folder.tensors.items() if k in used}
    spec: GraphSpec = {
        "format": IR_GRAPH_FORMAT,
        "input": folder.input_name,
        "output": result.name,
        "nodes": folder.nodes,
        "initializers": {name: list(t.shape) for name, t in tensors.items()},
    }
    return spec, tensors


def load_ir_module(xml_path: str | Path, output: str | None = None,
                   bin_path: str | Path | None = None) -> IrGraphModule:
    """Build a trainable torch module from an IR graph, cut at ``output``.

    Args:
        xml_path, output, bin_path: as for :func:`read_ir_graph`.

    Returns:
        An :class:`IrGraphModule` whose parameters are the graph's float constants;
        its input is what the IR's input is (for the OMZ graphs BGR in 0-255).

    Raises:
        ModelError: see :func:`read_ir_graph`.
    """
    spec, tensors = read_ir_graph(xml_path, output, bin_path)
    return IrGraphModule(spec, tensors)
