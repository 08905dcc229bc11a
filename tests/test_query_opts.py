"""Query expansion and k-reciprocal re-ranking (reidctl.query_opts) on constructed inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidctl.errors import InputError
from reidctl.query_opts import QueryOptions, expand, k_reciprocal, kr_rerank, pairwise_full

CPU = torch.device("cpu")


def _sq(x: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances, float64."""
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def _naive(d: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """k-reciprocal re-ranking written item by item as Zhong et al. describe it."""
    n = len(d)
    order = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> set[int]:
        return {int(j) for j in order[i, :k + 1] if i in order[j, :k + 1]}

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        members = set(r)
        for c in r:
            rc = reciprocal(c, round(k1 / 2))
            if len(rc & r) > 2 / 3 * len(rc):
                members |= rc
        idx = sorted(members)
        v[i, idx] = np.exp(-d[i, idx]) / np.exp(-d[i, idx]).sum()
    if k2 > 1:
        v = np.stack([v[order[i, :k2]].mean(0) for i in range(n)])
    jaccard = np.array([1 - (m := np.minimum(v[0], v[j]).sum()) / (2 - m) for j in range(n)])
    return (1 - lam) * jaccard + lam * d[0]


@pytest.mark.parametrize(("k1", "k2", "lam"),
                         [(10, 3, 0.3), (20, 6, 0.3), (6, 1, 0.1), (3, 2, 0.0), (1, 1, 0.5)])
def test_k_reciprocal_matches_the_item_by_item_definition(k1: int, k2: int, lam: float) -> None:
    rng = np.random.default_rng(k1 * 10 + k2)
    centres = rng.normal(size=(8, 16))
    x = centres[rng.integers(0, 8, 60)] + 0.6 * rng.normal(size=(60, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = _sq(x)
    got = k_reciprocal(torch.from_numpy(d), k1, k2, lam).numpy()
    np.testing.assert_allclose(got, _naive(d, k1, k2, lam), rtol=0, atol=1e-12)


def _points() -> tuple[np.ndarray, np.ndarray]:
    """A query at the origin and, in this order: B at (-1, 0) with three close neighbours
    of its own, and A at (1, 0) alone. A and B are equally far from the query; A and the
    query are each other's nearest neighbours, B's nearest are its own three."""
    b_near = [(-1.1, 0.0), (-1.0, 0.1), (-1.0, -0.1)]
    pts = np.array([(0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), *b_near])
    return pts[:1], pts[1:]


def test_a_mutual_neighbour_moves_ahead_at_equal_distance() -> None:
    q, cands = _points()
    local = np.zeros((len(cands), 1), dtype=np.float32)
    d = _sq(np.concatenate([q, cands]))
    assert d[0, 1] == d[0, 2]  # B and A: the same original distance
    order, dist = kr_rerank(q[0], np.zeros(1), cands, local, CPU, local_weight=1.0, k1=3,
                            k2=1, lam=0.3)
    assert sorted(order.tolist()) == list(range(len(cands)))  # a permutation
    assert order.tolist().index(1) < order.tolist().index(0)  # A ahead of B
    np.testing.assert_allclose(dist, np.sqrt(d[0, 1:][order]), atol=1e-6)
    # lambda = 1: the original distance alone, ties in the given order (B first)
    order1, _ = kr_rerank(q[0], np.zeros(1), cands, local, CPU, local_weight=1.0, k1=3, k2=1,
                          lam=1.0)
    assert order1.tolist() == np.argsort(d[0, 1:], kind="stable").tolist()


def test_lambda_one_keeps_the_original_order_on_real_shapes() -> None:
    rng = np.random.default_rng(3)
    g = rng.normal(size=(101, 32)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    loc = rng.normal(size=(101, 64)).astype(np.float32)
    loc /= np.linalg.norm(loc, axis=1, keepdims=True)
    order, dist = kr_rerank(g[0], loc[0], g[1:], loc[1:], CPU, local_weight=0.5, lam=1.0)
    full = ((g[1:] - g[0]) ** 2).sum(1) + 0.5 * ((loc[1:] - loc[0]) ** 2).sum(1)
    np.testing.assert_array_equal(order, np.argsort(full, kind="stable"))
    np.testing.assert_allclose(dist, np.sqrt(full[order]), atol=1e-5)
    d2 = pairwise_full(torch.from_numpy(g), torch.from_numpy(loc), 0.5)
    assert torch.equal(d2, d2.T) and bool((d2.diagonal() == 0).all())
    order_kr, _ = kr_rerank(g[0], loc[0], g[1:], loc[1:], CPU, local_weight=0.5)
    assert sorted(order_kr.tolist()) == list(range(100))


def test_kr_rerank_of_no_candidates() -> None:
    order, dist = kr_rerank(np.ones(4), np.ones(8), np.zeros((0, 4)), np.zeros((0, 8)), CPU,
                            local_weight=1.0)
    assert order.shape == (0,) and dist.shape == (0,)


def test_expand_is_the_normalised_sum() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=16).astype(np.float32)
    q /= np.linalg.norm(q)
    nb = rng.normal(size=(3, 16)).astype(np.float32)
    e = expand(q, nb)
    assert e.dtype == np.float32 and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-6)
    s = q + nb.sum(0)
    np.testing.assert_allclose(e, s / np.linalg.norm(s), atol=1e-6)
    np.testing.assert_allclose(expand(q, nb[:0]), q, atol=1e-6)  # no neighbours: the query
    np.testing.assert_allclose(expand(q, -q[None]), q, atol=1e-6)  # zero sum: the query


def test_options_validate_and_name_the_method() -> None:
    assert QueryOptions().name == "c2f" and QueryOptions().describe() == "none"
    assert QueryOptions(qe=1).name == "c2f+qe"
    assert QueryOptions(kreciprocal=True).name == "c2f+kr"
    both = QueryOptions(qe=2, kreciprocal=True, k1=6, k2=1, lam=0.1)
    assert both.name == "c2f+qe+kr"
    assert both.describe() == "qe n=2; k-reciprocal k1=6 k2=1 lambda=0.1"
    for bad in ({"qe": -1}, {"k1": 0}, {"k2": 0}, {"lam": 1.5}, {"lam": -0.1}):
        with pytest.raises(InputError):
            QueryOptions(**bad)
