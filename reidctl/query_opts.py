"""Query-time options on top of a C2F ranking: query expansion and k-reciprocal re-ranking.

Pure compute (numpy and torch), no I/O: :mod:`reidctl.pipeline.search` fetches the
descriptors and calls these.

* Query expansion (QE): the query's f_g and f_l are each replaced by the L2-normalised
  sum of its own descriptor and those of its top-``n`` hits, and searched again.
* k-reciprocal re-ranking (Zhong et al., CVPR 2017) over the query and its M C2F
  candidates only (a (1+M) x (1+M) matrix, never one over the gallery): the Jaccard
  distance of k-reciprocal neighbour sets, mixed with the original distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reidctl.errors import InputError
from reidctl.rerank import squared_euclidean


@dataclass(frozen=True)
class QueryOptions:
    """What is done after the C2F ranking of a query.

    Attributes:
        qe: top hits expanding the query (0: no query expansion).
        kreciprocal: re-rank the M candidates by k-reciprocal re-ranking.
        k1: neighbours of the k-reciprocal sets; k2: neighbours of the local query
            expansion of those sets (1: none).
        lam: weight of the original distance in the final one (1: the original order).
    """

    qe: int = 0
    kreciprocal: bool = False
    k1: int = 10
    k2: int = 3
    lam: float = 0.3

    def __post_init__(self) -> None:
        if self.qe < 0:
            raise InputError(f"query expansion needs 0 or more hits, got {self.qe}")
        if self.k1 < 1 or self.k2 < 1:
            raise InputError(f"k1 and k2 must be at least 1, got k1={self.k1}, k2={self.k2}")
        if not 0.0 <= self.lam <= 1.0:
            raise InputError(f"lambda must lie in [0, 1], got {self.lam:g}")

    @property
    def active(self) -> bool:
        """Whether anything is done after the plain C2F ranking."""
        return bool(self.qe or self.kreciprocal)

    @property
    def name(self) -> str:
        """The method's name in reports: ``c2f``, ``c2f+qe``, ``c2f+kr`` or ``c2f+qe+kr``."""
        return "c2f" + ("+qe" if self.qe else "") + ("+kr" if self.kreciprocal else "")

    def describe(self) -> str:
        """The settings in words, e.g. ``"qe n=1; k-reciprocal k1=10 k2=3 lambda=0.3"``."""
        parts = ([f"qe n={self.qe}"] if self.qe else []) + (
            [f"k-reciprocal k1={self.k1} k2={self.k2} lambda={self.lam:g}"]
            if self.kreciprocal else [])
        return "; ".join(parts) or "none"


