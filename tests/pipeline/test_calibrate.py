"""Open-set calibration on real CUHK03 images with the real default model."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from reidctl.cli.calibrate_cmd import register
from reidctl.data.datasets import Protocol, cuhk03
from reidctl.errors import InputError, ModelError
from reidctl.model import FeatureExtractor, load_checkpoint, load_model, save_checkpoint
from reidctl.openset import calibrate, operating_point, scores_from_distances
from reidctl.pipeline.calibrate import calibrate_model, folder_protocol, restrict
from reidctl.pipeline.common import extract_files
from reidctl.pipeline.results import CalibrateReport
from reidctl.rerank import full_distances

TARGET = 0.05
IDS = [f"{i:04d}" for i in range(0, 30, 3)]  # 10 val identities, ~100 images


@pytest.fixture(scope="module")
def zero_shot() -> FeatureExtractor:
    return load_model("osnet_x0_25")


@pytest.fixture(scope="module")
def protocol(cuhk03_root: Path) -> Protocol:
    return restrict(cuhk03(cuhk03_root, "val"), IDS)


@pytest.fixture(scope="module")
def calibrated(
    zero_shot: FeatureExtractor, protocol: Protocol, tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, CalibrateReport]:
    out = tmp_path_factory.mktemp("cal") / "m.pt"
    return out, calibrate_model(zero_shot, protocol, TARGET, out)


@pytest.fixture(scope="module")
def reloaded(calibrated: tuple[Path, CalibrateReport]) -> FeatureExtractor:
    return load_model(calibrated[0])


def test_checkpoint_carries_open_set_and_keeps_fingerprint(
    calibrated: tuple[Path, CalibrateReport], zero_shot: FeatureExtractor, protocol: Protocol,
) -> None:
    out, r = calibrated
    loaded = load_checkpoint(out)
    assert loaded.fingerprint == zero_shot.fingerprint == r.fingerprint
    os_ = loaded.open_set
    assert os_ is not None and set(os_) == {"threshold", "target_fmr", "calibrated_on", "fmr",
                                            "tmr"}
    assert os_["threshold"] == r.threshold and os_["target_fmr"] == TARGET
    n_images = len(protocol.queries) + len(protocol.gallery)
    assert os_["calibrated_on"]["images"] == r.images == n_images
    assert os_["calibrated_on"]["identities"] == r.identities == len(IDS)
    assert os_["calibrated_on"]["path"].endswith("val")
    assert r.queries_impostor == len(protocol.queries) and r.queries_genuine > 0
    assert 0.0 < os_["fmr"] <= TARGET and 0.0 < os_["tmr"] <= 1.0 and r.skipped == {}
    assert loaded.extra["base_model"] == zero_shot.source and loaded.classes == []


def test_loaded_extractor_exposes_open_set(
    calibrated: tuple[Path, CalibrateReport], reloaded: FeatureExtractor,
    zero_shot: FeatureExtractor,
) -> None:
    out, r = calibrated
    ex = reloaded
    assert ex.fingerprint == zero_shot.fingerprint and ex.checkpoint == out
    assert ex.open_set == load_checkpoint(out).open_set and ex.describe()["open_set"] == ex.open_set
    ex.open_set["threshold"] = -1.0  # a copy: the model's record cannot be changed by accident
    assert ex.open_set["threshold"] == r.threshold
    assert zero_shot.open_set is None and zero_shot.describe()["open_set"] is None
    x = torch.rand(2, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(ex.extract(x).local, zero_shot.extract(x).local)


def test_measured_fmr_on_calibration_data_is_within_target(
    calibrated: tuple[Path, CalibrateReport], reloaded: FeatureExtractor, protocol: Protocol,
) -> None:
    """Recomputed independently: per-query exhaustive distances of the loaded model."""
    _, r = calibrated
    ex = reloaded
    q_g, q_l = extract_files(ex, [m.path for m in protocol.queries])
    g_g, g_l = extract_files(ex, [m.path for m in protocol.gallery])
    gg, gl = torch.from_numpy(g_g), torch.from_numpy(g_l)
    dist = np.stack([full_distances(q_g[i], q_l[i], gg, gl, ex.fine_weight).numpy()
                     for i in range(len(q_g))])  # (Q, G)
    scores = scores_from_distances(
        dist, [m.person_id for m in protocol.queries], [m.person_id for m in protocol.gallery],
        [m.camera for m in protocol.queries], [m.camera for m in protocol.gallery])
    # the calibration extracted the images in other batches: float32 rounding can move a
    # score lying exactly at the threshold (it is one of the impostor scores) by ~1e-7
    thr, eps = ex.open_set["threshold"], 1e-5
    point = operating_point(scores, thr * (1 - eps))
    assert point["fmr"] <= TARGET
    one = 1 / len(protocol.queries)
    assert abs(operating_point(scores, thr * (1 + eps))["fmr"] - r.fmr) <= one + 1e-9
    assert abs(point["tmr"] - r.tmr) <= one + 1e-9
    # float32 rounding aside, it is the same threshold this independent path calibrates
    assert calibrate(scores.impostor, TARGET) == pytest.approx(r.threshold, rel=1e-5)


def test_recalibrating_a_checkpoint_keeps_everything_else(
    calibrated: tuple[Path, CalibrateReport], reloaded: FeatureExtractor, protocol: Protocol,
    tmp_path: Path,
) -> None:
    first = load_checkpoint(calibrated[0])
    again = tmp_path / "again.pt"
    small = restrict(protocol, IDS[:4])
    r = calibrate_model(reloaded, small, 0.0, again)
    second = load_checkpoint(again)
    assert second.fingerprint == first.fingerprint and second.extra == first.extra
    assert second.open_set["target_fmr"] == 0.0 and second.open_set["fmr"] == r.fmr == 0.0
    assert second.open_set["calibrated_on"]["identities"] == 4
    assert second.open_set["threshold"] != first.open_set["threshold"]


def test_old_checkpoint_without_open_set_loads(calibrated: tuple[Path, CalibrateReport],
                                              tmp_path: Path) -> None:
    data = torch.load(calibrated[0], weights_only=True)
    del data["open_set"]
    torch.save(data, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").open_set is None
    assert load_model(tmp_path / "old.pt").open_set is None
    data["open_set"] = {"fmr": 0.1}  # no threshold
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="open_set"):
        load_checkpoint(tmp_path / "bad.pt")


def test_save_checkpoint_open_set_is_plain_data(calibrated: tuple[Path, CalibrateReport],
                                                tmp_path: Path) -> None:
    ck = load_checkpoint(calibrated[0])
    fp = save_checkpoint(tmp_path / "np.pt", replace(
        ck, open_set={"threshold": np.float64(0.5), "tmr": float("inf")}))
    back = load_checkpoint(tmp_path / "np.pt")  # weights_only: numpy scalars would not load
    assert fp == ck.fingerprint and back.open_set == {"threshold": 0.5, "tmr": float("inf")}
    assert type(back.open_set["threshold"]) is float
    for bad in ({"threshold": True}, {"threshold": "0.5"}, [0.5]):
        with pytest.raises(ValueError, match="open_set"):
            save_checkpoint(tmp_path / "bad.pt", replace(ck, open_set=bad))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="open_set"):
        save_checkpoint(tmp_path / "bad.pt",
                        replace(ck, open_set={"threshold": 1.0, "x": object()}))


def test_target_outside_unit_interval_is_an_input_error(
    zero_shot: FeatureExtractor, protocol: Protocol, tmp_path: Path,
) -> None:
    with pytest.raises(InputError, match="target FMR"):
        calibrate_model(zero_shot, protocol, 1.5, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_folder_protocols(tmp_path: Path, cuhk03_root: Path) -> None:
    cu = folder_protocol(cuhk03_root / "val")
    assert cu.queries and all(m.camera == "A" for m in cu.queries)
    assert all(m.camera == "B" for m in cu.gallery)
    market = tmp_path / "market"
    market.mkdir()
    for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0000_c1s1_000001_01.jpg",
                 "-1_c3s1_000002_01.jpg"):
        (market / name).touch()
    p = folder_protocol(market)
    assert [m.person_id for m in p.queries] == ["0002", "0002"]
    assert len(p.gallery) == 4 and p.junk_person_ids == frozenset({"-1"})
    (market / "holiday.jpg").touch()
    with pytest.raises(InputError, match="holiday.jpg"):
        folder_protocol(market)
    (market / "holiday.jpg").unlink()
    (market / "0001_00.jpg").touch()
    with pytest.raises(InputError, match="mixes"):
        folder_protocol(market)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        folder_protocol(tmp_path / "empty")


def test_cli_writes_a_calibrated_checkpoint(cuhk03_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "cal"
    data.mkdir()
    for f in sorted((cuhk03_root / "val").glob("*.jpg")):
        if f.name[:4] in IDS[:3]:
            shutil.copy(f, data / f.name)
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command keeps its name
    register(app)
    out = tmp_path / "cli.pt"
    r = CliRunner().invoke(app, ["calibrate", str(data), "--out", str(out), "--fmr", "0.1",
                                 "--device", "cpu", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["identities"] == 3 and report["fmr"] <= 0.1
    assert load_model(out).open_set["threshold"] == report["threshold"]
    bad = CliRunner().invoke(app, ["calibrate", str(tmp_path / "missing"), "--out", str(out)])
    assert bad.exit_code == 2 and "expected a folder" in bad.output
