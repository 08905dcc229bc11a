"""Checkpoint editing helpers shared by the checkpoint validation tests: a real
checkpoint (the ``good`` fixture) and edits of one field, refingerprinted when needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from reidctl.errors import ModelError
from reidctl.model import (
    OSNET_X0_25,
    PCA,
    ConvNet,
    FeatureExtractor,
    ModelRecord,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from reidctl.model.backbones import backbone_spec

Edit = Callable[[dict[str, Any]], None]

REPO = Path(__file__).resolve().parents[2]
OPEN_SET = {"threshold": 0.9, "target_fmr": 0.01, "fmr": 0.01, "tmr": 0.8,
            "calibrated_on": {"path": "train", "images": 300, "identities": 30,
                              "protocol": "cuhk03"}}


def _fitted(seed: int, whiten: bool) -> PCA:
    features = np.random.default_rng(seed).standard_normal((200, 128)).astype(np.float32)
    return PCA.fit(features, dim=128, whiten=whiten, shrinkage=0.1 if whiten else 0.0)


def write_good_checkpoint(osnet: FeatureExtractor, folder: Path) -> Path:
    """OSNet with a 2-class classifier, a fitted PCA, stripe whitening and an open set."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = ConvNet(osnet.model.backbone, channels=128, num_classes=2)
    path = folder / "good.pt"
    save_checkpoint(path, ModelRecord(
        model, OSNET_X0_25, _fitted(0, False), ["p1", "p2"], extra={"epochs": 1},
        stripe_pca=tuple(_fitted(j + 1, True) for j in range(4)), fine_weight=0.7,
        open_set=OPEN_SET))
    return path


class _FileState(nn.Module):
    """Hands a file's state dict to :func:`fingerprint`, which reads only ``state_dict()``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self._state


def _refingerprint(data: dict[str, Any]) -> None:
    """The fingerprint ``save_checkpoint`` would have written for ``data``.

    Content no PCA can even be made of (a mean and components of different lengths)
    has no fingerprint at all; such files keep theirs, the field checks run first anyway.
    """
    try:
        pca = PCA.from_dict(data["pca"])
        stripe_pca = [PCA.from_dict(p) for p in data.get("stripe_pca", [])]
    except ModelError:
        return
    data["fingerprint"] = fingerprint(_FileState(data["state_dict"]),
                                      backbone_spec(data["backbone"]), pca, data["stripes"],
                                      stripe_pca)


def variant(src: Path, dst: Path, edit: Edit, refingerprint: bool = False) -> Path:
    data = torch.load(src, weights_only=True)
    edit(data)
    if refingerprint:
        _refingerprint(data)
    torch.save(data, dst)
    return dst


def set_field(*keys: str | int, value: Any) -> Edit:
    """An edit that sets ``data[k0][k1]... = value``."""
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


def drop_field(*keys: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return edit


def first_conv(data: dict[str, Any]) -> str:
    """The ONNX name of the stem convolution's weight (a 4-D initializer)."""
    graph = data["arch"]["onnx_graph"]
    return next(n for n, s in graph["initializers"].items() if len(s) == 4)


def expect_refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message
    return message
