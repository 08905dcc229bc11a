"""fit-pca on real training images: the checkpoint loads, carries its projections, evaluates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.data.datasets import Protocol, cuhk03
from reidctl.model import load_checkpoint, load_model
from reidctl.pipeline.evaluate import evaluate
from reidctl.pipeline.fit import fit_model
from reidctl.pipeline.results import FitReport
from reidctl.store import MilvusStore


@pytest.fixture(scope="module")
def fitted(cuhk03_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FitReport]:
    files = sorted((cuhk03_root / "train").glob("*.jpg"))[:200]
    bad = tmp_path_factory.mktemp("bad") / "broken.jpg"
    bad.write_bytes(files[0].read_bytes()[:300])
    out = tmp_path_factory.mktemp("fit") / "m.pt"
    report = fit_model(load_model("osnet_x0_25"), [*files, bad], out, shrinkage=2.0)
    return out, report


def test_checkpoint_carries_projections(fitted: tuple[Path, FitReport]) -> None:
    out, report = fitted
    assert report.images == 200 and report.skipped == {"corrupt or truncated": 1}
    loaded = load_checkpoint(out)
    assert loaded.pca.kind == "pca" and loaded.pca.whiten and loaded.pca.shrinkage == 2.0
    assert len(loaded.stripe_pca) == 4 and loaded.fine_weight == 0.5
    assert loaded.fingerprint == report.fingerprint
    assert loaded.extra["fit_images"] == 200
    ex = load_model(out)
    zero_shot = load_model("osnet_x0_25")
    assert ex.fingerprint != zero_shot.fingerprint
    x = torch.rand(2, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    d = ex.extract(x)
    np.testing.assert_allclose(np.linalg.norm(d.global_, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d.local, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(d.local, zero_shot.extract(x).local)


@pytest.mark.slow
def test_fitted_model_evaluates_and_c2f_with_full_gallery_equals_linear(
    fitted: tuple[Path, FitReport], cuhk03_root: Path, tmp_path: Path
) -> None:
    full = cuhk03(cuhk03_root)
    keep = {f"{i:04d}" for i in range(20)}
    small = Protocol(full.dataset, full.description,
                     [q for q in full.queries if q.person_id in keep],
                     [g for g in full.gallery if g.person_id in keep])
    with MilvusStore(str(tmp_path / "f.db"), "f") as store:
        r = evaluate(small, store, load_model(fitted[0]), m=500, device=torch.device("cpu"))
    c2f, linear = r.methods["c2f"], r.methods["linear"]
    assert r.M == len(small.gallery)  # every gallery image re-ranked
    assert c2f.mAP == pytest.approx(linear.mAP, abs=1e-6)
    assert c2f.rank1 == pytest.approx(linear.rank1)
    assert r.model["pca"] == "pca"
