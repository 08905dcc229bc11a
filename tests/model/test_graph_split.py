"""Splitting a graph backbone at a clean cut: same outputs, shared weights, bad cuts refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reidctl.data.batches import decoded_batches
from reidctl.errors import ModelError
from reidctl.model import GraphModule, build_backbone, normalize

# A clean cut of each backbone: the input of its conv4 stage.
CUTS = {"osnet_x0_25": "/conv3/conv3.2/conv3.2.1/AveragePool_output_0", "omz_0286": "941"}


def _backbone(name: str) -> torch.nn.Module:
    try:
        return build_backbone(name).module.eval()
    except ModelError as e:
        pytest.skip(f"{name} weights not found: {e}")


def _graph(module: torch.nn.Module) -> GraphModule:
    return module if isinstance(module, GraphModule) else module.graph


def _images(cuhk03_root: Path) -> torch.Tensor:
    files = sorted((cuhk03_root / "train").glob("*.jpg"))[:3]
    _, _, batch = next(decoded_batches(files, (256, 128), 3, strict=True))
    return normalize(batch)  # (3, 3, 256, 128)


@pytest.mark.parametrize("name", sorted(CUTS))
def test_prefix_then_suffix_equals_the_whole_graph(name: str, cuhk03_root: Path) -> None:
    module = _backbone(name)
    x = _images(cuhk03_root)
    prefix, suffix = module.split(CUTS[name])
    with torch.no_grad():
        whole = module(x)  # (3, K, 16, 8)
        middle = prefix(x)
        parts = suffix(middle)
    assert middle.shape[0] == 3 and middle.shape[1] != whole.shape[1]  # an inner tensor
    assert torch.equal(parts, whole)


@pytest.mark.parametrize("name", sorted(CUTS))
def test_segments_share_the_parameters(name: str, cuhk03_root: Path) -> None:
    module = _backbone(name)
    prefix, suffix = module.split(CUTS[name])
    head = getattr(module, "head", None)  # the OMZ pooling head: neither prefix nor suffix
    own = {id(p) for p in module.parameters()} - {id(p) for p in (head.parameters() if head
                                                                   else ())}
    pre, suf = list(prefix.parameters()), list(suffix.parameters())
    assert pre and suf and {id(p) for p in pre + suf} == own
    x = _images(cuhk03_root)[:2]
    with torch.no_grad():
        middle = prefix(x)
    suffix(middle).pow(2).mean().backward()
    assert suf[-1].grad is not None and suf[-1].grad.abs().sum() > 0
    graph = _graph(module)
    attr = next(a for a in graph.param_names.values() if getattr(graph, a) is suf[-1])
    assert getattr(graph, attr).grad is suf[-1].grad  # the same tensor: the module is trained
    assert all(p.grad is None for p in pre)


def test_clean_cuts_split_and_others_are_refused() -> None:
    module = _backbone("omz_0286")
    graph = _graph(module)
    cuts = graph.clean_cuts()
    assert "941" in cuts and graph.output_name not in cuts
    inner = next(node["outputs"][0] for node in graph._nodes if node["outputs"][0] not in cuts)
    with pytest.raises(ModelError, match=f"{inner!r} is not a clean cut.*clean cuts include"):
        module.split(inner)
    with pytest.raises(ModelError, match="no inner tensor 'nope'.*clean cuts include"):
        module.split("nope")
    with pytest.raises(ModelError, match="no inner tensor"):
        module.split(graph.output_name)
