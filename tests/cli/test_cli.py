"""The CLI through typer's CliRunner: exit codes, one-line errors, output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app

runner = CliRunner()


def _run(*args: str):  # noqa: ANN202
    return runner.invoke(app, list(args))


def _one_line_error(result) -> str:  # noqa: ANN001
    text = result.stderr.strip()
    assert "Traceback" not in result.output + text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error:")
    return text




def test_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom reidctl.cli.main import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules and 'pymilvus' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_path(tmp_path: Path) -> None:
    r = _run("ingest", str(tmp_path / "nope"), "--uri", str(tmp_path / "a.db"))
    assert r.exit_code == 2
    assert "does not exist" in _one_line_error(r)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = _run("ingest", str(tmp_path / "empty"), "--uri", str(tmp_path / "a.db"))
    assert r.exit_code == 2
    assert "no image files" in _one_line_error(r)


def test_search_on_missing_collection(tmp_path: Path, val_images: list[Path]) -> None:
    r = _run("search", str(val_images[0]), "--uri", str(tmp_path / "a.db"), "-c", "nothing")
    assert r.exit_code == 5
    assert "no Milvus Lite database at" in _one_line_error(r)
    assert not (tmp_path / "a.db").exists()  # searching did not create an empty database


def test_database_folder_missing(tmp_path: Path, val_images: list[Path]) -> None:
    r = _run("ingest", str(val_images[0]), "--uri", str(tmp_path / "no" / "dir" / "a.db"))
    assert r.exit_code == 2
    _one_line_error(r)


@pytest.mark.slow
def test_ingest_search_and_bad_queries(tmp_path: Path, small_root: Path) -> None:
    uri = str(tmp_path / "g.db")
    folder = tmp_path / "imgs"
    shutil.copytree(small_root / "val", folder)
    (folder / "broken.jpg").write_bytes((folder / "0000_00.jpg").read_bytes()[:500])
    (folder / "readme.png").write_text("text")
    r = _run("ingest", str(folder), "--uri", uri, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    n = len(list(small_root.glob("val/*.jpg")))
    assert rep["ingested"] == n and rep["skipped"] == 2
    assert rep["skipped_by_reason"] == {"corrupt or truncated": 1, "not an image": 1}

    r = _run("ingest", str(folder), "--uri", uri)
    assert r.exit_code == 0
    assert f"unchanged {n}" in r.stdout

    query = small_root / "val" / "0003_01.jpg"
    r = _run("search", str(query), "--uri", uri, "--top-k", "3", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["results"][0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["person_id"] == "0003" and hits[0]["distance"] < 1e-3  # itself
    r = _run("search", str(query), "--uri", uri, "--top-k", "3")
    assert r.exit_code == 0 and "0003" in r.stdout and "distance" in r.stdout

    tiny = tmp_path / "tiny.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tiny)
    r = _run("search", str(tiny), "--uri", uri)
    assert r.exit_code == 2 and "too small" in _one_line_error(r)
    grey = tmp_path / "grey.png"
    Image.open(query).convert("L").save(grey)
    r = _run("search", str(grey), "--uri", uri, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["results"][0]["hits"]
    r = _run("search", str(tmp_path / "missing.jpg"), "--uri", uri)
    assert r.exit_code == 2 and "does not exist" in _one_line_error(r)

    r = _run("info", "--uri", uri, "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["collections"][0]["global_count"] == n


@pytest.mark.slow
def test_eval_json_schema(tmp_path: Path, small_root: Path) -> None:
    r = _run("eval", "--dataset", "cuhk03", "--root", str(small_root),
             "--uri", str(tmp_path / "e.db"), "--json", "--m", "50")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["dataset"] == "cuhk03" and d["num_queries"] > 0 and d["gallery_size"] > 0
    for m in ("coarse", "c2f", "linear"):
        keys = {"mAP", "mAP_trapz", "rank1", "rank5", "rank10", "ms_p50", "ms_p95"}
        assert keys <= set(d["methods"][m])
    r = _run("eval", "--dataset", "cuhk03", "--root", str(small_root),
             "--uri", str(tmp_path / "e.db"))
    assert r.exit_code == 0 and "c2f" in r.stdout and "mAP" in r.stdout


def test_eval_bad_dataset_and_root(tmp_path: Path) -> None:
    r = _run("eval", "--dataset", "imagenet", "--root", str(tmp_path))
    assert r.exit_code == 2 and "unknown dataset" in _one_line_error(r)
    r = _run("eval", "--dataset", "cuhk03", "--root", str(tmp_path / "none"))
    assert r.exit_code == 2 and "does not exist" in _one_line_error(r)


def test_unreachable_server_hides_secrets(val_images: list[Path]) -> None:
    r = runner.invoke(app, ["--user", "alice", "--password", "s3cret-pw", "--timeout", "3",
                            "search", str(val_images[0]), "--uri", "http://127.0.0.1:1",
                            "--token", "bob:t0ken-pw"])
    assert r.exit_code == 4, r.output
    line = _one_line_error(r)
    assert "s3cret-pw" not in r.output + r.stderr and "t0ken-pw" not in r.output + r.stderr
    assert "127.0.0.1:1" in line


def test_missing_tls_file_is_one_line(val_images: list[Path], tmp_path: Path) -> None:
    r = runner.invoke(app, ["--tls-ca", str(tmp_path / "ca.pem"), "info",
                            "--uri", "https://127.0.0.1:1"])
    assert r.exit_code == 4
    assert "TLS file does not exist" in _one_line_error(r)


def test_sharded_ingest_covers_every_image_once(tmp_path: Path, small_root: Path) -> None:
    uri = str(tmp_path / "s.db")
    folder = str(small_root / "val")
    counts = []
    for i in range(3):
        r = _run("ingest", folder, "--uri", uri, "--shard", f"{i}/3", "--json", "-q")
        assert r.exit_code == 0, r.output
        counts.append(json.loads(r.stdout)["files"])
    n = len(list((small_root / "val").glob("*.jpg")))
    assert sum(counts) == n and all(c > 0 for c in counts)
    pairs = json.loads(_run("info", "--uri", uri, "--json").stdout)["collections"]
    assert [p["global_count"] for p in pairs] == [n]
    r = _run("ingest", folder, "--uri", uri, "--shard", "3/3")
    assert r.exit_code == 2 and "--shard" in _one_line_error(r)
