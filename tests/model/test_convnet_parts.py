"""Per-stripe classifier blocks of ConvNet: the paper's block applied to each stripe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidctl.model import ConvNet


def test_part_logits_are_the_stripe_gap_of_one_by_one_confidence_maps() -> None:
    torch.manual_seed(0)
    net = ConvNet(nn.Identity(), channels=6, num_classes=5, part_stripes=4)
    fm = torch.randn(2, 6, 16, 8)  # (B, K, H, W)
    out = net(fm)
    assert out.part_logits is not None and out.part_logits.shape == (2, 4, 5)
    for s, conv in enumerate(net.part_classifiers or []):
        maps = conv(fm[:, :, 4 * s:4 * (s + 1)])  # (B, C, 4, W): the stripe's confidence maps
        assert torch.allclose(out.part_logits[:, s], maps.mean(dim=(2, 3)), atol=1e-5)
    assert torch.equal(out.logits, net.classifier(fm).mean(dim=(2, 3)))  # type: ignore[misc]


def test_without_parts_the_output_and_init_are_unchanged() -> None:
    torch.manual_seed(1)
    plain = ConvNet(nn.Identity(), 6, 5)
    torch.manual_seed(1)
    parts = ConvNet(nn.Identity(), 6, 5, part_stripes=4)
    assert torch.equal(plain.classifier.weight, parts.classifier.weight)  # type: ignore[union-attr]
    assert plain(torch.randn(1, 6, 16, 8)).part_logits is None
    parts.drop_training_blocks()
    assert parts.state_dict().keys() == plain.state_dict().keys()
    parts = ConvNet(nn.Identity(), 6, 5, part_stripes=4)
    parts.drop_classifier()
    assert parts.part_classifiers is None and parts.num_classes == 0
    with pytest.raises(ValueError, match="bad ConvNet sizes"):
        ConvNet(nn.Identity(), 6, 0, part_stripes=4)
