"""One's own camera crops, named plainly (``cam1_a.jpg``): labels from ``ingest --camera``
and ``--manifest``, searching folders and manifests, what an empty answer says, the CSV
and grid outputs, ``train --device``'s default, ``info``'s model and device, and the
result table at a narrow terminal. Real CUHK03 images in a real Milvus Lite file."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.cells import cell_len
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.data.manifest import format_time, parse_time_ms
from tests.cli_helpers import RUNNER_ENV, SETTINGS_ENV, one_line_error

runner = CliRunner()

# plain name -> the CUHK03 val image it is a copy of (persons 0000 and 0001, cameras A/B)
OWN = {"cam1_a.jpg": "0000_00.jpg", "cam2_a.jpg": "0000_05.jpg",
       "cam1_b.jpg": "0001_00.jpg", "cam2_b.jpg": "0001_05.jpg"}
GATE = {"x1.jpg": "0002_00.jpg", "x2.jpg": "0002_05.jpg"}  # a folder of one camera


def _run(*args: str, env: dict[str, str | None] | None = None):  # noqa: ANN202
    return runner.invoke(app, list(args), env=RUNNER_ENV | (env or {}))


def _ok(*args: str, env: dict[str, str | None] | None = None):  # noqa: ANN202
    r = _run(*args, env=env)
    assert r.exit_code == 0, r.output + r.stderr
    return r


def _copies(folder: Path, names: dict[str, str], cuhk03_root: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, original in names.items():
        shutil.copy(cuhk03_root / "val" / original, folder / name)
    return [folder / n for n in names]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, cuhk03_root: Path) -> dict[str, Path]:
    """Plainly named crops, a manifest labelling three of them (relative and absolute
    paths, a byte-order mark, its own column order and case), and a database holding
    them and a folder ingested with ``--camera``: ``ingest --manifest m.csv gate3/
    --camera 9 --source shop``."""
    root = tmp_path_factory.mktemp("own")
    crops = root / "my_crops"
    _copies(crops, OWN, cuhk03_root)
    _copies(root / "gate3", GATE, cuhk03_root)
    (root / "lists").mkdir()
    manifest = root / "lists" / "m.csv"
    manifest.write_text(
        "\ufeffPath, Camera ,person,time,source\n"
        "../my_crops/cam1_a.jpg,1,alice,2026-11-26T08:00,\n"
        "\n"
        "../my_crops/cam2_a.jpg,2,alice,2026-11-26T09:30:00+01:00,lobby\n"
        f"{crops / 'cam1_b.jpg'},,bob,,\n", encoding="utf-8")
    db = root / "own.db"
    r = _ok("ingest", "--manifest", str(manifest), str(root / "gate3"), "--camera", "9",
            "--source", "shop", "--uri", str(db), "--json", "-q")
    assert json.loads(r.stdout)["ingested"] == 5
    return {"root": root, "crops": crops, "gate": root / "gate3", "manifest": manifest,
            "db": db}


def _hits(own: dict[str, Path], *args: str) -> list[dict]:
    r = _ok("search", *args, "--uri", str(own["db"]), "--json")
    return json.loads(r.stdout)["results"]


def test_manifest_and_camera_option_label_plainly_named_crops(own: dict[str, Path]) -> None:
    hits = _hits(own, str(own["crops"] / "cam1_a.jpg"), "-k", "10")[0]["hits"]
    by_name = {Path(h["path"]).name: h for h in hits}
    assert set(by_name) == {"cam1_a.jpg", "cam2_a.jpg", "cam1_b.jpg", "x1.jpg", "x2.jpg"}
    meta = {n: (h["camera"], h["person_id"], h["source"], h["captured_at"])
            for n, h in by_name.items()}
    t8 = parse_time_ms("2026-11-26T08:00:00+00:00")
    # a manifest's value wins over the options; an empty cell leaves them (or the name)
    assert meta["cam1_a.jpg"] == ("1", "alice", "shop", t8)
    assert meta["cam2_a.jpg"] == ("2", "alice", "lobby", t8 + 30 * 60_000)  # 09:30+01:00
    assert meta["cam1_b.jpg"] == ("9", "bob", "shop", -1)
    assert meta["x1.jpg"] == meta["x2.jpg"] == ("9", "", "shop", -1)
    # the times are those filters use
    after = _hits(own, str(own["crops"] / "cam1_a.jpg"), "--after", "2026-11-26T08:15")
    assert [Path(h["path"]).name for h in after[0]["hits"]] == ["cam2_a.jpg"]
    person = _hits(own, str(own["crops"] / "cam1_a.jpg"), "--camera", "9", "-k", "10")
    assert {Path(h["path"]).name for h in person[0]["hits"]} == {"cam1_b.jpg", "x1.jpg",
                                                                 "x2.jpg"}


def test_ingesting_again_with_other_labels_updates_them(
        tmp_path: Path, cuhk03_root: Path) -> None:
    crops = _copies(tmp_path / "c", {"a.jpg": "0003_00.jpg", "b.jpg": "0003_06.jpg"},
                    cuhk03_root)
    db = str(tmp_path / "u.db")
    _ok("ingest", str(tmp_path / "c"), "--uri", db, "-q")
    r = _ok("search", str(crops[0]), "--uri", db, "--json")
    assert {h["camera"] for h in json.loads(r.stdout)["results"][0]["hits"]} == {""}
    rep = json.loads(_ok("ingest", str(tmp_path / "c"), "--camera", "gate-2", "--uri", db,
                         "--json", "-q").stdout)
    assert (rep["updated"], rep["ingested"]) == (2, 0)
    r = _ok("search", str(crops[0]), "--uri", db, "--json", "--camera", "gate-2")
    assert len(json.loads(r.stdout)["results"][0]["hits"]) == 2


@pytest.mark.parametrize(("text", "message"), [
    ("path,camera,time\na.jpg,1,yesterday\n",
     "line 2: time 'yesterday' is not an ISO 8601 time"),
    ("path,camera,time\na.jpg,1,1969-12-31T23:00\n", "line 2: time '1969-12-31T23:00' is before"),
    ("path,cam\na.jpg,1\n", "line 1: unknown column 'cam' (columns: path, camera, person"),
    ("camera,person\n1,alice\n", "line 1: no 'path' column"),
    ("path,camera,camera\na.jpg,1,2\n", "line 1: column 'camera' appears twice"),
    ("path,camera\na.jpg,1\n\nmissing.jpg,2\n", "line 4: image does not exist:"),
    ("path\nsub\n", "line 2: "),  # a folder
    ("path,camera\na.jpg," + "c" * 33 + "\n", "line 2: camera 'ccc"),
    ("path,person\na.jpg,\"al\x07ice\"\n", "line 2: person 'al\\x07ice' contains a control"),
    ("path,camera\na.jpg,1\nb.jpg,2\n./a.jpg,3\n", "line 4: "),  # listed twice
    ("path,camera\na.jpg,1,extra\n", "line 2: 3 cells, the first line names 2 columns"),
    ("path,camera\n\"a.jpg,1\n", "not valid CSV"),
    ("", "is empty: its first line names the columns"),
    ("path,camera\n", "lists no image"),
])
def test_bad_manifest_is_one_line_error_naming_the_line_and_nothing_is_ingested(
        tmp_path: Path, cuhk03_root: Path, text: str, message: str) -> None:
    _copies(tmp_path, {"a.jpg": "0004_00.jpg", "b.jpg": "0004_05.jpg"}, cuhk03_root)
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text(text, encoding="utf-8")
    db = tmp_path / "bad.db"
    r = _run("ingest", "--manifest", str(manifest), "--uri", str(db))
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert line.startswith("error:") and message in line, line
    assert f"manifest {manifest}" in line
    assert not db.exists()  # nothing stored, not even an empty database
    if "line 2: " == message and "sub" in text:
        assert "is a folder" in line
    if "./a.jpg" in text:
        assert "is listed twice (first on line 2)" in line
    if "c" * 33 in text:
        assert "cannot be stored: too long: 33 bytes" in line


@pytest.mark.parametrize(("args", "message"), [
    (["--camera", " "], "--camera is empty"),
    (["--camera", "c" * 40], "--camera 'cccc"),
    (["--manifest", "absent.csv"], "manifest does not exist: absent.csv"),
    ([], "Missing argument 'paths'"),
])
def test_bad_camera_or_manifest_option(tmp_path: Path, cuhk03_root: Path,
                                       monkeypatch: pytest.MonkeyPatch, args: list[str],
                                       message: str) -> None:
    monkeypatch.chdir(tmp_path)
    _copies(tmp_path / "c", {"a.jpg": "0004_00.jpg"}, cuhk03_root)
    given = ["c"] if args and args[0] == "--camera" else []
    r = _run("ingest", *given, *args, "--uri", str(tmp_path / "x.db"))
    assert r.exit_code == 2, r.output
    assert message in one_line_error(r)
    assert not (tmp_path / "x.db").exists()


def test_search_takes_folders_and_manifests(own: dict[str, Path]) -> None:
    res = _hits(own, str(own["gate"]), "-k", "2")
    assert [Path(r["query"]).name for r in res] == ["x1.jpg", "x2.jpg"]
    for r in res:  # each query finds itself first
        assert Path(r["hits"][0]["path"]).name == Path(r["query"]).name
        assert r["hits"][0]["distance"] < 1e-3
    res = _hits(own, "--manifest", str(own["manifest"]), str(own["gate"] / "x2.jpg"), "-k", "1")
    assert [Path(r["query"]).name for r in res] == ["x2.jpg", "cam1_a.jpg", "cam2_a.jpg",
                                                    "cam1_b.jpg"]
    # the whole folder of plainly named crops: every image in it, the human table too
    r = _ok("search", str(own["crops"]), "-k", "1", "--uri", str(own["db"]))
    for name in OWN:
        assert name in r.stdout
    r = _run("search", "--uri", str(own["db"]))
    assert r.exit_code == 2 and "Missing argument 'images'" in one_line_error(r)
    empty = own["root"] / "empty"
    empty.mkdir(exist_ok=True)
    r = _run("search", str(empty), "--uri", str(own["db"]))
    assert r.exit_code == 2 and "no image files found in" in one_line_error(r)


def test_empty_answer_says_which_filter_or_that_the_collection_is_empty(
        own: dict[str, Path], tmp_path: Path, cuhk03_root: Path) -> None:
    query = str(own["crops"] / "cam2_b.jpg")
    r = _ok("search", query, "--camera", "7", "--uri", str(own["db"]))
    assert "no stored image passes the filter camera == 7" in r.stdout
    assert "collection is empty" not in r.stdout
    r = _ok("search", query, "--camera", "7", "--camera", "8", "--source", "shop",
            "--before", "2020-01-01", "--uri", str(own["db"]))
    assert ("no stored image passes the filter camera in (7, 8) and source == shop and "
            "captured before 2020-01-01") in " ".join(r.stdout.split())
    doc = json.loads(_ok("search", query, "--camera", "7", "--json",
                         "--uri", str(own["db"])).stdout)
    assert doc["filter"] == "camera == 7" and doc["results"][0]["hits"] == []
    # a pair emptied by delete: it is empty, whatever the filter
    _copies(tmp_path / "c", {"a.jpg": "0005_00.jpg"}, cuhk03_root)
    db = str(tmp_path / "e.db")
    _ok("ingest", str(tmp_path / "c"), "--uri", db, "-q")
    _ok("delete", "--all", "--yes", "--uri", db)
    for extra in ([], ["--camera", "7"]):
        r = _ok("search", query, *extra, "--uri", db)
        assert "(the collection is empty)" in r.stdout and "filter" not in r.stdout


def test_csv_has_a_row_per_query_and_hit_beside_json(own: dict[str, Path],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "new" / "hits.csv"
    queries = [str(own["crops"] / "cam1_a.jpg"), str(own["crops"] / "cam2_b.jpg")]
    r = _ok("search", *queries, "-k", "3", "--csv", str(out), "--json",
            "--uri", str(own["db"]))
    results = json.loads(r.stdout)["results"]  # stdout stays one JSON document
    assert f"csv written to {out}" in r.stderr
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["query", "rank", "distance", "id", "path", "camera", "person", "time",
                       "source"]
    want = [[res["query"], str(h["rank"]), h["id"], h["path"], h["camera"], h["person_id"],
             format_time(h["captured_at"]), h["source"]]
            for res in results for h in res["hits"]]
    assert len(rows) - 1 == len(want) == 6
    assert [row[:2] + row[3:] for row in rows[1:]] == want
    for row, h in zip(rows[1:], [h for res in results for h in res["hits"]], strict=True):
        assert abs(float(row[2]) - h["distance"]) < 1e-5
    by_path = {Path(row[4]).name: row for row in rows[1:]}
    assert by_path["cam1_a.jpg"][7] == "2026-11-26T08:00:00+00:00"
    assert by_path["cam1_b.jpg"][7] == ""  # unknown: empty
    assert "x1.jpg" not in by_path or by_path["x1.jpg"][6] == ""


def test_grid_says_where_it_was_written(own: dict[str, Path], tmp_path: Path) -> None:
    grid = tmp_path / "g.png"
    r = _ok("search", str(own["crops"] / "cam1_a.jpg"), "-k", "3", "--grid", str(grid),
            "--uri", str(own["db"]))
    assert grid.stat().st_size > 0
    assert f"grid written to {grid}" in r.stderr


def test_every_device_option_defaults_to_auto_and_reads_the_environment(
        tmp_path: Path) -> None:
    group = typer.main.get_command(app)
    devices = {name: next(p for p in cmd.params if p.name == "device")
               for name, cmd in group.commands.items()
               if any(p.name == "device" for p in cmd.params)}
    assert "train" in devices and len(devices) > 5
    assert {n: p.default for n, p in devices.items()} == dict.fromkeys(devices, "auto")
    assert {n: p.envvar for n, p in devices.items()} == dict.fromkeys(devices, "REIDCTL_DEVICE")
    (tmp_path / "data").mkdir()
    r = _run("train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m.pt"),
             env={"REIDCTL_DEVICE": "tpu"})
    assert r.exit_code == 2 and "--device must be auto, cpu or cuda" in one_line_error(r)


def _setting(report: dict, name: str) -> dict:
    return next(s for s in report["settings"] if s["name"] == name)


def test_info_lists_model_and_device_with_their_origin(own: dict[str, Path],
                                                       tmp_path: Path) -> None:
    rep = json.loads(_ok("info", "--uri", str(own["db"]), "--json").stdout)
    assert _setting(rep, "model") == {"name": "model", "value": "osnet_x0_25",
                                      "source": "default"}
    assert _setting(rep, "device") == {"name": "device", "value": "auto", "source": "default"}
    env = {"REIDCTL_MODEL": "googlenet", "REIDCTL_DEVICE": "cpu"}
    rep = json.loads(_ok("info", "--uri", str(own["db"]), "--json", env=env).stdout)
    assert _setting(rep, "model") == {"name": "model", "value": "googlenet",
                                      "source": "environment (REIDCTL_MODEL)"}
    assert _setting(rep, "device")["source"] == "environment (REIDCTL_DEVICE)"
    cfg = tmp_path / "r.toml"
    cfg.write_text('model = "omz_0286"\n', encoding="utf-8")
    rep = json.loads(_ok("--config", str(cfg), "info", "--uri", str(own["db"]), "--json").stdout)
    assert _setting(rep, "model") == {"name": "model", "value": "omz_0286",
                                      "source": f"config ({cfg})"}
    human = _ok("info", "--uri", str(own["db"]), env=env).stdout
    assert "REIDCTL_MODEL" in human and "googlenet" in human


def test_result_table_keeps_paths_on_one_line_at_a_narrow_terminal(
        own: dict[str, Path], tmp_path: Path, cuhk03_root: Path) -> None:
    deep = tmp_path / "a_long_folder_name" / "of_the_cameras" / "at_the_north_gate"
    name = "person_seen_at_the_gate.jpg"
    _copies(deep, {name: "0001_07.jpg"}, cuhk03_root)  # cam2_b's person, another shot
    db = tmp_path / "t.db"  # made by a process of its own (a Lite file has one user)
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV} | {"COLUMNS": "72"}
    for args in (["ingest", str(own["crops"]), str(deep), "-q"],
                 ["search", str(own["crops"] / "cam2_b.jpg"), "-k", "5"]):
        r = subprocess.run([sys.executable, "-m", "reidctl.cli.main", *args, "--uri", str(db)],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr
    table = [ln for ln in r.stdout.splitlines() if ln[:1] in "┏┃┡│└"]
    assert len(table) == 3 + 5 + 1  # header (3 lines), 5 hits, bottom: no row wrapped
    assert all(cell_len(ln) <= 72 for ln in table), r.stdout
    cells = [ln.split("│")[5].strip() for ln in table if ln.startswith("│")]
    deep_cell = next((c for c in cells if c.endswith(name)), r.stdout)  # the name whole
    assert deep_cell.startswith("…") and len(deep_cell) < len(str(deep / name))
    assert str(deep.relative_to(tmp_path) / name).endswith(deep_cell[1:])


def test_plain_folder_and_manifest_end_to_end_delete_by_source(
        tmp_path: Path, cuhk03_root: Path) -> None:
    """A folder of plain names plus a manifest: ingest, a filtered search written as CSV, then
    delete by source removes exactly that source's images."""
    crops = _copies(tmp_path / "crops", OWN, cuhk03_root)
    manifest = tmp_path / "crops.csv"
    manifest.write_text("path,camera,person,time,source\n"
                        "crops/cam1_a.jpg,1,alice,2026-11-26T08:00,lobby\n"
                        "crops/cam2_a.jpg,2,alice,2026-11-26T09:00,lobby\n", encoding="utf-8")
    db = str(tmp_path / "e2e.db")
    r = _ok("ingest", "--manifest", str(manifest), str(crops[2]), str(crops[3]),
            "--source", "shop", "--uri", db, "--json", "-q")
    assert json.loads(r.stdout)["ingested"] == 4
    out = tmp_path / "hits.csv"
    _ok("search", str(crops[0]), "--camera", "2", "--after", "2026-11-26T08:30",
        "--csv", str(out), "--uri", db)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(Path(r["path"]).name, r["camera"], r["person"], r["source"]) for r in rows] == [
        ("cam2_a.jpg", "2", "alice", "lobby")]
    r = _ok("delete", "--source", "lobby", "--yes", "--uri", db, "--json")
    assert json.loads(r.stdout)["deleted"] == 2
    left = _ok("search", str(crops[0]), "-k", "10", "--uri", db, "--json")
    hits = json.loads(left.stdout)["results"][0]["hits"]
    assert sorted(Path(h["path"]).name for h in hits) == ["cam1_b.jpg", "cam2_b.jpg"]
    assert {h["source"] for h in hits} == {"shop"}
