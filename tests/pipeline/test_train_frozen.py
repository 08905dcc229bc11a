"""Part-supervised training of omz_0286 with a frozen, cached prefix, on real CUHK03 images."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from reidctl.errors import InputError, ModelError
from reidctl.model import ConvNet, build_backbone, load_checkpoint, load_model
from reidctl.pipeline.results import TrainReport
from reidctl.pipeline.train import TrainSettings, train
from reidctl.pipeline.train_cache import cache_dir
from reidctl.pipeline.train_state import state_path

# omz_0286 has K=384: fitting the projections needs more than 384 images (42 identities).
SETTINGS = TrainSettings(backbone="omz_0286", epochs=2, batch_p=4, batch_k=4, max_identities=42,
                         seed=3, freeze="941", part_weight=1.0)


class Interrupt(Exception):
    """Stands for a Ctrl-C / kill after the first epoch's state was saved."""


@pytest.fixture(scope="module")
def omz() -> Any:
    try:
        return build_backbone("omz_0286")
    except ModelError as e:
        pytest.skip(f"omz_0286 weights not found: {e}")


@pytest.fixture(scope="module")
def frozen(omz: Any, cuhk03_root: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> tuple[Path, TrainReport, list[str]]:
    """One uninterrupted run; also the stages it reported."""
    out = tmp_path_factory.mktemp("frozen") / "m.pt"
    stages: list[str] = []

    def stage(name: str, total: int) -> Any:
        stages.append(name)
        return lambda n: None

    report = train(cuhk03_root / "train", out, SETTINGS, on_stage=stage)
    return out, report, stages


@pytest.mark.slow  # trains a model
def test_frozen_part_training_lowers_the_loss_and_keeps_the_checkpoint_format(
    frozen: tuple[Path, TrainReport, list[str]], omz: Any,
) -> None:
    out, report, stages = frozen
    assert stages[:2] == ["cache prefix", "imprint classifier"]
    assert (cache_dir(out) / "manifest.json").is_file()
    first, last = report.history
    assert last["loss"] < first["loss"] and last["part_ce"] < first["part_ce"]
    assert {"loss", "ce", "triplet", "acc", "seconds", "part_ce"} <= set(last)
    # today's format: the keys of a plain ConvNet with a classifier block, nothing else
    plain = ConvNet(omz.module, omz.spec.channels, report.identities)
    plain.drop_training_blocks()
    saved = load_checkpoint(out).model.state_dict()
    assert saved.keys() == plain.state_dict().keys()
    assert not any("part_classifiers" in k or "embedding_classifier" in k for k in saved)
    assert load_model(out).fingerprint == report.fingerprint
    state = torch.load(state_path(out), weights_only=True)["model"]
    assert any(k.startswith("part_classifiers.") for k in state)
    assert any(k.startswith("embedding_classifier.") for k in state)  # on the OMZ head
    assert last["embed_ce"] < first["embed_ce"]
    # the prefix (up to "941") is unchanged, the suffix was trained
    prefix, suffix = omz.module.split("941")
    graph = omz.module.graph
    names = {id(p): n for n, p in graph.named_parameters()}
    for p in prefix.parameters():
        assert torch.equal(saved[f"backbone.graph.{names[id(p)]}"], p.detach()), names[id(p)]
    assert any(not torch.equal(saved[f"backbone.graph.{names[id(p)]}"], p.detach())
               for p in suffix.parameters())


@pytest.mark.slow  # trains a model
def test_resumed_frozen_run_equals_uninterrupted_run(
    frozen: tuple[Path, TrainReport, list[str]], cuhk03_root: Path, tmp_path: Path,
) -> None:
    a_out, a_report, _ = frozen
    out = tmp_path / "r.pt"
    shutil.copytree(cache_dir(a_out), cache_dir(out))  # same images, prefix and cut: reused
    stages: list[str] = []

    def stage(name: str, total: int) -> Any:
        stages.append(name)
        return lambda n: None

    def stop(result: Any) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        train(cuhk03_root / "train", out, SETTINGS, on_epoch=stop, on_stage=stage)
    assert "cache prefix" not in stages
    assert state_path(out).is_file() and not out.exists()
    report = train(cuhk03_root / "train", out, SETTINGS, resume=True)
    assert report.resumed_from_epoch == 1
    a = load_checkpoint(a_out).model.state_dict()
    b = load_checkpoint(out).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["loss"] for h in report.history] == [h["loss"] for h in a_report.history]


def test_a_cut_that_is_not_clean_is_a_one_line_input_error(
    omz: Any, cuhk03_root: Path, tmp_path: Path,
) -> None:
    for cut, why in (("nope", "no inner tensor.*clean cuts include"),
                     ("1126", "not before the conv map '1126'")):
        with pytest.raises(InputError, match=f"--freeze '{cut}'.*{why}") as e:
            train(cuhk03_root / "train", tmp_path / "x.pt", replace(SETTINGS, freeze=cut))
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="part_weight must be >= 0"):
        train(cuhk03_root / "train", tmp_path / "x.pt", replace(SETTINGS, part_weight=-1.0))
