"""ConvNet's single return structure and the GoogLeNet base network."""

from __future__ import annotations

import pytest
import torch

from reidctl.model import ConvNet, ConvNetOutput, FeatureExtractor
from tests.model.helpers import seeded_images


def test_same_structure_in_train_and_eval(osnet: FeatureExtractor) -> None:
    net = ConvNet(osnet.model.backbone, channels=128, num_classes=5)
    x = seeded_images(2, (256, 128))
    outs = []
    for train in (True, False):
        net.train(train)
        with torch.no_grad():
            out = net(x)
        assert isinstance(out, ConvNetOutput)
        assert out.feature_map.shape == (2, 128, 16, 8)
        assert out.confidence_maps is not None and out.confidence_maps.shape == (2, 5, 16, 8)
        assert out.logits is not None and out.logits.shape == (2, 5)
        torch.testing.assert_close(out.logits, out.confidence_maps.mean(dim=(2, 3)))
        outs.append(out)
    net.eval()
    # no dropout/BN in the BN-folded graph: train and eval agree
    torch.testing.assert_close(outs[0].logits, outs[1].logits)


def test_without_classifier() -> None:
    net = ConvNet(torch.nn.Conv2d(3, 8, 3, padding=1), channels=8, num_classes=0)
    out = net(torch.rand(1, 3, 8, 4))
    assert (
        out.feature_map.shape == (1, 8, 8, 4) and out.confidence_maps is None and out.logits is None
    )
    net = ConvNet(torch.nn.Conv2d(3, 8, 3, padding=1), channels=8, num_classes=3)
    net.drop_classifier()
    assert net.num_classes == 0 and net(torch.rand(1, 3, 8, 4)).logits is None
    with pytest.raises(ValueError):
        ConvNet(torch.nn.Identity(), channels=8, num_classes=-1)


def test_googlenet_feature_map(googlenet: FeatureExtractor) -> None:
    assert googlenet.input_size == (512, 256)
    x = seeded_images(1, (512, 256))
    with torch.no_grad():
        fmap = googlenet.model.features(x)
    assert fmap.shape == (1, 1024, 16, 8)
    d = googlenet.extract(x)
    assert d.global_.shape == (1, 128) and d.local.shape == (1, 4096)
    assert googlenet.pca_kind == "random-orthogonal"
