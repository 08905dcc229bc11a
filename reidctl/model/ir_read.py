"""Read an OpenVINO IR ``.xml`` graph (IR v10/v11) and the constants of its ``.bin``.

Parsing only: layers with their typed attributes and ports, the edges between
ports, constant tensors read at their recorded offsets with every size checked
against the file, tensor names, and the layers an output needs in topological
order. :mod:`reidctl.model.ir_import` folds the result into a graph of torch ops.
Both files come from outside: every count, size and offset is bounded.
"""

from __future__ import annotations

import heapq
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from reidctl.errors import ModelError
from reidctl.model.graph_exec import MAX_INITIALIZER_ELEMENTS, MAX_RANK

IR_VERSIONS = ("10", "11")
MAX_XML_BYTES = 2**26  # 64 MB of XML; the OMZ ReID graphs are well under 1 MB
MAX_LAYERS = 100_000
CONST_TYPES: dict[str, np.dtype] = {
    "f16": np.dtype("<f2"), "f32": np.dtype("<f4"), "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"), "i8": np.dtype("i1"), "u8": np.dtype("u1"),
}
# How each attribute of the supported ops is typed; an attribute not listed stays a string.
INT_LIST_ATTRS = frozenset({"strides", "dilations", "pads_begin", "pads_end", "kernel"})
BOOL_ATTRS = frozenset({"keep_dims", "normalize_variance", "exclude_pad", "transpose_a",
                        "transpose_b", "special_zero"})
INT_ATTRS = frozenset({"axis", "batch_dims"})
FLOAT_ATTRS = frozenset({"eps"})


@dataclass(frozen=True)
class IrLayer:
    """One ``<layer>`` of the graph.

    Attributes:
        id: the layer id (edges refer to it).
        name: the layer name, e.g. ``"1126"``.
        type: the op type, e.g. ``"Convolution"``.
        version: the opset, e.g. ``"opset1"``.
        data: the ``<data>`` attributes, typed (``exclude-pad`` becomes ``exclude_pad``).
        inputs: input port ids, in order.
        outputs: output port ids, in order.
        dims: per output port, its dims as the file states them (``None``: dynamic).
    """

    id: str
    name: str
    type: str
    version: str
    data: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dims: tuple[tuple[int | None, ...], ...]

    @property
    def where(self) -> str:
        """How messages name the layer: ``"IR layer '1126' (ReLU)"``."""
        return f"IR layer {self.name!r} ({self.type})"


@dataclass(frozen=True)
class IrFile:
    """A parsed ``.xml`` and where its weights are.

    Attributes:
        layers: by id, in file order.
        edges: ``(to layer, to port) -> (from layer, from port)``.
        bin_path: the weights file.
        bin_size: its size in bytes.
    """

    layers: dict[str, IrLayer]
    edges: dict[tuple[str, str], tuple[str, str]]
    bin_path: Path
    bin_size: int


def _typed(layer: str, key: str, text: str) -> Any:
    """An attribute's text as the op tables want it (``"1, 1"`` -> ``[1, 1]``)."""
    try:
        if key in INT_LIST_ATTRS:
            return [int(v) for v in text.split(",")] if text.strip() else []
        if key in BOOL_ATTRS:
            if text.strip().lower() not in ("true", "false"):
                raise ValueError(text)
            return text.strip().lower() == "true"
        if key in INT_ATTRS:
            return int(text)
        if key in FLOAT_ATTRS:
            return float(text)
    except ValueError:
        raise ModelError(f"{layer}: attribute {key}={text[:40]!r} is not valid") from None
    return text


def parse_dims(text: str, what: str) -> tuple[int, ...]:
    """A shape attribute (``"1, 3, 1, 1"``, ``""`` for a scalar) as ints.

    Raises:
        ModelError: not a list of at most ``MAX_RANK`` non-negative integers.
    """
    try:
        dims = tuple(int(v) for v in text.split(",")) if text.strip() else ()
    except ValueError:
        raise ModelError(f"{what}: shape {text[:40]!r} is not a list of integers") from None
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise ModelError(f"{what}: shape {list(dims)} must be at most {MAX_RANK} "
                         "non-negative integers")
    return dims


def _port_dims(port: ET.Element) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for dim in port.findall("dim"):
        text = (dim.text or "").strip()
        out.append(int(text) if text.lstrip("-").isdigit() and int(text) >= 0 else None)
    return tuple(out)


