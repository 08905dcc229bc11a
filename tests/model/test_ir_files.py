"""Broken IR files: each is a copy of the real 0286 network with one thing changed."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from reidctl.errors import ModelError
from reidctl.model import read_ir_graph
from reidctl.model.backbones import OMZ_CUT, OMZ_FILES

XML = OMZ_FILES["omz_0286"]


@pytest.fixture(scope="module")
def source(omz_dir: Path) -> tuple[str, bytes]:
    xml = omz_dir / XML
    return xml.read_text(), xml.with_suffix(".bin").read_bytes()


def _copy(tmp_path: Path, xml_text: str, weights: bytes) -> Path:
    xml = tmp_path / XML
    xml.write_text(xml_text)
    xml.with_suffix(".bin").write_bytes(weights)
    return xml


def _first_const(root: ET.Element, element_type: str) -> ET.Element:
    return next(layer.find("data") for layer in root.iter("layer")  # type: ignore[misc]
                if layer.get("type") == "Const"
                and layer.find("data").get("element_type") == element_type)  # type: ignore[union-attr]


def _edit_tree(text: str, edit: Callable[[ET.Element], None]) -> str:
    root = ET.fromstring(text)
    edit(root)
    return ET.tostring(root, encoding="unicode")


def _offset_beyond(root: ET.Element) -> None:
    _first_const(root, "f16").set("offset", str(10**9))


def _size_mismatch(root: ET.Element) -> None:
    data = _first_const(root, "f16")
    data.set("size", str(int(data.get("size", "0")) + 2))


def _type_unknown(root: ET.Element) -> None:
    next(la for la in root.iter("layer") if la.get("type") == "Sigmoid").set("type", "Softplus")


def _shape_differs(root: ET.Element) -> None:
    """The file claims the cut map is 15 rows high."""
    layer = next(la for la in root.iter("layer") if la.get("name") == OMZ_CUT)
    layer.find("output/port/dim[3]").text = "15"  # type: ignore[union-attr]


def _mvn_1(root: ET.Element) -> None:
    next(la for la in root.iter("layer") if la.get("type") == "MVN").set("version", "opset2")


def _dangling_edge(root: ET.Element) -> None:
    root.find("edges/edge").set("from-layer", "999999")  # type: ignore[union-attr]


@pytest.mark.parametrize(("edit", "fragment"), [
    (_offset_beyond, "lie outside the"),
    (_size_mismatch, "bytes != "),
    (_type_unknown, "unsupported IR op type 'Softplus'"),
    (_shape_differs, "computes shape [1, 384, 16, 8], the file states [1, 384, 15, 8]"),
    (_mvn_1, "unsupported version 'opset2'"),
    (_dangling_edge, "an edge leaves unknown layer/port"),
], ids=["offset", "size", "unknown-op", "shape", "mvn-version", "edge"])
def test_edited_graph(source: tuple[str, bytes], tmp_path: Path,
                      edit: Callable[[ET.Element], None], fragment: str) -> None:
    xml = _copy(tmp_path, _edit_tree(source[0], edit), source[1])
    with pytest.raises(ModelError) as info:
        read_ir_graph(xml, OMZ_CUT)
    message = str(info.value)
    assert fragment in message and str(xml) in message and "\n" not in message


def test_truncated_weights(source: tuple[str, bytes], tmp_path: Path) -> None:
    xml = _copy(tmp_path, source[0], source[1][: len(source[1]) // 2])
    with pytest.raises(ModelError, match="lie outside the"):
        read_ir_graph(xml, OMZ_CUT)


@pytest.mark.parametrize(("text", "fragment"), [
    (lambda t: t[: len(t) // 2], "malformed IR XML"),
    (lambda t: t.replace("<net ", '<!DOCTYPE net [<!ENTITY a "b">]>\n<net ', 1),
     "document type declarations refused"),
    (lambda t: t.replace('version="11"', 'version="7"', 1), "not an OpenVINO IR graph"),
], ids=["truncated", "doctype", "version"])
def test_malformed_xml(source: tuple[str, bytes], tmp_path: Path,
                       text: Callable[[str], str], fragment: str) -> None:
    xml = _copy(tmp_path, text(source[0]), source[1])
    with pytest.raises(ModelError, match=fragment):
        read_ir_graph(xml, OMZ_CUT)


def test_missing_files_and_unknown_tensor(omz_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="IR file not found"):
        read_ir_graph(tmp_path / XML)
    shutil.copy(omz_dir / XML, tmp_path / XML)  # the .bin is missing
    with pytest.raises(ModelError, match=r"IR file not found: .*\.bin"):
        read_ir_graph(tmp_path / XML)
    with pytest.raises(ModelError, match="no IR layer produces tensor 'no_such_tensor'"):
        read_ir_graph(omz_dir / XML, "no_such_tensor")
