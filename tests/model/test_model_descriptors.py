"""Descriptors against a naive loop implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidctl.model import PCA, describe, full_descriptor


def _naive(fmap: torch.Tensor, pca: PCA, stripes: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows_g, rows_l = [], []
    for x in fmap:  # (K, H, W)
        g = pca.transform(x.mean(dim=(1, 2))[None])[0]
        rows_g.append(g / g.norm())
        h = x.shape[1] // stripes
        parts = [x[:, i * h : (i + 1) * h].mean(dim=(1, 2)) for i in range(stripes)]
        rows_l.append(torch.cat([p / p.norm() for p in parts]) / stripes**0.5)
    return torch.stack(rows_g), torch.stack(rows_l)


@pytest.mark.parametrize("k", [128, 256])
def test_matches_naive(k: int) -> None:
    fmap = torch.rand(3, k, 16, 8, generator=torch.Generator().manual_seed(k))
    pca = PCA.fallback(k)
    out = describe(fmap, pca, stripes=4)
    g, loc = _naive(fmap, pca, 4)
    assert out.global_.shape == (3, 128) and out.local.shape == (3, 4 * k)
    torch.testing.assert_close(out.global_, g)
    torch.testing.assert_close(out.local, loc)
    torch.testing.assert_close(out.global_.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(out.local.norm(dim=1), torch.ones(3))


def test_stripes_must_divide_height() -> None:
    with pytest.raises(ValueError, match="stripes"):
        describe(torch.rand(1, 128, 16, 8), PCA.fallback(128), stripes=3)


def test_zero_map_gives_zeros_not_nan() -> None:
    out = describe(torch.zeros(2, 128, 16, 8), PCA.fallback(128))
    assert torch.isfinite(out.global_).all() and torch.isfinite(out.local).all()


def test_full_descriptor_is_unit_norm_for_torch_and_numpy() -> None:
    out = describe(torch.rand(2, 128, 16, 8), PCA.fallback(128))
    full = full_descriptor(out.global_, out.local)
    assert full.shape == (2, 640)
    torch.testing.assert_close(full.norm(dim=1), torch.ones(2))
    full_np = full_descriptor(out.global_.numpy(), out.local.numpy())
    assert full_np.dtype == np.float32
    np.testing.assert_allclose(full_np, full.numpy(), atol=1e-7)
