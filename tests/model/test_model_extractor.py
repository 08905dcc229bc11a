"""The public entry point: load_model + FeatureExtractor.extract on real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.errors import ModelError
from reidctl.model import FeatureExtractor, load_model
from tests.model.helpers import load_image, seeded_images


def test_shapes_norms_and_description(osnet: FeatureExtractor, cuhk_image: torch.Tensor) -> None:
    batch = torch.cat([cuhk_image[None], seeded_images(2, (256, 128))])  # (3, 3, 256, 128)
    d = osnet.extract(batch)
    assert d.global_.shape == (3, 128) and d.local.shape == (3, 512)
    assert d.global_.dtype == d.local.dtype == np.float32
    assert np.isfinite(d.global_).all() and np.isfinite(d.local).all()
    np.testing.assert_allclose(np.linalg.norm(d.global_, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d.local, axis=1), 1.0, atol=1e-5)
    info = osnet.describe()
    assert info["backbone"] == "osnet_x0_25" and info["pca"] == "identity"
    assert info["fingerprint"] == osnet.fingerprint and len(osnet.fingerprint) == 16
    assert (osnet.global_dim, osnet.local_dim, osnet.stripes) == (128, 512, 4)
    assert not osnet.model.training


def test_deterministic_and_batch_independent(
    osnet: FeatureExtractor, cuhk_image: torch.Tensor
) -> None:
    batch = torch.cat([seeded_images(3, (256, 128), seed=1), cuhk_image[None]])  # (4, 3, 256, 128)
    first, second = osnet.extract(batch), osnet.extract(batch)
    assert np.array_equal(first.global_, second.global_) and np.array_equal(
        first.local, second.local
    )
    alone = osnet.extract(cuhk_image[None])
    np.testing.assert_allclose(alone.global_[0], first.global_[3], atol=1e-5)
    np.testing.assert_allclose(alone.local[0], first.local[3], atol=1e-5)


def test_same_person_is_closer_than_another(
    osnet: FeatureExtractor, cuhk_image: torch.Tensor, cuhk03_root: Path
) -> None:
    same = load_image(cuhk03_root / "val" / "0000_05.jpg", (256, 128))  # same person, camera B
    other = load_image(cuhk03_root / "val" / "0001_05.jpg", (256, 128))
    d = osnet.extract(torch.stack([cuhk_image, same, other]))
    assert np.linalg.norm(d.global_[0] - d.global_[1]) < np.linalg.norm(d.global_[0] - d.global_[2])


def test_wrong_input_shape(osnet: FeatureExtractor) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 256, 128\)"):
        osnet.extract(torch.rand(1, 3, 128, 64))
    with pytest.raises(ValueError):
        osnet.extract(torch.rand(3, 256, 128))
    with pytest.raises(ValueError, match="float"):
        osnet.extract(torch.zeros(1, 3, 256, 128, dtype=torch.uint8))


def test_bad_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="neither"):
        load_model("resnet9000")
    monkeypatch.setenv("REIDCTL_OSNET_WEIGHTS", str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelError, match="REIDCTL_OSNET_WEIGHTS"):
        load_model()


def test_googlenet_is_seeded(googlenet: FeatureExtractor) -> None:
    state = torch.get_rng_state()
    again = load_model("googlenet")
    assert torch.equal(state, torch.get_rng_state())  # caller's RNG untouched
    assert again.fingerprint == googlenet.fingerprint
