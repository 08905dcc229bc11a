"""Fine-level re-ranking of coarse candidates, and exact distances. Pure torch, no I/O."""

from __future__ import annotations

import numpy as np
import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is present, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


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
    query_local: np.ndarray, candidates_local: np.ndarray, device: torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Orders coarse candidates by the Euclidean distance of their local descriptors.

    Ties keep the coarse order (stable sort), so the result is deterministic.

    Args:
        query_local: (Dl,) the query's f_l.
        candidates_local: (M, Dl) the candidates' f_l, in coarse order.
        device: where to compute (CUDA when present).

    Returns:
        order (M,) indices into the candidates, best first; distances (M,) in that order.
    """
    device = device or torch.device("cpu")
    if candidates_local.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    q = torch.as_tensor(query_local, device=device, dtype=torch.float32)[None, :]  # (1, Dl)
    g = torch.as_tensor(candidates_local, device=device, dtype=torch.float32)  # (M, Dl)
    d = squared_euclidean(q, g)[0]  # (M,)
    order = torch.sort(d, stable=True).indices
    return order.cpu().numpy(), d[order].sqrt().cpu().numpy()


def full_distances(
    q_global: np.ndarray, q_local: np.ndarray, g_global: torch.Tensor, g_local: torch.Tensor
) -> torch.Tensor:
    """Euclidean distance of the full descriptor f = [f_g, f_l] / sqrt(2).

    With unit-norm f_g and f_l, ||f_q - f_x||^2 = (d_g^2 + d_l^2) / 2, so the
    concatenation is never materialised.

    Args:
        q_global: (Dg,), q_local: (Dl,) one query.
        g_global: (N, Dg), g_local: (N, Dl) the gallery, on the compute device.

    Returns:
        (N,) distances.
    """
    dev = g_global.device
    qg = torch.as_tensor(q_global, device=dev, dtype=torch.float32)[None, :]  # (1, Dg)
    ql = torch.as_tensor(q_local, device=dev, dtype=torch.float32)[None, :]  # (1, Dl)
    d2 = squared_euclidean(qg, g_global)[0] + squared_euclidean(ql, g_local)[0]  # (N,)
    return (d2 / 2.0).sqrt()
