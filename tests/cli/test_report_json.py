"""The ``--json`` documents of fit-pca, calibrate and info keep their keys in order (scripts
read them), carry what the checkpoint or the database holds, and the text shows the same."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli import render
from reidctl.cli.main import app
from reidctl.model import load_model
from reidctl.pipeline.results import CalibrateReport, FitReport, InfoReport, PairInfo
from tests.cli_helpers import RUNNER_ENV, lite_gallery

runner = CliRunner()

FIT_KEYS = ["out", "fingerprint", "images", "skipped", "pca", "stripe_whitening",
            "fine_weight", "seconds"]
CALIBRATE_KEYS = ["out", "fingerprint", "threshold", "fmr", "tmr", "queries_genuine",
                  "queries_impostor", "target_fmr", "images", "identities", "skipped",
                  "protocol", "fine_weight", "model", "seconds"]
INFO_KEYS = ["uri", "backend", "disk_bytes", "collections", "config_file", "settings"]
PAIR_KEYS = ["name", "global_count", "local_count", "global_dim", "local_dim", "model",
             "backbone", "index", "schemas"]


def _json(argv: list[str]) -> dict:
    r = runner.invoke(app, argv, env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    return json.loads(r.stdout)


def _text(argv: list[str]) -> str:
    r = runner.invoke(app, argv, env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    return " ".join(r.stdout.split())  # rich wraps long lines at the terminal width


def test_report_fields_are_the_json_keys() -> None:
    assert [f.name for f in fields(FitReport)] == FIT_KEYS
    assert [f.name for f in fields(CalibrateReport)] == CALIBRATE_KEYS
    assert [f.name for f in fields(InfoReport)] == INFO_KEYS
    assert [f.name for f in fields(PairInfo)] == PAIR_KEYS


@pytest.mark.slow  # fits the projections on more images than the features have dimensions
def test_fit_pca_json(cuhk03_root: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "fit"
    data.mkdir()
    files = sorted((cuhk03_root / "train").glob("*.jpg"))[:130]
    for f in files:
        shutil.copy(f, data / f.name)
    (data / "broken.jpg").write_bytes(files[0].read_bytes()[:300])
    out = tmp_path / "m.pt"
    doc = _json(["fit-pca", str(data), "--out", str(out), "--device", "cpu", "--json",
                 "--quiet"])
    assert list(doc) == FIT_KEYS
    assert doc["out"] == str(out) and doc["fingerprint"] == load_model(out).fingerprint
    assert doc["images"] == len(files) and doc["skipped"] == {"corrupt or truncated": 1}
    report = FitReport(**doc)
    assert report.to_dict() == doc and report.skipped_total == 1
    render.fit_summary(report)
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"wrote {out} (fingerprint {doc['fingerprint']}): {doc['pca']};")
    assert f"fitted on {len(files)} images (1 skipped)" in text


def test_calibrate_json_and_text(cuhk03_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "cal"
    data.mkdir()
    ids = sorted({f.name[:4] for f in (cuhk03_root / "val").glob("*.jpg")})[:3]
    for i in ids:
        for f in (cuhk03_root / "val").glob(f"{i}_*.jpg"):
            shutil.copy(f, data / f.name)
    out = tmp_path / "c.pt"
    args = [str(data), "--fmr", "0.1", "--device", "cpu", "--quiet"]
    doc = _json(["calibrate", *args, "--out", str(out), "--json"])
    assert list(doc) == CALIBRATE_KEYS
    assert CalibrateReport(**doc).to_dict() == doc
    model = load_model(out)
    assert doc["fingerprint"] == model.fingerprint
    assert doc["threshold"] == model.open_set["threshold"] and doc["identities"] == len(ids)
    # the same split and model again: the text states the numbers of the JSON
    text = _text(["calibrate", *args, "--out", str(tmp_path / "again.pt")])
    assert f"no match beyond distance {doc['threshold']:.4f}" in text
    assert (f"FMR {doc['fmr']:.2%} (target {doc['target_fmr']:.2%}) over "
            f"{doc['queries_impostor']} impostor queries, TMR {doc['tmr']:.2%} over "
            f"{doc['queries_genuine']} genuine queries") in text


def test_info_json_and_text(tmp_path: Path, val_images: list[Path]) -> None:
    uri = lite_gallery(tmp_path, val_images[:6])
    doc = _json(["info", "--uri", str(uri), "--json"])
    assert list(doc) == INFO_KEYS
    assert doc["backend"] == "milvus-lite" and doc["disk_bytes"] > 0
    assert doc["config_file"] is None
    [pair] = doc["collections"]
    assert list(pair) == PAIR_KEYS
    assert pair["name"] == "gallery" and pair["global_count"] == pair["local_count"] == 6
    assert pair["model"] == load_model("osnet_x0_25").fingerprint
    assert all(list(s) == ["name", "value", "source"] for s in doc["settings"])
    assert {"name": "uri", "value": str(uri), "source": "option"} in doc["settings"]
    text = _text(["info", "--uri", str(uri)])
    assert f"{doc['uri']} (milvus-lite, {doc['disk_bytes'] / 2**20:.1f} MiB on disk)" in text
    assert f"gallery │ 6 │ {pair['global_dim']}-D │" in text
    assert pair["model"] in text and "uri │ " in text
