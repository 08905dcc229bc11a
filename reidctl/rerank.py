"""Fine-level re-ranking of coarse candidates, and exact distances. Pure torch, no I/O."""

from __future__ import annotations

import numpy as np
import torch

# the commands choose their compute device through this name


def squared_euclidean(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances.

    Args:
        q: (Q, D) queries.
        g: (N, D) gallery.

    Returns:
        (Q, N) distances, clamped at 0 against rounding.
    """
    d = (q * q).sum(1, keepdim=True) - 2.0 * q @ g.T + (g * g).sum(1)[None, :]  # (Q, N)
    return d.clamp_min_(0.0)


def rerank(
    query_local: np.ndarray, candidates_local: np.ndarray, device: torch.device | None = None,
    *, coarse_distances: np.ndarray | None = None, local_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Orders coarse candidates by the fine distance.

    The fine distance is that of the full descriptor f = [f_g, sqrt(w) f_l]:
    d^2 = d_g^2 + w * d_l^2, where d_g is the coarse (exact, as returned by the
    index) distance and d_l the local one. Without ``coarse_distances`` it is the
    paper's local-only re-rank, d = sqrt(w) * d_l. Ties keep the coarse order
    (stable sort), so the result is deterministic.

    Args:
        query_local: (Dl,) the query's f_l.
        candidates_local: (M, Dl) the candidates' f_l, in coarse order.
        device: where to compute (CUDA when present).
        coarse_distances: (M,) Euclidean f_g distances of the candidates, or None.
        local_weight: w.

    Returns:
        order (M,) indices into the candidates, best first; distances (M,) in that order.
    """
    device = device or torch.device("cpu")
    if candidates_local.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if device.type == "cpu":  # a few hundred candidates: numpy, without torch's per-op cost
        diff = np.asarray(candidates_local, np.float32) - np.asarray(query_local, np.float32)
        d = np.float32(local_weight) * np.einsum("ij,ij->i", diff, diff)  # (M,)
        if coarse_distances is not None:
            d += np.square(np.asarray(coarse_distances, np.float32))
        order = np.argsort(d, kind="stable")
        return order, np.sqrt(d[order])
    return rerank_on(device, query_local, candidates_local, coarse_distances, local_weight)


def rerank_on(
    device: torch.device, query_local: np.ndarray, candidates_local: np.ndarray,
    coarse_distances: np.ndarray | None, local_weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rerank` computed with torch on ``device`` (what it does on a GPU)."""
    q = torch.as_tensor(query_local, device=device, dtype=torch.float32)[None, :]  # (1, Dl)
    g = torch.as_tensor(candidates_local, device=device, dtype=torch.float32)  # (M, Dl)
    d = local_weight * squared_euclidean(q, g)[0]  # (M,)
    if coarse_distances is not None:
        d += torch.as_tensor(coarse_distances, device=device, dtype=torch.float32) ** 2
    order = torch.sort(d, stable=True).indices
    return order.cpu().numpy(), d[order].sqrt().cpu().numpy()


def full_distances(
    q_global: np.ndarray, q_local: np.ndarray, g_global: torch.Tensor, g_local: torch.Tensor,
    local_weight: float = 1.0,
) -> torch.Tensor:
    """Euclidean distance of the full descriptor f = [f_g, sqrt(w) f_l] (exhaustive scan).

    ||f_q - f_x||^2 = d_g^2 + w * d_l^2, so the concatenation is never materialised.

    Args:
        q_global: (Dg,) and q_local: (Dl,) for one query, or (Q, Dg) and (Q, Dl) for a block.
        g_global: (N, Dg), g_local: (N, Dl) the gallery, on the compute device.

    Returns:
        (N,) distances for one query, (Q, N) for a block.
    """
    dev = g_global.device
    qg = torch.as_tensor(q_global, device=dev, dtype=torch.float32)
    ql = torch.as_tensor(q_local, device=dev, dtype=torch.float32)
    one = qg.dim() == 1
    if one:
        qg, ql = qg[None, :], ql[None, :]  # (1, Dg), (1, Dl)
    d2 = squared_euclidean(qg, g_global) + local_weight * squared_euclidean(ql, g_local)  # (Q, N)
    d = d2.sqrt()
    return d[0] if one else d
