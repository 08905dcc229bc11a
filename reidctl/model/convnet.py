"""Conv-Net: a base network plus the paper's classifier block.

The classifier block replaces the fully-connected classifier: a 1x1
convolution gives one confidence map per training identity, and global
average pooling turns each map into a class score. It is only needed for
training (softmax cross-entropy over identities) and is dropped afterwards.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import nn

CLASSIFIER_PREFIX = "classifier."  # state_dict keys of the classifier block
# Every backbone receives inputs normalised with the ImageNet RGB statistics; one whose weights
# expect other pixels (the OpenVINO IR graphs: BGR in 0-255) undoes it in a fixed adapter.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """The input every ConvNet expects: RGB in ``[0, 1]`` normalised with the ImageNet statistics.

    The one place images are normalised (extraction, training and confidence maps alike).

    Args:
        images: ``(B, 3, H, W)`` float in ``[0, 1]``, on any device.

    Returns:
        ``(B, 3, H, W)`` ``(images - mean) / std``, per channel, on the same device.
    """
    mean, std = _statistics(images.device)  # (1, 3, 1, 1) each
    return (images - mean) / std  # (B, 3, H, W)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalize`, for backbones whose weights expect raw pixels.

    Args:
        x: ``(B, 3, H, W)`` normalised images, on any device.

    Returns:
        ``(B, 3, H, W)`` RGB in ``[0, 1]``: ``x * std + mean``, per channel.
    """
    mean, std = _statistics(x.device)  # (1, 3, 1, 1) each
    return x * std + mean  # (B, 3, H, W)


@functools.cache
def _statistics(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet mean and std as (1, 3, 1, 1) tensors on ``device``, made once per
    device (not once per batch on the extraction and training paths)."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    return mean, std


class ConvNetOutput(NamedTuple):
    """What :meth:`ConvNet.forward` returns, in train and eval mode alike.

    Attributes:
        feature_map: ``(B, K, H, W)`` last convolutional map of the base network.
        confidence_maps: ``(B, C, H, W)``, ``None`` when there is no classifier block.
        logits: ``(B, C)`` class scores (GAP of the confidence maps), or ``None``.
    """

    feature_map: torch.Tensor
    confidence_maps: torch.Tensor | None
    logits: torch.Tensor | None


class ConvNet(nn.Module):
    """Base network + optional classifier block.

    Args:
        backbone: maps ``(B, 3, H_in, W_in)`` normalised images to ``(B, K, H, W)``.
        channels: ``K``.
        num_classes: ``C`` training identities; 0 means no classifier block
            (zero-shot use, or after training).
    """

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int = 0) -> None:
        super().__init__()
        if channels < 1 or num_classes < 0:
            raise ValueError(f"bad ConvNet sizes: channels={channels}, num_classes={num_classes}")
        self.backbone = backbone
        self.channels = channels
        self.num_classes = num_classes
        self.classifier: nn.Conv2d | None = (
            nn.Conv2d(channels, num_classes, 1) if num_classes else None
        )

    def drop_classifier(self) -> None:
        """Remove the classifier block (after training); ``num_classes`` becomes 0."""
        self.classifier = None
        self.num_classes = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map only.

        Args:
            x: ``(B, 3, H_in, W_in)`` normalised images.

        Returns:
            ``(B, K, H, W)``.
        """
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> ConvNetOutput:
        """Feature map, confidence maps and class scores.

        Args:
            x: ``(B, 3, H_in, W_in)`` normalised images.

        Returns:
            :class:`ConvNetOutput`; the classifier fields are ``None`` when
            ``num_classes == 0``.
        """
        feature_map = self.backbone(x)  # (B, K, H, W)
        if self.classifier is None:
            return ConvNetOutput(feature_map, None, None)
        confidence_maps = self.classifier(feature_map)  # (B, C, H, W)
        logits = confidence_maps.mean(dim=(2, 3))  # (B, C)
        return ConvNetOutput(feature_map, confidence_maps, logits)
