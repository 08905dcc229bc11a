"""Identity-balanced batches (P identities x K images) for training with a triplet term.

The batches of an epoch are a pure function of ``(labels, P, K, seed, epoch)``: no
sampler state needs saving beyond the seed and the epoch number, and a resumed run
draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_pk(labels: Sequence[int], p: int, k: int) -> None:
    """Refuses label sets that cannot fill a P x K batch.

    Raises:
        ValueError: ``p < 2`` or ``k < 1``, fewer than ``p`` identities, or no
            identity with at least ``k`` images (every batch would be repeats).
    """
    if p < 2 or k < 1:
        raise ValueError(f"batches need P >= 2 identities and K >= 1 images, got P={p}, K={k}")
    counts = np.bincount(np.asarray(labels, dtype=np.int64)) if len(labels) else np.zeros(0)
    present = int((counts > 0).sum())
    if present < p:
        raise ValueError(f"a batch of P={p} identities needs at least {p} identities, "
                         f"got {present}")
    if not (counts >= k).any():
        raise ValueError(f"no identity has K={k} images (largest has {int(counts.max())}); "
                         "lower the batch K")


def pk_batches(labels: Sequence[int], p: int, k: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch, each ``p`` identities x ``k`` of their images.

    Every identity's images are shuffled and cut into groups of ``k`` (an identity
    with fewer than ``k`` images gives one group drawn with replacement; a remainder
    smaller than ``k`` waits for another epoch); batches then take one group from
    each of ``p`` identities picked at random among those with groups left, until
    fewer than ``p`` remain (as torchreid's RandomIdentitySampler).

    Args:
        labels: ``(N,)`` class index of every training image.
        p: identities per batch.
        k: images per identity.
        seed: run seed.
        epoch: 0-based epoch; the shuffle depends only on ``(seed, epoch)``.

    Returns:
        Lists of ``p * k`` indices into ``labels``, grouped by identity.

    Raises:
        ValueError: as :func:`check_pk`.
    """
    check_pk(labels, p, k)
    rng = np.random.default_rng([seed, epoch])
    y = np.asarray(labels, dtype=np.int64)
    groups: dict[int, list[list[int]]] = {}
    for c in np.unique(y).tolist():
        idx = np.flatnonzero(y == c)
        idx = rng.choice(idx, size=k, replace=True) if len(idx) < k else rng.permutation(idx)
        n = len(idx) // k
        groups[c] = idx[: n * k].reshape(n, k).tolist()  # (groups, k)
    batches: list[list[int]] = []
    available = sorted(groups)
    while len(available) >= p:
        chosen = sorted(rng.choice(len(available), size=p, replace=False).tolist())
        batch: list[int] = []
        for j in chosen:
            batch.extend(groups[available[j]].pop())
        batches.append(batch)
        available = [c for c in available if groups[c]]
    return batches
