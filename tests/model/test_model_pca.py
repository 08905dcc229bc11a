"""PCA against numpy's SVD on seeded data; fallbacks; serialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidctl.errors import ModelError
from reidctl.model import PCA


def _data(n: int = 300, k: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(5.0, 0.1, k)  # distinct variances -> well-defined components
    return (
        rng.standard_normal((n, k)) * scales @ np.linalg.qr(rng.standard_normal((k, k)))[0] + 3.0
    ).astype(np.float32)  # (n, k)


def _numpy_reference(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:dim].T  # (K, D)
    comps *= np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(dim)])
    return mean, comps, s[:dim] ** 2 / (len(x) - 1)


@pytest.mark.parametrize("whiten", [False, True])
def test_fit_matches_numpy_svd(whiten: bool) -> None:
    x = _data()
    pca = PCA.fit(x, dim=16, whiten=whiten)
    mean, comps, var = _numpy_reference(x, 16)
    assert pca.kind == "pca" and (pca.in_dim, pca.out_dim) == (40, 16)
    np.testing.assert_allclose(pca.mean.numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(pca.components.numpy(), comps, atol=1e-5)
    np.testing.assert_allclose(pca.explained_variance.numpy(), var, rtol=1e-5)
    y = pca.transform(torch.from_numpy(x)).numpy()  # (n, 16)
    expected = (x - mean) @ comps
    if whiten:
        expected = expected / np.sqrt(var + 1e-6)
        np.testing.assert_allclose(y.var(axis=0, ddof=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(y, expected, atol=1e-4)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        PCA.fit(np.zeros((10, 4)), dim=8)
    with pytest.raises(ValueError):
        PCA.fit(np.full((10, 4), np.nan), dim=2)


def test_fallback_kinds() -> None:
    ident = PCA.fallback(128)
    assert ident.kind == "identity" and "identity" in ident.describe()
    x = torch.randn(3, 128)
    assert torch.equal(ident.transform(x), x)
    rand = PCA.fallback(1024)
    assert rand.kind == "random-orthogonal" and rand.components.shape == (1024, 128)
    gram = rand.components.T @ rand.components  # (128, 128)
    torch.testing.assert_close(gram, torch.eye(128), atol=1e-5, rtol=0)
    assert torch.equal(rand.components, PCA.fallback(1024).components)  # seeded
    with pytest.raises(ValueError):
        PCA.fallback(64)


def test_dict_round_trip() -> None:
    pca = PCA.fit(_data(), dim=8, whiten=True)
    back = PCA.from_dict(pca.to_dict())
    assert (back.kind, back.whiten) == ("pca", True)
    for a, b in zip(pca.arrays(), back.arrays(), strict=True):
        assert torch.equal(a, b)
    fallback = PCA.from_dict(PCA.fallback(1024).to_dict())
    assert fallback.kind == "random-orthogonal" and fallback.explained_variance is None
    with pytest.raises(ModelError):
        PCA.from_dict({"kind": "pca"})


def test_shrinkage_whitening_matches_numpy_and_round_trips() -> None:
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, 16)) * np.linspace(5, 0.1, 16)).astype(np.float32)
    pca = PCA.fit(x, dim=8, whiten=True, shrinkage=2.0)
    xc = x.astype(np.float64) - x.mean(0)
    var, vec = np.linalg.eigh(np.cov(xc.T))
    var, vec = var[::-1][:8], vec[:, ::-1][:, :8]
    ref = xc @ vec / np.sqrt(var + 2.0 * var.mean())
    got = pca.transform(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(ref), rtol=1e-3, atol=1e-4)  # signs may flip
    back = PCA.from_dict(pca.to_dict())
    assert back.shrinkage == 2.0 and "shrinkage 2" in back.describe()
    xt = torch.from_numpy(x)
    torch.testing.assert_close(back.transform(xt), pca.transform(xt))
