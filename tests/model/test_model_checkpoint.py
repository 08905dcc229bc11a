"""Self-describing checkpoints and fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.errors import ModelError
from reidctl.model import (
    CHECKPOINT_FORMAT,
    OSNET_X0_25,
    PCA,
    ConvNet,
    FeatureExtractor,
    ModelRecord,
    fingerprint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from tests.model.helpers import seeded_images


@pytest.fixture(scope="module")
def trained(
    osnet: FeatureExtractor, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ConvNet, PCA, str]:
    """An OSNet ConvNet with a 3-class classifier and a fitted PCA, saved."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = ConvNet(osnet.model.backbone, channels=128, num_classes=3)
    features = np.random.default_rng(0).standard_normal((200, 128)).astype(np.float32)
    pca = PCA.fit(features, dim=128)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    fp = save_checkpoint(path, ModelRecord(model, OSNET_X0_25, pca, ["a", "b", "c"],
                                           extra={"lr": 0.01, "epochs": 2}))
    return path, model, pca, fp


def test_round_trip_without_onnx_file(
    trained: tuple[Path, ConvNet, PCA, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, model, pca, fp = trained
    monkeypatch.setenv("REIDCTL_OSNET_WEIGHTS", str(tmp_path / "does-not-exist.onnx"))
    loaded = load_checkpoint(path)
    assert loaded.fingerprint == fp and loaded.classes == ["a", "b", "c"]
    assert loaded.extra == {"lr": 0.01, "epochs": 2} and loaded.stripes == 4
    assert loaded.spec == OSNET_X0_25 and loaded.pca.kind == "pca"
    assert loaded.model.num_classes == 3 and not loaded.model.training
    for (name, a), (_, b) in zip(
        sorted(model.state_dict().items()), sorted(loaded.model.state_dict().items()), strict=True
    ):
        assert torch.equal(a, b), name

    extractor = load_model(path)
    assert extractor.fingerprint == fp and extractor.pca_kind == "pca"
    x = seeded_images(2, (256, 128), seed=5)
    ours = extractor.extract(x)
    direct = FeatureExtractor(ModelRecord(model, OSNET_X0_25, pca)).extract(x)
    np.testing.assert_array_equal(ours.global_, direct.global_)
    np.testing.assert_array_equal(ours.local, direct.local)
    assert extractor.describe()["weights"] == f"checkpoint:{path}"


def test_truncated_and_garbage_files(
    trained: tuple[Path, ConvNet, PCA, str], tmp_path: Path
) -> None:
    data = trained[0].read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupted"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        load_checkpoint(garbage)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def _rewrite(src: Path, dst: Path, **changes: object) -> Path:
    data = torch.load(src, weights_only=True)
    data.update(changes)
    torch.save(data, dst)
    return dst


def test_wrong_format_tag(trained: tuple[Path, ConvNet, PCA, str], tmp_path: Path) -> None:
    bad = _rewrite(trained[0], tmp_path / "tag.pt", format="someone.else/9")
    with pytest.raises(ModelError, match="someone.else/9"):
        load_checkpoint(bad)
    other = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(ModelError, match=CHECKPOINT_FORMAT):
        load_checkpoint(other)


def test_mismatched_state_dict_and_tampered_weights(
    trained: tuple[Path, ConvNet, PCA, str], tmp_path: Path
) -> None:
    state = torch.load(trained[0], weights_only=True)["state_dict"]
    missing = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    with pytest.raises(ModelError, match="missing key"):
        load_checkpoint(_rewrite(trained[0], tmp_path / "missing.pt", state_dict=missing))
    tampered = {**state, "classifier.bias": state["classifier.bias"] + 1}
    # the classifier is outside the fingerprint; the backbone is not
    load_checkpoint(_rewrite(trained[0], tmp_path / "cls.pt", state_dict=tampered))
    key = next(k for k in state if k.startswith("backbone."))
    tampered = {**state, key: state[key] + 1}
    with pytest.raises(ModelError, match="fingerprint"):
        load_checkpoint(_rewrite(trained[0], tmp_path / "tampered.pt", state_dict=tampered))


def test_save_refuses_bad_inputs(osnet: FeatureExtractor, tmp_path: Path) -> None:
    model = ConvNet(osnet.model.backbone, channels=128, num_classes=0)
    with pytest.raises(ValueError, match="class names"):
        save_checkpoint(tmp_path / "x.pt", ModelRecord(model, OSNET_X0_25, PCA.fallback(128),
                                                       ["a"]))
    with pytest.raises(ValueError, match="extra"):
        save_checkpoint(tmp_path / "x.pt", ModelRecord(model, OSNET_X0_25, PCA.fallback(128),
                                                       extra={"arr": np.zeros(2)}))
    with pytest.raises(ValueError, match="PCA"):
        save_checkpoint(tmp_path / "x.pt", ModelRecord(model, OSNET_X0_25, PCA.fallback(1024)))


def test_fingerprint_stable_and_sensitive(
    osnet: FeatureExtractor, trained: tuple[Path, ConvNet, PCA, str]
) -> None:
    again = load_model("osnet_x0_25")
    assert again.fingerprint == osnet.fingerprint
    model = osnet.model
    base = fingerprint(model, OSNET_X0_25, PCA.fallback(128))
    assert base == osnet.fingerprint
    assert fingerprint(model, OSNET_X0_25, trained[2]) != base  # other PCA
    assert fingerprint(model, OSNET_X0_25, PCA.fallback(128), stripes=2) != base
    with_cls = ConvNet(model.backbone, channels=128, num_classes=7)
    assert fingerprint(with_cls, OSNET_X0_25, PCA.fallback(128)) == base  # classifier excluded


def test_fingerprint_same_in_a_fresh_process(osnet: FeatureExtractor) -> None:
    code = "from reidctl.model import load_model; print(load_model().fingerprint)"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == osnet.fingerprint


def test_googlenet_round_trip_and_state_dict_file(
    googlenet: FeatureExtractor, tmp_path: Path
) -> None:
    path = tmp_path / "g.pt"
    fp = save_checkpoint(path, googlenet.record)
    again = load_model(path)
    assert (
        fp == again.fingerprint == googlenet.fingerprint and again.pca_kind == "random-orthogonal"
    )
    x = seeded_images(1, (512, 256), seed=2)
    np.testing.assert_array_equal(again.extract(x).local, googlenet.extract(x).local)
    weights = tmp_path / "features.pt"
    torch.save(googlenet.model.backbone.state_dict(), weights)
    assert load_model("googlenet", weights=weights).fingerprint == googlenet.fingerprint
    torch.save({"conv1.conv.weight": torch.zeros(1)}, weights)
    with pytest.raises(ModelError, match="missing key"):
        load_model("googlenet", weights=weights)
