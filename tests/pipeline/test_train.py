"""Training on real CUHK03 images from the real OSNet weights: loss, checkpoint, resume, errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

import reidctl.pipeline.train as train_module
from reidctl.cli import render
from reidctl.cli.main import app as main_app
from reidctl.cli.train_cmd import register
from reidctl.data.augment import AugmentSettings, augment, sample_rng
from reidctl.data.sampler import pk_batches
from reidctl.errors import InputError, ModelError
from reidctl.model import load_checkpoint, load_model
from reidctl.pipeline.results import TrainReport
from reidctl.pipeline.train import TrainSettings, train
from reidctl.pipeline.train_state import state_path
from tests.cli_helpers import one_line_error, sub_app

SETTINGS = TrainSettings(epochs=2, batch_p=4, batch_k=4, max_identities=16, seed=3)
runner = CliRunner()


class Interrupt(Exception):
    """Stands for a Ctrl-C / kill after the first epoch's state was saved."""


@pytest.fixture(scope="module")
def train_dir(cuhk03_root: Path) -> Path:
    return cuhk03_root / "train"


@pytest.fixture(scope="module")
def trained(train_dir: Path, tmp_path_factory: pytest.TempPathFactory,
            ) -> tuple[Path, TrainReport, dict[str, Any]]:
    """One uninterrupted 2-epoch run on 16 identities; also captures the fitted projections."""
    out = tmp_path_factory.mktemp("train") / "m.pt"
    fitted: dict[str, Any] = {}
    real_fit = train_module.fit_projections

    def capture(*args: Any, **kwargs: Any) -> Any:
        fitted["result"] = real_fit(*args, **kwargs)
        return fitted["result"]

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "fit_projections", capture)
    try:
        report = train(train_dir, out, SETTINGS, workers=1)
    finally:
        mp.undo()
    return out, report, fitted


@pytest.mark.slow  # trains a model (the module's `trained`)
def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(
    trained: tuple[Path, TrainReport, dict[str, Any]],
) -> None:
    out, report, _ = trained
    losses = [h["loss"] for h in report.history]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    loaded = load_checkpoint(out)
    assert loaded.classes == [f"{i:04d}" for i in range(16)]
    assert loaded.model.num_classes == 16  # the classifier block is kept
    assert loaded.fingerprint == report.fingerprint
    assert loaded.stripes == 4 and len(loaded.stripe_pca) == 4 and loaded.fine_weight == 0.5
    extra = loaded.extra
    assert extra["identities"] == 16 and extra["images"] == report.images > 128
    assert extra["training"]["seed"] == 3 and extra["epochs"] == 2
    assert len(extra["files_sha256"]) == 64 and extra["final_loss"] == losses[1]
    assert load_model(out).fingerprint == report.fingerprint


@pytest.mark.slow  # trains a model (the module's `trained`)
def test_pca_round_trips_through_the_checkpoint(
    trained: tuple[Path, TrainReport, dict[str, Any]],
) -> None:
    out, _, fitted = trained
    pca, stripe_pca, _ = fitted["result"]
    loaded = load_checkpoint(out)
    for saved, fit in [(loaded.pca, pca), *zip(loaded.stripe_pca, stripe_pca, strict=True)]:
        assert saved.kind == "pca" and saved.whiten and saved.shrinkage == fit.shrinkage
        for a, b in zip(saved.arrays(), fit.arrays(), strict=True):
            assert torch.equal(a, b.cpu())


