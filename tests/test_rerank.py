"""Re-ranking and distances against naive references on seeded data."""

from __future__ import annotations

import numpy as np
import torch

from reidctl.rerank import full_distances, rerank, rerank_on, squared_euclidean


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_rerank_equals_brute_force_sort() -> None:
    rng = np.random.default_rng(1)
    q = _unit(rng.normal(size=64))
    cands = _unit(rng.normal(size=(300, 64)))
    order, dist = rerank(q, cands)
    ref = np.linalg.norm(cands - q, axis=1)
    assert order.tolist() == np.argsort(ref, kind="stable").tolist()
    np.testing.assert_allclose(dist, np.sort(ref), atol=1e-5)


def test_rerank_ties_keep_coarse_order_and_empty_input() -> None:
    q = np.ones(4, np.float32)
    cands = np.zeros((5, 4), np.float32)
    assert rerank(q, cands)[0].tolist() == [0, 1, 2, 3, 4]
    assert rerank(q, np.zeros((0, 4), np.float32))[0].size == 0


def test_squared_euclidean_matches_cdist() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 33, generator=g), torch.randn(11, 33, generator=g)
    torch.testing.assert_close(squared_euclidean(a, b), torch.cdist(a, b) ** 2, atol=1e-4,
                               rtol=1e-4)


def test_full_distance_equals_concatenated_descriptor() -> None:
    rng = np.random.default_rng(2)
    qg, ql = _unit(rng.normal(size=16)), _unit(rng.normal(size=32))
    gg, gl = _unit(rng.normal(size=(50, 16))), _unit(rng.normal(size=(50, 32)))
    w = 0.5
    d = full_distances(qg, ql, torch.from_numpy(gg), torch.from_numpy(gl), w).numpy()
    f_q = np.concatenate([qg, np.sqrt(w) * ql])
    f_g = np.concatenate([gg, np.sqrt(w) * gl], axis=1)
    np.testing.assert_allclose(d, np.linalg.norm(f_g - f_q, axis=1), atol=1e-5)


def test_rerank_with_coarse_distances_equals_full_descriptor_order() -> None:
    rng = np.random.default_rng(3)
    qg, ql = _unit(rng.normal(size=16)), _unit(rng.normal(size=32))
    gg, gl = _unit(rng.normal(size=(80, 16))), _unit(rng.normal(size=(80, 32)))
    coarse = np.linalg.norm(gg - qg, axis=1)
    order, dist = rerank(ql, gl, coarse_distances=coarse, local_weight=0.5)
    full = full_distances(qg, ql, torch.from_numpy(gg), torch.from_numpy(gl), 0.5).numpy()
    assert order.tolist() == np.argsort(full, kind="stable").tolist()
    np.testing.assert_allclose(dist, np.sort(full), atol=1e-5)


def test_full_distances_of_a_block_equal_those_of_each_query() -> None:
    rng = np.random.default_rng(3)
    qg, ql = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(5, 12)).astype(np.float32)
    gg = torch.from_numpy(rng.normal(size=(9, 8)).astype(np.float32))
    gl = torch.from_numpy(rng.normal(size=(9, 12)).astype(np.float32))
    block = full_distances(qg, ql, gg, gl, 0.5)
    assert block.shape == (5, 9)
    for i in range(5):
        assert torch.allclose(block[i], full_distances(qg[i], ql[i], gg, gl, 0.5), atol=1e-5)


def test_rerank_in_numpy_equals_the_torch_path_of_a_gpu() -> None:
    rng = np.random.default_rng(4)
    ql, gl = _unit(rng.normal(size=512)), _unit(rng.normal(size=(200, 512)))
    coarse = rng.uniform(0.5, 1.5, size=200).astype(np.float32)
    for c in (coarse, None):
        order, dist = rerank(ql, gl, torch.device("cpu"), coarse_distances=c, local_weight=0.7)
        t_order, t_dist = rerank_on(torch.device("cpu"), ql, gl, c, 0.7)
        assert order.tolist() == t_order.tolist()
        np.testing.assert_allclose(dist, t_dist, atol=1e-5)
        assert order.dtype == np.int64 and dist.dtype == np.float32
