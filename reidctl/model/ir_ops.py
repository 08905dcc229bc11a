"""The OpenVINO IR op table: a folded IR graph run with torch ops, as a trainable module.

:mod:`reidctl.model.ir_import` reads an IR ``.xml``/``.bin`` pair and folds everything
that does not depend on the image (constants, their ``Convert``, the shape subgraph
``ShapeOf``/``Gather``/``Concat``/...) into attributes and weights, so the nodes
compiled here are static ops on tensors. Semantics follow OpenVINO's operation
specifications (``Convolution-1``, ``GroupConvolution-1``, ``MVN-6``, ``Gather-8``,
``AvgPool-1``, ``MaxPool-8``, ``MatMul-1``, ``PReLU-1``, ``ReduceMean-1``,
``Reshape-1``, ...). Attributes are checked here too, since a spec may come from a file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from reidctl.errors import ModelError
from reidctl.model.graph_exec import (
    MAX_INITIALIZER_ELEMENTS,
    MAX_RANK,
    GraphModule,
    NodeSpec,
    Op,
    int_list,
    where,
)

IR_GRAPH_FORMAT = "reidctl.irgraph/1"
LABEL = "IR"
MAX_GATHER = 2**16  # indices of one Gather kept as an attribute
MAX_DIM = 2**31  # one dimension of a Reshape target
DTYPES: dict[str, torch.dtype] = {"f32": torch.float32, "f16": torch.float16,
                                  "i64": torch.int64, "i32": torch.int32}
POOL_ROUNDING = {"floor": False, "ceil": True, "ceil_torch": True}  # -> torch ceil_mode


def _bool(attrs: Mapping[str, Any], key: str, default: bool, at: str) -> bool:
    value = attrs.get(key, default)
    if not isinstance(value, bool):
        raise ModelError(f"{at}: {key} must be true or false, got {value!r}")
    return value


def _choice(attrs: Mapping[str, Any], key: str, default: str, allowed: Any, at: str) -> str:
    value = attrs.get(key, default)
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ModelError(f"{at}: unsupported {key} {value!r} (supported: {', '.join(allowed)})")
    return value.lower()


def _int(attrs: Mapping[str, Any], key: str, at: str, low: int, high: int) -> int:
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(f"{at}: {key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _ints(attrs: Mapping[str, Any], key: str, at: str, low: int, high: int,
          max_count: int = MAX_RANK) -> list[int]:
    value = attrs.get(key)
    if (not isinstance(value, list) or len(value) > max_count
            or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high
                   for v in value)):
        raise ModelError(f"{at}: {key} must be a list of at most {max_count} integers in "
                         f"[{low}, {high}], got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _arity(node: NodeSpec, low: int, high: int | None = None) -> None:
    n = len(node["inputs"])
    if n < low or n > (low if high is None else high):
        want = low if high is None else f"{low} to {high}"
        raise ModelError(f"{where(LABEL, node)}: takes {want} inputs, has {n}")


def _window(attrs: Mapping[str, Any], at: str) -> dict[str, tuple[int, int]]:
    """Strides, dilations and explicit pads of a 2-D convolution or pooling.

    The importer turns every ``auto_pad`` mode into explicit pads.
    """
    _choice(attrs, "auto_pad", "explicit", ("explicit", "notset"), at)
    return {key: int_list(attrs, key, default, at, low, 2)
            for key, default, low in (("strides", None, 1), ("dilations", (1, 1), 1),
                                      ("pads_begin", None, 0), ("pads_end", None, 0))}


def _padded(x: torch.Tensor, w: dict[str, tuple[int, int]], value: float) -> tuple[
        torch.Tensor, tuple[int, int]]:
    """``x`` padded by hand when the pads differ on both sides, and what torch pads."""
    begin, end = w["pads_begin"], w["pads_end"]
    if begin == end:
        return x, begin
    return F.pad(x, (begin[1], end[1], begin[0], end[0]), value=value), (0, 0)


def _convolution(node: NodeSpec) -> Op:
    """Convolution-1, and GroupConvolution-1 with its weight already in torch's layout.

    The importer reshapes a group convolution's ``(G, O/G, C/G, kh, kw)`` weight to
    ``(O, C/G, kh, kw)`` and records ``groups``: every weight is then 4-D, as
    ``channels_last`` training wants.
    """
    _arity(node, 2)
    at = where(LABEL, node)
    w = _window(node["attrs"], at)
    groups = _int(node["attrs"], "groups", at, 1, 2**16) if node["op"] == "GroupConvolution" else 1

    def conv(xs: list[torch.Tensor]) -> torch.Tensor:
        x, weight = xs  # (B, C, H, W), (O, C / groups, kh, kw)
        x, pad = _padded(x, w, 0.0)
        return F.conv2d(x, weight, None, w["strides"], pad, w["dilations"], groups)

    return conv


def _pool(node: NodeSpec) -> Op:
    _arity(node, 1)
    attrs, at = node["attrs"], where(LABEL, node)
    w = _window(attrs, at)
    kernel = int_list(attrs, "kernel", None, at, 1, 2)
    ceil_mode = POOL_ROUNDING[_choice(attrs, "rounding_type", "floor", POOL_ROUNDING, at)]
    if node["op"] == "MaxPool":
        def max_pool(xs: list[torch.Tensor]) -> torch.Tensor:
            x, pad = _padded(xs[0], w, -math.inf)
            return F.max_pool2d(x, kernel, w["strides"], pad, w["dilations"], ceil_mode)

        return max_pool
    if w["dilations"] != (1, 1):
        raise ModelError(f"{at}: AvgPool has no dilations")
    exclude = _bool(attrs, "exclude_pad", False, at)
    if exclude and w["pads_begin"] != w["pads_end"]:
        raise ModelError(f"{at}: unsupported uneven pads with exclude-pad")

    def avg_pool(xs: list[torch.Tensor]) -> torch.Tensor:
        x, pad = _padded(xs[0], w, 0.0)
        return F.avg_pool2d(x, kernel, w["strides"], pad, ceil_mode, not exclude)

    return avg_pool


def _binary(node: NodeSpec) -> Op:
    _arity(node, 2)
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = {
        "Add": torch.add, "Subtract": torch.sub, "Multiply": torch.mul}[node["op"]]
    mode = _choice(node["attrs"], "auto_broadcast", "numpy", ("numpy", "none"), where(LABEL, node))

    def binary(xs: list[torch.Tensor]) -> torch.Tensor:
        if mode == "none" and xs[0].shape != xs[1].shape:
            raise RuntimeError(f"shapes {list(xs[0].shape)} and {list(xs[1].shape)} differ "
                               "and auto_broadcast is none")
        return fn(xs[0], xs[1])  # numpy broadcasting == torch broadcasting

    return binary


def _prelu(xs: list[torch.Tensor]) -> torch.Tensor:
    x, slope = xs
    if slope.dim() == 1 and x.dim() >= 2 and slope.shape[0] == x.shape[1]:  # per channel
        slope = slope.view(1, -1, *([1] * (x.dim() - 2)))  # (1, C, 1, ...)
    return torch.where(x >= 0, x, x * slope)


def _mvn(node: NodeSpec) -> Op:
    _arity(node, 1)
    attrs, at = node["attrs"], where(LABEL, node)
    axes = _ints(attrs, "axes", at, -MAX_RANK, MAX_RANK - 1)
    if not axes:
        raise ModelError(f"{at}: axes must not be empty")
    scale = _bool(attrs, "normalize_variance", True, at)
    eps = attrs.get("eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ModelError(f"{at}: eps must be a finite number >= 0, got {eps!r}")
    inside = _choice(attrs, "eps_mode", "", ("inside_sqrt", "outside_sqrt"), at) == "inside_sqrt"

    def mvn(xs: list[torch.Tensor]) -> torch.Tensor:
        centred = xs[0] - xs[0].mean(dim=axes, keepdim=True)
        if not scale:
            return centred
        var = centred.square().mean(dim=axes, keepdim=True)  # biased, as MVN-6 defines it
        return centred / (torch.sqrt(var + eps) if inside else torch.sqrt(var) + eps)

    return mvn


def _reduce_mean(node: NodeSpec) -> Op:
    _arity(node, 1)
    at = where(LABEL, node)
    axes = _ints(node["attrs"], "axes", at, -MAX_RANK, MAX_RANK - 1)
    keep = _bool(node["attrs"], "keep_dims", False, at)
    if not axes:  # ReduceMean over no axis is the identity (torch would reduce all)
        return lambda xs: xs[0]
    return lambda xs: xs[0].mean(dim=axes, keepdim=keep)


def _reshape(node: NodeSpec) -> Op:
    _arity(node, 1)
    at = where(LABEL, node)
    shape = _ints(node["attrs"], "shape", at, -1, MAX_DIM)
    if shape.count(-1) > 1:
        raise ModelError(f"{at}: shape {shape} has more than one -1")
    return lambda xs: xs[0].reshape(shape)


def _gather(node: NodeSpec) -> Op:
    """Gather-8 with constant indices; out-of-range indices give zeros, as specified."""
    _arity(node, 1)
    attrs, at = node["attrs"], where(LABEL, node)
    axis = _int(attrs, "axis", at, -MAX_RANK, MAX_RANK - 1)
    if attrs.get("batch_dims", 0) != 0:
        raise ModelError(f"{at}: unsupported batch_dims {attrs.get('batch_dims')!r}")
    indices = _ints(attrs, "indices", at, -MAX_DIM, MAX_DIM, MAX_GATHER)
    shape = _ints(attrs, "indices_shape", at, 0, MAX_GATHER)
    if math.prod(shape) != len(indices):
        raise ModelError(f"{at}: {len(indices)} indices for indices_shape {shape}")
    raw = torch.tensor(indices, dtype=torch.int64, device="cpu")  # (I,), even under a meta
    # device context: the module is built on meta when a checkpoint is checked

    def gather(xs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[0]
        if not -x.dim() <= axis < x.dim():
            raise RuntimeError(f"axis {axis} out of range for rank {x.dim()}")
        a = axis % x.dim()
        n = x.shape[a]
        valid = (raw >= -n) & (raw < n)  # (I,)
        idx = torch.where(raw < 0, raw + n, raw) * valid  # (I,) in [0, n)
        out = x.index_select(a, idx.to(x.device))  # (..., I, ...)
        if not bool(valid.all()):
            mask = valid.to(x.device, x.dtype).view([1] * a + [-1] + [1] * (x.dim() - a - 1))
            out = out * mask
        return out.reshape(*x.shape[:a], *shape, *x.shape[a + 1:])

    return gather


def _concat(node: NodeSpec) -> Op:
    _arity(node, 1, 2**10)
    axis = _int(node["attrs"], "axis", where(LABEL, node), -MAX_RANK, MAX_RANK - 1)
    return lambda xs: torch.cat(xs, dim=axis)


def _matmul(node: NodeSpec) -> Op:
    _arity(node, 2)
    at = where(LABEL, node)
    ta, tb = (_bool(node["attrs"], k, False, at) for k in ("transpose_a", "transpose_b"))

    def matmul(xs: list[torch.Tensor]) -> torch.Tensor:
        a, b = xs  # transposes swap the last two axes; 1-D operands ignore them
        a = a.transpose(-1, -2) if ta and a.dim() > 1 else a
        b = b.transpose(-1, -2) if tb and b.dim() > 1 else b
        return torch.matmul(a, b)

    return matmul


def _convert(node: NodeSpec) -> Op:
    _arity(node, 1)
    dtype = DTYPES[_choice(node["attrs"], "destination_type", "", DTYPES, where(LABEL, node))]
    return lambda xs: xs[0].to(dtype)


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[NodeSpec], Op]:
    def make(node: NodeSpec) -> Op:
        _arity(node, 1)
        return lambda xs: fn(xs[0])
    return make


def _two_inputs(fn: Callable[[list[torch.Tensor]], torch.Tensor]) -> Callable[[NodeSpec], Op]:
    def make(node: NodeSpec) -> Op:
        _arity(node, 2)
        return fn
    return make


OP_TABLE: dict[str, Callable[[NodeSpec], Op]] = {
    "Convolution": _convolution, "GroupConvolution": _convolution,
    "AvgPool": _pool, "MaxPool": _pool,
    "Add": _binary, "Subtract": _binary, "Multiply": _binary,
    "ReLU": _unary(F.relu), "Sigmoid": _unary(torch.sigmoid), "Floor": _unary(torch.floor),
    "PReLU": _two_inputs(_prelu), "MVN": _mvn, "ReduceMean": _reduce_mean,
    "Reshape": _reshape, "Gather": _gather, "Concat": _concat, "MatMul": _matmul,
    "Convert": _convert,
}


def make_ir_op(node: NodeSpec) -> Op:
    """Compile one IR node (attributes already folded by the importer) into a callable.

    Raises:
        ModelError: unknown op type, wrong number of inputs, bad attributes.
    """
    make = OP_TABLE.get(node["op"])
    if make is None:
        raise ModelError(f"unsupported IR op type {node['op']!r} (layer {node['name']!r})")
    return make(node)


class IrGraphModule(GraphModule):
    """Runs a folded OpenVINO IR graph with torch ops (see :class:`GraphModule`).

    Args:
        spec: the graph as plain data, format ``"reidctl.irgraph/1"``.
        tensors: weights by name (f32), or ``None`` to rebuild from a checkpoint.

    Raises:
        ModelError: unknown op type, bad attributes, missing weight, malformed spec.
    """

    FORMAT = IR_GRAPH_FORMAT
    LABEL = "IR"
    make_op = staticmethod(make_ir_op)


def check_folded_size(shape: torch.Size, at: str) -> None:
    """Refuse a constant the importer would fold to more than MAX_INITIALIZER_ELEMENTS.

    Raises:
        ModelError: naming the layer.
    """
    if math.prod(shape) > MAX_INITIALIZER_ELEMENTS:
        raise ModelError(f"{at}: folds to a constant of shape {list(shape)}, larger than "
                         f"{MAX_INITIALIZER_ELEMENTS:,} elements")
