"""Global and local descriptors from one feature map (pure torch, no I/O).

Both descriptors are L2-normalised: on unit vectors the squared Euclidean
distance is ``2 - 2 cos``, so Euclidean ranking (what the vector store does)
is the same as cosine ranking; it also makes distances comparable across
images of different contrast or brightness, whose feature maps differ mostly
by scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from reidctl.model.pca import PCA

T = TypeVar("T", torch.Tensor, np.ndarray)

GLOBAL_DIM = 128  # f_g after PCA, the paper's size
STRIPES = 4  # horizontal stripes of f_l, the paper's count


@dataclass(frozen=True)
class Descriptors(Generic[T]):
    """The two descriptors of a batch of images (unpacks as ``f_g, f_l = d``).

    Attributes:
        global_: ``(B, 128)`` unit-norm ``f_g`` for the coarse (ANN) search.
        local: ``(B, stripes * K)`` unit-norm ``f_l`` for re-ranking.
    """

    global_: T
    local: T

    def __iter__(self) -> Iterator[T]:
        return iter((self.global_, self.local))


def pool(feature_map: torch.Tensor, stripes: int = STRIPES) -> tuple[torch.Tensor, torch.Tensor]:
    """Global and per-stripe average pooling of the last convolutional map.

    Args:
        feature_map: ``(B, K, H, W)`` with ``H`` divisible by ``stripes``.
        stripes: number of horizontal stripes.

    Returns:
        GAP ``(B, K)`` and the GAP of each stripe ``(B, K, stripes)``, top stripe first.

    Raises:
        ValueError: not a 4-D map, or ``H`` not divisible by ``stripes``.
    """
    if feature_map.dim() != 4:
        raise ValueError(f"feature map must be (B, K, H, W), got shape {list(feature_map.shape)}")
    b, k, h, w = feature_map.shape
    if stripes < 1 or h % stripes:
        raise ValueError(f"feature map height {h} is not divisible into {stripes} stripes")
    parts = feature_map.reshape(b, k, stripes, h // stripes, w)  # (B, K, stripes, h, W)
    return feature_map.mean(dim=(2, 3)), parts.mean(dim=(3, 4))  # (B, K), (B, K, stripes)


def describe(
    feature_map: torch.Tensor, pca: PCA, stripes: int = STRIPES, stripe_pca: Sequence[PCA] = (),
    global_input: torch.Tensor | None = None,
) -> Descriptors[torch.Tensor]:
    """Compute ``f_g`` and ``f_l`` from the last convolutional map.

    ``f_g``: GAP over ``H x W`` -> ``K``-D, PCA -> 128-D, L2-normalise.
    ``f_l``: split ``H`` into ``stripes`` horizontal stripes, GAP each ->
    ``K``-D, project each stripe when ``stripe_pca`` is given (one ``K -> D`` projection
    per stripe, fitted on training data: a whitening or a discriminant projection),
    L2-normalise each stripe, concatenate, scale by
    ``1/sqrt(stripes)`` so the whole vector has unit norm.

    Why normalise: Euclidean distance between unit vectors is monotone in
    cosine similarity, so the store's L2 search ranks by angle; it makes
    distances comparable across images of different contrast/brightness
    (which mostly scale the activations); and normalising each stripe gives
    the stripes equal weight, so one bright stripe (say, a white shirt) cannot
    dominate the local distance.

    Args:
        feature_map: ``(B, K, H, W)`` with ``H`` divisible by ``stripes``.
        pca: projection ``K -> 128`` (fitted, identity or random-orthogonal).
        stripes: number of horizontal stripes (4 in the paper).
        stripe_pca: ``stripes`` projections ``K -> D`` (a whitening, ``D = K``, or a
            discriminant projection fitted on identities, ``D <= K``), or empty for none.
        global_input: ``(B, D_in)`` what to project to f_g instead of the GAP (a
            network's own pooling head, :meth:`ConvNet.global_input`); ``pca`` maps
            ``D_in -> 128`` then.

    Returns:
        ``Descriptors(global_ (B, 128), local (B, stripes * D))`` tensors on the
        input's device. An all-zero map gives zero vectors, not NaN.

    Raises:
        ValueError: not a 4-D map, ``H`` not divisible by ``stripes``, or
            the global input's size different from the PCA's input dimension.
    """
    pooled, parts = pool(feature_map, stripes)  # (B, K), (B, K, stripes)
    b, k = pooled.shape
    pooled = pooled if global_input is None else global_input  # (B, D_in)
    global_ = F.normalize(pca.transform(pooled), dim=1)  # (B, D)
    if stripe_pca:
        if len(stripe_pca) != stripes:
            raise ValueError(f"{len(stripe_pca)} stripe projections for {stripes} stripes")
        parts = torch.stack(
            [p.transform(parts[:, :, i]) for i, p in enumerate(stripe_pca)], dim=2
        )  # (B, K, stripes)
    parts = F.normalize(parts, dim=1)  # each stripe unit norm over K
    local = parts.transpose(1, 2).reshape(b, -1)  # (B, stripes * D), stripe-major
    return Descriptors(global_, local / math.sqrt(stripes))


def full_descriptor(global_: T, local: T) -> T:
    """The concatenated descriptor for the linear-scan baseline.

    Args:
        global_: ``(B, D)`` unit-norm ``f_g`` (torch or numpy).
        local: ``(B, Dl)`` unit-norm ``f_l`` (same type as ``global_``).

    Returns:
        ``(B, D + Dl)`` = ``[f_g, f_l] / sqrt(2)``, unit norm, same type as the inputs.
    """
    scale = 1.0 / math.sqrt(2.0)
    if isinstance(global_, torch.Tensor):
        return torch.cat([global_, local], dim=1) * scale
    return (np.concatenate([global_, local], axis=1) * scale).astype(global_.dtype, copy=False)
