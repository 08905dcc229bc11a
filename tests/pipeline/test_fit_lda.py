"""The stripes' discriminant projection: what PCA.fit_lda finds, and fit-pca choosing it when
the training images' names give identities (and a whitening when they do not)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.model import PCA, load_checkpoint, load_model
from reidctl.pipeline.fit import (
    LDA_DIM,
    LDA_FINE_WEIGHT,
    fit_model,
    fit_projections,
    identities,
)


def _two_directions(n_per: int = 40, classes: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """8-D features: identity lives along axis 1 (small spread), nuisance along axis 0
    (large spread, shared by every identity), noise elsewhere."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), n_per)
    x = rng.normal(0.0, 0.05, (len(labels), 8))
    x[:, 0] += rng.normal(0.0, 10.0, len(labels))  # big, says nothing about identity
    x[:, 1] += np.linspace(-1.0, 1.0, classes)[labels]  # small, the identity
    return x, labels


def test_lda_keeps_the_direction_that_separates_identities() -> None:
    x, labels = _two_directions()
    lda = PCA.fit_lda(x, labels, dim=2, shrinkage=0.1)
    pca = PCA.fit(x, dim=1)
    assert lda.kind == "lda" and not lda.whiten and lda.out_dim == 2
    first = lda.components[:, 0] / lda.components[:, 0].norm()
    assert abs(float(first[1])) > 0.99  # LDA: the identity axis
    assert abs(float(pca.components[0, 0])) > 0.99  # PCA: the nuisance axis
    assert float(lda.explained_variance[0]) > float(lda.explained_variance[1]) >= 0
    y = lda.transform(torch.from_numpy(x).float())[:, 0].numpy()
    means = np.array([y[labels == c].mean() for c in range(30)])
    within = np.mean([y[labels == c].std() for c in range(30)])
    assert np.diff(means).min() * np.sign(np.diff(means).mean()) > 0  # ordered identities
    assert means.std() > 5 * within
    again = PCA.fit_lda(x, labels, dim=2, shrinkage=0.1)
    assert torch.equal(again.components, lda.components)  # deterministic, signs fixed
    assert "lda 8->2" in lda.describe()


@pytest.mark.parametrize("dim, shrinkage, fragment", [
    (30, 0.1, "dim=30 must be in [1, min(K=8, identities - 1 = 29)]"),
    (0, 0.1, "dim=0"),
    (2, -1.0, "shrinkage must be >= 0"),
])
def test_lda_refuses_what_it_cannot_fit(dim: int, shrinkage: float, fragment: str) -> None:
    x, labels = _two_directions()
    with pytest.raises(ValueError) as info:
        PCA.fit_lda(x[:, :8], labels, dim=dim, shrinkage=shrinkage)
    assert fragment in str(info.value)


def _per_identity(cuhk03_root: Path, persons: int, each: int) -> list[Path]:
    by_person: dict[str, list[Path]] = defaultdict(list)
    for f in sorted((cuhk03_root / "train").glob("*.jpg")):
        by_person[f.name[:4]].append(f)
    return [f for p in sorted(by_person)[:persons] for f in by_person[p][:each]]


def test_fit_pca_projects_stripes_by_identity(cuhk03_root: Path, tmp_path: Path) -> None:
    files = _per_identity(cuhk03_root, LDA_DIM + 6, 4)
    out = tmp_path / "lda.pt"
    report = fit_model(load_model("osnet_x0_25"), files, out)
    loaded = load_checkpoint(out)
    assert [p.kind for p in loaded.stripe_pca] == ["lda"] * 4
    assert loaded.pca.kind == "pca"  # f_g: 38 identities are too few for a 128-D projection
    assert loaded.extra["projection"] == "lda"
    assert {p.out_dim for p in loaded.stripe_pca} == {LDA_DIM}
    assert loaded.fine_weight == LDA_FINE_WEIGHT == report.fine_weight
    assert report.stripe_whitening.startswith(f"lda 128->{LDA_DIM}")
    ex = load_model(out)
    assert ex.local_dim == 4 * LDA_DIM
    x = torch.rand(3, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    f_g, f_l = ex.extract(x)
    assert f_g.shape == (3, 128) and f_l.shape == (3, 4 * LDA_DIM)
    assert np.allclose(np.linalg.norm(f_l, axis=1), 1.0, atol=1e-5)
    # the same images under plain names give no identities: a whitening per stripe instead
    plain = tmp_path / "plain"
    plain.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, plain / f"crop{i:04d}.jpg")
    assert identities(sorted(plain.glob("*.jpg")), LDA_DIM) is None
    report = fit_model(load_model("osnet_x0_25"), sorted(plain.glob("*.jpg")), tmp_path / "w.pt")
    loaded = load_checkpoint(tmp_path / "w.pt")
    assert all(p.kind == "pca" and p.whiten and p.out_dim == 128 for p in loaded.stripe_pca)
    assert loaded.fine_weight == 0.5


def test_more_identities_than_dimensions_give_f_g_a_discriminant_projection(
        cuhk03_root: Path, tmp_path: Path) -> None:
    files = _per_identity(cuhk03_root, 130, 2)
    ex = load_model("osnet_x0_25")
    fit_model(ex, files, tmp_path / "g.pt")
    loaded = load_checkpoint(tmp_path / "g.pt")
    assert loaded.pca.kind == "lda" and loaded.pca.out_dim == 128 and not loaded.pca.whiten
    # what train fits on a fine-tuned network: f_g by PCA, the stripes still by identity
    pca, stripes, _ = fit_projections(ex, files, global_lda=False)
    assert pca.kind == "pca" and [p.kind for p in stripes] == ["lda"] * 4
    ex = load_model(tmp_path / "g.pt")
    x = torch.rand(2, 3, 256, 128, generator=torch.Generator().manual_seed(1))
    f_g, _ = ex.extract(x)
    assert f_g.shape == (2, 128) and np.allclose(np.linalg.norm(f_g, axis=1), 1.0, atol=1e-5)


def test_too_few_identities_for_the_projection(cuhk03_root: Path) -> None:
    files = _per_identity(cuhk03_root, LDA_DIM, 2)  # LDA_DIM identities: one too few
    assert identities(files, LDA_DIM) is None
    files = _per_identity(cuhk03_root, LDA_DIM + 1, 2)
    labels = identities(files, LDA_DIM)
    assert labels is not None and len(np.unique(labels)) == LDA_DIM + 1
