"""A short, deterministic id of the feature space a model + PCA produce.

Stored with every vector in the database, so that searching or writing with
another model is refused instead of silently mixing feature spaces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from reidctl.model.backbones import BackboneSpec
from reidctl.model.convnet import CLASSIFIER_PREFIX, TRAINING_ONLY
from reidctl.model.pca import PCA

FINGERPRINT_CHARS = 16


def _update_tensor(h: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    data = tensor.detach().to("cpu", torch.float32).contiguous()
    h.update(f"{name}:{list(data.shape)};".encode())
    h.update(data.numpy().tobytes())


def fingerprint(
    model: nn.Module, spec: BackboneSpec, pca: PCA, stripes: int = 4,
    stripe_pca: Sequence[PCA] = (),
) -> str:
    """16 hex characters of sha256 over everything that shapes the descriptors.

    Hashed, in order: backbone name, input size, ``K``, stripes; every
    state_dict tensor except the classifier block (sorted by name, raw bytes
    as float32 on CPU, with its name and shape); the PCA kind, whitening flag
    and arrays. Train/eval mode and device do not change it.

    Args:
        model: a :class:`~reidctl.model.convnet.ConvNet` (or any module; keys
            starting with ``"classifier."`` and the training-only blocks are skipped).
        spec: the backbone spec.
        pca: the projection used for ``f_g``.
        stripes: number of stripes of ``f_l``.
        stripe_pca: the per-stripe whitening of ``f_l`` (empty: none).

    Returns:
        e.g. ``"3f9a0c1d2b4e5f60"``.
    """
    h = hashlib.sha256()
    h.update(
        f"{spec.name};{spec.input_size[0]}x{spec.input_size[1]};K={spec.channels};stripes={stripes};".encode()
    )
    state = model.state_dict()
    for name in sorted(state):
        if not name.startswith((CLASSIFIER_PREFIX, *TRAINING_ONLY)):
            _update_tensor(h, name, state[name])
    for prefix, p in [("pca", pca), *((f"stripe{j}.pca", sp) for j, sp in enumerate(stripe_pca))]:
        h.update(f"{prefix}:{p.kind};whiten={p.whiten};".encode())
        if p.shrinkage:  # absent from files written before shrinkage existed
            h.update(f"shrinkage={p.shrinkage!r};".encode())
        for i, array in enumerate(p.arrays()):
            _update_tensor(h, f"{prefix}{i}", array)
    return h.hexdigest()[:FINGERPRINT_CHARS]
