"""Open-set answers through the CLI: calibrate a threshold, store it with the model, and
search says "no match" for a person absent from the gallery; eval reports TMR / FMR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app

runner = CliRunner()
ABSENT = "0004"


def _invoke(*args: str):  # noqa: ANN202
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory, val_images: list[Path]) -> dict:
    """Calibration split = val persons 0-9 (camera A queries vs camera B); gallery = their
    camera-B images without person ABSENT; a calibrated model at FMR 0."""
    root = tmp_path_factory.mktemp("open")
    split = root / "cal" / "val"
    gallery = root / "gallery"
    split.mkdir(parents=True)
    gallery.mkdir()
    for p in val_images:
        if int(p.name[:4]) < 10:
            shutil.copy(p, split / p.name)
            if int(p.stem[5:]) >= 5 and not p.name.startswith(ABSENT):
                shutil.copy(p, gallery / p.name)
    model = root / "m.pt"
    cal = json.loads(_invoke("calibrate", str(split), "--out", str(model), "--fmr", "0",
                             "--json", "-q").stdout)
    uri = str(root / "g.db")
    _invoke("ingest", str(gallery), "--uri", uri, "--model", str(model), "-q")
    return {"model": str(model), "uri": uri, "split": split, "cal": cal, "root": root}


def test_calibration_is_stored_with_the_model(setup: dict) -> None:
    cal = setup["cal"]
    assert cal["fmr"] == 0.0 and cal["target_fmr"] == 0.0 and 0.0 < cal["threshold"] < 2.0
    assert cal["identities"] == 10


def test_absent_person_gets_no_match(setup: dict) -> None:
    query = str(setup["split"] / f"{ABSENT}_00.jpg")
    r = _invoke("search", query, "--uri", setup["uri"], "--model", setup["model"], "--json")
    res = json.loads(r.stdout)["results"][0]
    assert res["no_match"] is True and res["threshold"] == pytest.approx(setup["cal"]["threshold"])
    assert res["hits"][0]["distance"] > res["threshold"]
    assert ABSENT not in {h["person_id"] for h in res["hits"]}
    human = _invoke("search", query, "--uri", setup["uri"], "--model", setup["model"])
    assert "no match" in human.stdout
    # a user-given threshold overrides the model's
    r = _invoke("search", query, "--uri", setup["uri"], "--model", setup["model"],
                "--threshold", "10", "--json")
    assert json.loads(r.stdout)["results"][0]["no_match"] is False


def test_eval_reports_open_set_figures(setup: dict) -> None:
    r = _invoke("eval", "-d", "cuhk03", "--root", str(setup["split"].parent), "--uri",
                str(setup["root"] / "e.db"), "--model", setup["model"], "--json", "-q")
    o = json.loads(r.stdout)["open_set"]
    assert o["threshold"] == pytest.approx(setup["cal"]["threshold"]) and o["source"] == "model"
    assert o["queries_impostor"] == json.loads(r.stdout)["num_queries"]
    assert o["fmr"] <= 0.05  # FMR 0 on these very queries, up to float rounding
    assert 0.0 <= o["tmr"] <= 1.0
