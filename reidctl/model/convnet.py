"""Conv-Net: a base network plus the paper's classifier block.

The classifier block replaces the fully-connected classifier: a 1x1
convolution gives one confidence map per training identity, and global
average pooling turns each map into a class score. It is only needed for
training (softmax cross-entropy over identities) and is dropped afterwards.
Optional part classifiers apply the same block to each horizontal stripe (a 1x1
convolution per stripe, GAP over the stripe's rows), for part supervision during
training only: they are never saved in a checkpoint. A backbone with its own pooling
head (the OMZ networks) gets one more training-only classifier, a linear layer on the
head's output, since f_g is made from that output.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

CLASSIFIER_PREFIX = "classifier."  # state_dict keys of the classifier block
TRAINING_ONLY = ("part_classifiers.", "embedding_classifier.")  # keys never saved nor hashed
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
        part_logits: ``(B, stripes, C)`` class scores of each stripe's classifier, or
            ``None`` without part classifiers.
        embedding: ``(B, D_head)`` the backbone's head output, or ``None`` without an
            embedding classifier.
        embedding_logits: ``(B, C)`` class scores of the embedding classifier, or ``None``.
    """

    feature_map: torch.Tensor
    confidence_maps: torch.Tensor | None
    logits: torch.Tensor | None
    part_logits: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    embedding_logits: torch.Tensor | None = None


class ConvNet(nn.Module):
    """Base network + optional classifier block.

    Args:
        backbone: maps ``(B, 3, H_in, W_in)`` normalised images to ``(B, K, H, W)``.
        channels: ``K``.
        num_classes: ``C`` training identities; 0 means no classifier block
            (zero-shot use, or after training).
        part_stripes: horizontal stripes with a classifier block each (0: none;
            needs ``num_classes > 0``); created after the global block, so its
            seeded initialisation does not depend on them.
    """

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int = 0,
                 part_stripes: int = 0) -> None:
        super().__init__()
        if channels < 1 or num_classes < 0 or part_stripes < 0 or (part_stripes
                                                                   and not num_classes):
            raise ValueError(f"bad ConvNet sizes: channels={channels}, num_classes={num_classes}"
                             f", part_stripes={part_stripes}")
        self.backbone = backbone
        self.channels = channels
        self.num_classes = num_classes
        self.classifier: nn.Conv2d | None = (
            nn.Conv2d(channels, num_classes, 1) if num_classes else None
        )
        self.part_classifiers: nn.ModuleList | None = (
            nn.ModuleList(nn.Conv2d(channels, num_classes, 1) for _ in range(part_stripes))
            if part_stripes else None
        )
        # last, so the other blocks' seeded initialisation does not depend on it
        self.embedding_classifier: nn.Linear | None = (
            nn.Linear(self.global_in_dim, num_classes) if num_classes and self.has_head
            else None)

    def drop_classifier(self) -> None:
        """Remove the classifier blocks (after training); ``num_classes`` becomes 0."""
        self.classifier = None
        self.num_classes = 0
        self.drop_training_blocks()

    def drop_training_blocks(self) -> None:
        """Remove the training-only blocks, per stripe and on the embedding (before a
        checkpoint is written)."""
        self.part_classifiers = None
        self.embedding_classifier = None

    def heads(self, feature_map: torch.Tensor) -> ConvNetOutput:
        """The classifier blocks applied to a feature map.

        Args:
            feature_map: ``(B, K, H, W)``; ``H`` divisible by the part stripes.

        Returns:
            :class:`ConvNetOutput` of that map.
        """
        if self.classifier is None:
            return ConvNetOutput(feature_map, None, None)
        confidence_maps = self.classifier(feature_map)  # (B, C, H, W)
        logits = confidence_maps.mean(dim=(2, 3))  # (B, C)
        part_logits = None
        if self.part_classifiers is not None:
            b, k, h, w = feature_map.shape
            s = len(self.part_classifiers)
            # GAP of a 1x1 convolution's maps over a stripe = the convolution of its GAP
            pooled = feature_map.reshape(b, k, s, h // s, w).mean(dim=(3, 4))  # (B, K, S)
            part_logits = torch.stack([
                F.linear(pooled[:, :, i], conv.weight.flatten(1), conv.bias)  # (B, C)
                for i, conv in enumerate(self.part_classifiers)], dim=1)  # (B, S, C)
        embedding = embedding_logits = None
        if self.embedding_classifier is not None:
            embedding = self.global_input(feature_map)  # (B, D_head)
            embedding_logits = self.embedding_classifier(embedding)  # (B, C)
        return ConvNetOutput(feature_map, confidence_maps, logits, part_logits, embedding,
                             embedding_logits)

    @property
    def has_head(self) -> bool:
        """Whether the backbone brings its own pooling head (``embed``), which f_g uses."""
        return bool(getattr(self.backbone, "embedding_dim", None))

    @property
    def global_in_dim(self) -> int:
        """Size of what f_g is projected from: the backbone's head output, else ``K``."""
        return self.backbone.embedding_dim if self.has_head else self.channels

    def global_input(self, feature_map: torch.Tensor) -> torch.Tensor:
        """What f_g is projected from: the backbone's own pooling head when it has one
        (the OMZ networks' learned weighted pooling and projection), else the GAP.

        Args:
            feature_map: ``(B, K, H, W)``.

        Returns:
            ``(B, global_in_dim)``.
        """
        if self.has_head:
            return self.backbone.embed(feature_map)  # (B, D_head)
        return feature_map.mean(dim=(2, 3))  # (B, K)

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
            ``num_classes == 0``, ``part_logits`` without part classifiers.
        """
        return self.heads(self.backbone(x))  # feature map (B, K, H, W)