def expand(query: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Query expansion of one descriptor: the L2-normalised sum of the query and its
    neighbours (the whole vector: f_l is normalised as one, not stripe by stripe).

    Args:
        query: (D,) the query's descriptor.
        neighbours: (n, D) its top-n hits' descriptors (n may be 0).

    Returns:
        (D,) float32, unit norm (the query itself when the sum is zero).
    """
    s = np.asarray(query, np.float64) + np.asarray(neighbours, np.float64).sum(0)  # (D,)
    norm = np.linalg.norm(s)
    return (s / norm if norm > 0 else np.asarray(query, np.float64)).astype(np.float32)


def pairwise_full(f_g: torch.Tensor, f_l: torch.Tensor, local_weight: float) -> torch.Tensor:
    """Squared full-descriptor distances d_g^2 + w d_l^2 among n items.

    Args:
        f_g: (n, Dg), f_l: (n, Dl) on the compute device.

    Returns:
        (n, n) float32, symmetric, diagonal 0.
    """
    d = squared_euclidean(f_g, f_g)  # (n, n)
    if local_weight:
        d = d + local_weight * squared_euclidean(f_l, f_l)
    d = 0.5 * (d + d.T)  # exactly symmetric (the products round differently)
    return d.fill_diagonal_(0.0)


def _reciprocal(near: torch.Tensor, k: int) -> torch.Tensor:
    """(n, n) bool: j among the k+1 nearest of i and i among the k+1 nearest of j.

    Args:
        near: (n, K) each row's nearest items, nearest first (K > k).
    """
    n = near.shape[0]
    top = torch.zeros(n, n, dtype=torch.bool, device=near.device)
    top.scatter_(1, near[:, :k + 1], True)
    return top & top.T


def k_reciprocal(d2: torch.Tensor, k1: int = 10, k2: int = 3, lam: float = 0.3) -> torch.Tensor:
    """k-reciprocal re-ranking distances (Zhong et al. 2017) of row 0 against every item.

    Each item's k1-reciprocal set R(i) is extended by the (k1/2)-reciprocal set of any of
    its members c that shares more than 2/3 of its elements with R(i); the members get
    Gaussian-kernel weights exp(-d), normalised per row; those rows are averaged over the
    k2 nearest (local query expansion); the Jaccard distance of row 0 against each row is
    mixed with the original distance. Every step is O(n^2 k2 + n k1^2): no n x n x n product.

    Args:
        d2: (n, n) squared distances among [query, candidates...], row and column 0 the
            query (e.g. from :func:`pairwise_full`).
        k1, k2, lam: see :class:`QueryOptions`.

    Returns:
        (n,) float64 ``(1 - lam) * jaccard + lam * d2[0]``; entry 0 is the query itself.
    """
    d2 = d2.to(torch.float64)  # n is a few hundred: exactness costs little here
    n = d2.shape[0]
    kk = min(max(k1, k2) + 1, n)
    near = torch.topk(d2, kk, dim=1, largest=False, sorted=True).indices  # (n, kk)
    rec = _reciprocal(near, min(k1, n - 1))  # (n, n) R(i)
    half = _reciprocal(near, min(int(round(k1 / 2)), n - 1))  # (n, n) R_half(c)
    kh = min(int(round(k1 / 2)), n - 1) + 1
    cand = near[:, :min(k1 + 1, n)]  # (n, K1) the possible members c of R(i)
    is_member = rec.gather(1, cand)  # (n, K1)
    half_in = half.gather(1, near[:, :kh])  # (n, Kh) which of c's kh nearest are in R_half(c)
    idx = near[:, :kh][cand]  # (n, K1, Kh) the kh nearest of each possible member
    valid = half_in[cand]  # (n, K1, Kh) ... those in its R_half
    flat = idx.reshape(n, -1)  # (n, K1 * Kh)
    shared = (valid & rec.gather(1, flat).view_as(valid)).sum(2)  # (n, K1) |R(i) & R_half(c)|
    extend = is_member & (shared > (2.0 / 3.0) * valid.sum(2))  # (n, K1)
    added = torch.zeros(n, n, dtype=torch.int32, device=d2.device)
    added.scatter_add_(1, flat, (valid & extend[:, :, None]).reshape(n, -1).to(torch.int32))
    members = rec | (added > 0)  # (n, n) the expanded sets
    v = torch.exp(-d2).mul_(members)  # (n, n) Gaussian-kernel weights of the members
    v = v.div_(v.sum(1, keepdim=True))
    if k2 > 1:
        v = v[near[:, :min(k2, n)]].mean(1)  # (n, n) mean over the k2 nearest rows
    mins = torch.minimum(v[0][None, :], v).sum(1)  # (n,)
    jaccard = 1.0 - mins / (2.0 - mins)
    return (1.0 - lam) * jaccard + lam * d2[0]


def kr_rerank(
    q_global: np.ndarray, q_local: np.ndarray, c_global: np.ndarray, c_local: np.ndarray,
    device: torch.device, *, local_weight: float, k1: int = 10, k2: int = 3,
    lam: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-ranks a query's candidates by :func:`k_reciprocal` on the full descriptor.

    Args:
        q_global: (Dg,) and q_local: (Dl,) the query.
        c_global: (M, Dg) and c_local: (M, Dl) the candidates, in their current order
            (ties of the final distance keep it).
        device: where to compute (CUDA when present).

    Returns:
        order (M,) indices into the candidates, best first; and (M,) the Euclidean
        full-descriptor distance sqrt(d_g^2 + w d_l^2) of each candidate to the query,
        in that order.
    """
    if len(c_global) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    g = torch.as_tensor(np.concatenate([q_global[None], c_global]), device=device,
                        dtype=torch.float32)  # (1+M, Dg)
    loc = torch.as_tensor(np.concatenate([q_local[None], c_local]), device=device,
                          dtype=torch.float32)  # (1+M, Dl)
    d2 = pairwise_full(g, loc, local_weight)  # (1+M, 1+M)
    final = k_reciprocal(d2, k1, k2, lam)[1:]  # (M,)
    order = torch.argsort(final, stable=True)
    return order.cpu().numpy(), d2[0, 1:][order].sqrt().cpu().numpy()