def _layer(element: ET.Element) -> IrLayer:
    lid, name, kind = element.get("id"), element.get("name", ""), element.get("type")
    if lid is None or kind is None:
        raise ModelError(f"IR layer {name!r}: needs an id and a type")
    at = f"IR layer {name!r} ({kind})"
    data_el = element.find("data")
    data = {} if data_el is None else {
        key.replace("-", "_"): _typed(at, key.replace("-", "_"), value)
        for key, value in data_el.attrib.items()}
    ins = element.find("input")
    outs = element.find("output")
    in_ports = [] if ins is None else ins.findall("port")
    out_ports = [] if outs is None else outs.findall("port")
    if any(p.get("id") is None for p in [*in_ports, *out_ports]):
        raise ModelError(f"{at}: a port has no id")
    return IrLayer(lid, name, kind, element.get("version", ""), data,
                   tuple(p.get("id", "") for p in in_ports),
                   tuple(p.get("id", "") for p in out_ports),
                   tuple(_port_dims(p) for p in out_ports))


def read_ir_file(xml_path: str | Path, bin_path: str | Path | None = None) -> IrFile:
    """Parse an IR ``.xml`` (its ``.bin`` beside it unless given).

    Raises:
        ModelError: a file missing or too large, XML that does not parse (document
            type declarations are refused outright), another IR version, a layer
            without id or type, duplicate ids, edges naming unknown layers or ports,
            or a port with two incoming edges.
    """
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin") if bin_path is None else Path(bin_path)
    for path in (xml_path, bin_path):
        if not path.is_file():
            raise ModelError(f"IR file not found: {path}")
    if xml_path.stat().st_size > MAX_XML_BYTES:
        raise ModelError(f"{xml_path}: larger than {MAX_XML_BYTES:,} bytes")
    text = xml_path.read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:  # no entity expansion from a file
        raise ModelError(f"malformed IR XML {xml_path}: document type declarations refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ModelError(f"malformed IR XML {xml_path}: {exc}") from exc
    if root.tag != "net" or root.get("version") not in IR_VERSIONS:
        raise ModelError(f"{xml_path}: not an OpenVINO IR graph of version "
                         f"{' or '.join(IR_VERSIONS)} (<{root.tag} version="
                         f"{root.get('version')!r}>)")
    elements = root.findall("layers/layer")
    if not elements or len(elements) > MAX_LAYERS:
        raise ModelError(f"{xml_path}: {len(elements)} layers, expected 1 to {MAX_LAYERS:,}")
    try:
        layers: dict[str, IrLayer] = {}
        for element in elements:
            layer = _layer(element)
            if layer.id in layers:
                raise ModelError(f"{layer.where}: duplicate layer id {layer.id!r}")
            layers[layer.id] = layer
        edges = _edges(root, layers)
    except ModelError as exc:
        raise ModelError(f"{xml_path}: {exc}") from exc
    return IrFile(layers, edges, bin_path, bin_path.stat().st_size)


def _edges(root: ET.Element, layers: dict[str, IrLayer]) -> dict[tuple[str, str], tuple[str, str]]:
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    for edge in root.findall("edges/edge"):
        src = (edge.get("from-layer", ""), edge.get("from-port", ""))
        dst = (edge.get("to-layer", ""), edge.get("to-port", ""))
        if src[0] not in layers or src[1] not in layers[src[0]].outputs:
            raise ModelError(f"an edge leaves unknown layer/port {src}")
        if dst[0] not in layers or dst[1] not in layers[dst[0]].inputs:
            raise ModelError(f"an edge enters unknown layer/port {dst}")
        if dst in edges:
            raise ModelError(f"{layers[dst[0]].where}: port {dst[1]} has two incoming edges")
        edges[dst] = src
    return edges


def read_const(layer: IrLayer, weights: BinaryIO, bin_size: int) -> torch.Tensor:
    """The tensor a ``Const`` layer stores in the ``.bin``.

    Args:
        layer: the Const layer (``element_type``, ``shape``, ``offset``, ``size``).
        weights: the open ``.bin`` file.
        bin_size: its size in bytes.

    Returns:
        The values in their stored type (f16 stays f16; ``Convert`` makes f32).

    Raises:
        ModelError: an unsupported element type, a size that does not match the
            shape, more than ``MAX_INITIALIZER_ELEMENTS`` elements, or bytes outside
            the file.
    """
    data, at = layer.data, layer.where
    dtype = CONST_TYPES.get(str(data.get("element_type")))
    if dtype is None:
        raise ModelError(f"{at}: unsupported element_type {data.get('element_type')!r} "
                         f"(supported: {', '.join(CONST_TYPES)})")
    shape = parse_dims(str(data.get("shape", "")), at)
    count = math.prod(shape)
    if count > MAX_INITIALIZER_ELEMENTS:
        raise ModelError(f"{at}: {count:,} elements, more than {MAX_INITIALIZER_ELEMENTS:,}")
    try:
        offset, size = int(data.get("offset", "")), int(data.get("size", ""))
    except ValueError:
        raise ModelError(f"{at}: offset and size must be integers") from None
    if size != count * dtype.itemsize:
        raise ModelError(f"{at}: size {size} bytes != {count} x {dtype.itemsize} for shape "
                         f"{list(shape)}")
    if offset < 0 or offset + size > bin_size:
        raise ModelError(f"{at}: bytes [{offset}, {offset + size}) lie outside the "
                         f"{bin_size:,}-byte weights file")
    weights.seek(offset)
    raw = weights.read(size)
    if len(raw) != size:
        raise ModelError(f"{at}: the weights file ended after {len(raw)} of {size} bytes")
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def tensor_names(ir: IrFile) -> dict[tuple[str, str], str]:
    """A unique name per output port: the layer name (``"#<id>"`` added when two layers
    share it), and ``":<port>"`` for every output port but the first."""
    counts: dict[str, int] = {}
    for layer in ir.layers.values():
        counts[layer.name] = counts.get(layer.name, 0) + 1
    names: dict[tuple[str, str], str] = {}
    for layer in ir.layers.values():
        base = layer.name if counts[layer.name] == 1 else f"{layer.name}#{layer.id}"
        for i, port in enumerate(layer.outputs):
            names[(layer.id, port)] = base if i == 0 else f"{base}:{port}"
    return names


def topological_order(ir: IrFile, output_layer: str) -> list[IrLayer]:
    """The layers ``output_layer`` depends on, in topological order (file order on ties).

    Raises:
        ModelError: an input port without an edge, or a cycle.
    """
    needed: set[str] = set()
    stack = [output_layer]
    while stack:
        lid = stack.pop()
        if lid in needed:
            continue
        needed.add(lid)
        for port in ir.layers[lid].inputs:
            if (lid, port) not in ir.edges:
                raise ModelError(f"{ir.layers[lid].where}: input port {port} has no edge")
            stack.append(ir.edges[(lid, port)][0])
    position = {lid: i for i, lid in enumerate(ir.layers)}
    waiting = {lid: len(ir.layers[lid].inputs) for lid in needed}  # inputs not yet placed
    readers: dict[str, list[str]] = {}
    for lid in needed:
        for port in ir.layers[lid].inputs:
            readers.setdefault(ir.edges[(lid, port)][0], []).append(lid)
    ready = [(position[lid], lid) for lid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[IrLayer] = []
    while ready:
        lid = heapq.heappop(ready)[1]
        order.append(ir.layers[lid])
        for reader in readers.get(lid, []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, (position[reader], reader))
    if len(order) != len(needed):
        stuck = min((lid for lid, n in waiting.items() if n), key=position.__getitem__)
        raise ModelError(f"{ir.layers[stuck].where}: the graph has a cycle")
    return order


def output_port(ir: IrFile, names: dict[tuple[str, str], str], output: str | None,
                  ) -> tuple[str, str]:
    """``(layer id, port)`` of the tensor to stop at: ``output``, or the single Result's input."""
    if output is None:
        results = [lid for lid, layer in ir.layers.items() if layer.type == "Result"]
        if len(results) != 1:
            raise ModelError(f"{len(results)} Result layers; name the output tensor")
        layer = ir.layers[results[0]]
        if not layer.inputs or (layer.id, layer.inputs[0]) not in ir.edges:
            raise ModelError(f"{layer.where}: has no input")
        return ir.edges[(layer.id, layer.inputs[0])]
    for key, name in names.items():
        if name == output:
            return key
    raise ModelError(f"no IR layer produces tensor {output!r}")