@pytest.mark.slow  # trains a model (the module's `trained`)
def test_checkpoint_evaluates_through_the_cli(
    trained: tuple[Path, TrainReport, dict[str, Any]], cuhk03_root: Path, tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "val").mkdir(parents=True)
    for p in sorted((cuhk03_root / "val").glob("*.jpg")):
        if int(p.name[:4]) < 10:
            shutil.copy(p, root / "val" / p.name)
    r = runner.invoke(main_app, ["eval", "--dataset", "cuhk03", "--root", str(root), "--model",
                                 str(trained[0]), "--uri", str(tmp_path / "e.db"), "--json",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["model"]["fingerprint"] == trained[1].fingerprint
    assert report["model"]["pca"] == "pca"
    assert 0 < report["methods"]["c2f"]["mAP"] <= 100


TRAIN_KEYS = ["out", "state", "fingerprint", "backbone", "input_size", "device", "images",
              "identities", "epochs", "resumed_from_epoch", "final_loss", "final_acc", "history",
              "seconds_per_epoch", "train_wall_s", "fit_s", "seconds", "pca", "stripe_whitening",
              "settings"]


@pytest.mark.slow  # trains a model (the module's `trained`)
def test_report_json_keys_and_text(
    trained: tuple[Path, TrainReport, dict[str, Any]], capsys: pytest.CaptureFixture[str],
) -> None:
    out, report, _ = trained
    doc = report.to_dict()
    assert list(doc) == TRAIN_KEYS == [f.name for f in fields(TrainReport)]
    assert doc["settings"] == asdict(SETTINGS) and doc["history"] == report.history
    assert doc["out"] == str(out) and doc["state"] == str(state_path(out))
    assert doc["final_loss"] == report.history[-1]["loss"] and doc["resumed_from_epoch"] == 0
    render.train_summary(report)
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"wrote {out} (fingerprint {report.fingerprint}): "
                           f"{report.backbone} {report.input_size}, {report.images} images of "
                           f"16 identities, 2 epochs, final loss {report.final_loss:.4f}")


@pytest.mark.slow  # trains a model (the module's `trained`)
def test_resumed_run_equals_uninterrupted_run(
    trained: tuple[Path, TrainReport, dict[str, Any]], train_dir: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "r.pt"

    def stop(result: Any) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        train(train_dir, out, SETTINGS, workers=1, on_epoch=stop)
    assert state_path(out).is_file() and not out.exists()
    report = train(train_dir, out, SETTINGS, workers=0, resume=True)
    assert report.resumed_from_epoch == 1
    a = load_checkpoint(trained[0]).model.state_dict()
    b = load_checkpoint(out).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    losses = [h["loss"] for h in report.history]
    assert losses == pytest.approx([h["loss"] for h in trained[1].history], abs=1e-6)


def _cli() -> typer.Typer:
    return sub_app(register)


def test_corrupt_state_file_is_aone_line_error(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.pt"
    state_path(out).write_bytes(b"PK\x03\x04 not really a torch file")
    r = runner.invoke(_cli(), ["train", "--data", str(train_dir), "--out", str(out),
                               "--max-identities", "16", "--batch-p", "4", "--epochs", "2"])
    assert r.exit_code == 3
    assert "corrupted" in one_line_error(r)


@pytest.mark.slow  # trains a model (the module's `trained`)
def test_state_from_other_settings_is_refused(
    trained: tuple[Path, TrainReport, dict[str, Any]], train_dir: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "o.pt"
    shutil.copy(state_path(trained[0]), state_path(out))
    other = TrainSettings(**{**SETTINGS.__dict__, "lr": 1e-3})
    with pytest.raises(ModelError, match="other settings: lr 0.0003 there, 0.001 now"):
        train(train_dir, out, other, workers=0)
    r = runner.invoke(_cli(), ["train", "--data", str(train_dir), "--out", str(out),
                               "--max-identities", "16", "--batch-p", "4", "--epochs", "3",
                               "--seed", "3", "--resume"])
    assert r.exit_code == 3
    assert "epochs 2 there, 3 now" in one_line_error(r)


def test_bad_data_is_refused(train_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        train(tmp_path / "missing", tmp_path / "m.pt", SETTINGS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        train(tmp_path / "empty", tmp_path / "m.pt", SETTINGS)
    named = tmp_path / "named"
    named.mkdir()
    for p in sorted(train_dir.glob("000[01]_*.jpg")):
        shutil.copy(p, named / p.name)
    with pytest.raises(InputError, match="at least 2 identities"):
        train(named, tmp_path / "m.pt", TrainSettings(max_identities=1))
    with pytest.raises(InputError, match="no identity has K=20 images"):
        train(named, tmp_path / "m.pt", TrainSettings(batch_p=2, batch_k=20))
    with pytest.raises(InputError, match="more than 128 training images"):
        train(named, tmp_path / "m.pt", TrainSettings(batch_p=2, batch_k=4))
    shutil.copy(next(train_dir.glob("*.jpg")), named / "holiday.jpg")
    with pytest.raises(InputError, match="give no person id.*holiday.jpg"):
        train(named, tmp_path / "m.pt", SETTINGS)


def test_batches_and_augmentation_depend_only_on_seed_epoch_position() -> None:
    labels = [i // 7 for i in range(70)]  # 10 identities x 7 images
    a = pk_batches(labels, 4, 3, seed=1, epoch=2)
    assert a == pk_batches(labels, 4, 3, seed=1, epoch=2) != pk_batches(labels, 4, 3, 1, 3)
    assert all(len(b) == 12 and len({labels[i] for i in b}) == 4 for b in a)
    flat = [i for b in a for i in b]
    assert len(flat) == len(set(flat))  # no image twice in an epoch
    assert len(a) in (4, 5)  # 20 groups of 3, 4 per batch; the tail may hold < 4 identities
    image = torch.randint(0, 256, (3, 256, 128), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    s = AugmentSettings()
    x = augment(image, s, sample_rng(0, 1, 5))
    assert x.shape == image.shape and x.dtype == torch.uint8
    assert torch.equal(x, augment(image, s, sample_rng(0, 1, 5)))
    assert not torch.equal(x, augment(image, s, sample_rng(0, 1, 6)))
