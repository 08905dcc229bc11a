"""Settings precedence (option > REIDCTL_* > reidctl.toml > default), info, doctor,
--quiet / --verbose and shell completion, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None):  # noqa: ANN202
    return runner.invoke(app, list(args), env=env)


def _setting(report: dict, name: str) -> dict:
    return next(s for s in report["settings"] if s["name"] == name)


@pytest.fixture(scope="module")
def db(tmp_path_factory, val_images: list[Path]) -> Path:
    """A Lite database with two small pairs, 'alpha' (6 images) and 'beta' (3)."""
    root = tmp_path_factory.mktemp("settings")
    uri = root / "s.db"
    for name, images in (("alpha", val_images[:6]), ("beta", val_images[6:9])):
        folder = root / name
        folder.mkdir()
        for p in images:
            shutil.copy(p, folder / p.name)
        r = _run("ingest", str(folder), "--uri", str(uri), "-c", name, "--quiet")
        assert r.exit_code == 0, r.output
    return uri


def test_info_lists_every_pair_with_counts_index_and_size(db: Path) -> None:
    r = _run("info", "--uri", str(db), "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    by_name = {p["name"]: p for p in rep["collections"]}
    assert set(by_name) == {"alpha", "beta"}
    assert (by_name["alpha"]["global_count"], by_name["alpha"]["local_count"]) == (6, 6)
    assert by_name["beta"]["global_count"] == 3
    assert by_name["alpha"]["index"]["type"] == "HNSW"
    assert by_name["alpha"]["global_dim"] == 128 and len(by_name["alpha"]["model"]) == 16
    assert rep["backend"] == "milvus-lite" and rep["disk_bytes"] > 0
    assert _setting(rep, "uri")["source"] == "option"
    human = _run("info", "--uri", str(db))
    assert human.exit_code == 0 and "alpha" in human.stdout and "HNSW" in human.stdout


def test_info_on_a_missing_database_is_one_line_exit_5(tmp_path: Path) -> None:
    r = _run("info", "--uri", str(tmp_path / "none.db"))
    assert r.exit_code == 5
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.db").exists()  # looking did not create it


def test_precedence_option_over_env_over_config_over_default(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "reidctl.toml"
    cfg.write_text(f'uri = "{db}"\ncollection = "beta"\ntimeout = 12.5\n'
                   '[search]\ntop-k = 3\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # ./reidctl.toml is found without --config
    env = {"REIDCTL_COLLECTION": None}
    rep = json.loads(_run("info", "--json", env=env).stdout)
    assert [p["name"] for p in rep["collections"]] == ["beta"]  # the file's collection is used
    assert rep["config_file"] == "reidctl.toml"
    for name in ("uri", "collection", "timeout"):
        assert _setting(rep, name)["source"].startswith("config"), name
    assert _setting(rep, "timeout")["value"] == 12.5
    assert _setting(rep, "search.top_k")["value"] == 3
    assert _setting(rep, "token")["source"] == "default"

    rep = json.loads(_run("info", "--json", env={"REIDCTL_COLLECTION": "alpha"}).stdout)
    assert [p["name"] for p in rep["collections"]] == ["alpha"]
    assert _setting(rep, "collection")["source"] == "environment (REIDCTL_COLLECTION)"

    rep = json.loads(_run("--timeout", "7", "info", "-c", "beta", "--json",
                          env={"REIDCTL_COLLECTION": "alpha"}).stdout)
    assert [p["name"] for p in rep["collections"]] == ["beta"]
    assert _setting(rep, "collection")["source"] == "option"
    assert _setting(rep, "timeout") == {"name": "timeout", "value": 7.0, "source": "option"}


def test_config_value_reaches_a_command(db: Path, tmp_path: Path, val_images: list[Path]) -> None:
    cfg = tmp_path / "conf.toml"
    cfg.write_text(f'uri = "{db}"\ncollection = "alpha"\n[search]\ntop-k = 2\n', encoding="utf-8")
    r = _run("--config", str(cfg), "search", str(val_images[0]), "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["results"][0]["hits"]
    assert len(hits) == 2  # top-k from the file
    r = _run("--config", str(cfg), "search", str(val_images[0]), "-k", "4", "--json")
    assert len(json.loads(r.stdout)["results"][0]["hits"]) == 4  # the option wins


def test_secrets_from_config_are_masked(db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "secret.toml"
    cfg.write_text(f'uri = "{db}"\npassword = "hunter2-secret"\n', encoding="utf-8")
    r = _run("--config", str(cfg), "info", "--json")
    assert r.exit_code == 0, r.output
    assert "hunter2-secret" not in r.output
    assert _setting(json.loads(r.stdout), "password")["value"] == "***"


@pytest.mark.parametrize(("text", "message"), [
    ("colection = 'x'\n", "no reidctl command has an option 'colection'"),
    ("[serch]\ntop-k = 3\n", "[serch] is not a reidctl command"),
    ("[search]\nbatch-size = 3\n", "reidctl search has no option 'batch-size'"),
    ("uri = \n", "is not valid TOML"),
])
def test_bad_config_file_is_one_line_exit_2(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text, encoding="utf-8")
    r = _run("--config", str(cfg), "info", "--uri", str(tmp_path / "x.db"))
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and message in line, line


def test_missing_config_file_named_explicitly(tmp_path: Path) -> None:
    r = _run("--config", str(tmp_path / "nope.toml"), "info")
    assert r.exit_code == 2
    assert "config file does not exist" in r.stderr


def test_doctor_reports_ok_and_failures(db: Path, tmp_path: Path) -> None:
    r = _run("doctor", "--uri", str(db), "-c", "alpha", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    status = {c["name"]: c["status"] for c in rep["checks"]}
    assert rep["ok"] and status["torch"] == "ok" and status["model"] == "ok"
    assert status["collection alpha"] == "ok" and status["milvus"] == "ok"
    # the collection holds another model's descriptors: say so and what to do
    r = _run("doctor", "--uri", str(db), "-c", "alpha", "--model", "googlenet", "--json")
    assert r.exit_code == 1
    bad = next(c for c in json.loads(r.stdout)["checks"] if c["name"] == "collection alpha")
    assert bad["status"] == "fail" and "--model" in bad["fix"]
    # a model file that is not a checkpoint
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    r = _run("doctor", "--uri", str(db), "--model", str(junk))
    assert r.exit_code == 1
    assert "fail model" in " ".join(r.stdout.split()) and "fix:" in r.stdout


def test_doctor_unreachable_server_says_what_to_fix() -> None:
    r = _run("--timeout", "2", "doctor", "--uri", "http://127.0.0.1:9", "--json")
    assert r.exit_code == 1
    milvus = next(c for c in json.loads(r.stdout)["checks"] if c["name"] == "milvus")
    assert milvus["status"] == "fail" and "start the server" in milvus["fix"]


def test_quiet_and_verbose(db: Path, val_images: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    shutil.copy(val_images[0], folder / val_images[0].name)
    r = _run("-v", "ingest", str(folder), "--uri", str(db), "-c", "alpha")
    assert r.exit_code == 0, r.output
    assert "connected to" in r.stderr  # each step is logged on stderr
    r = _run("-q", "info", "--uri", str(db), "--json")
    assert r.exit_code == 0 and r.stderr == ""


def test_shell_completion_completes_commands_and_options(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("reidctl")
    if not exe.exists():
        pytest.skip("the reidctl console script is not installed")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REIDCTL_")}
    shown = subprocess.run([str(exe), "--show-completion", "bash"], capture_output=True,
                           text=True, env=clean, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "_REIDCTL_COMPLETE=complete_bash" in shown.stdout
    env = clean | {"_REIDCTL_COMPLETE": "complete_bash", "COMP_CWORD": "1",
                   "COMP_WORDS": "reidctl in"}
    words = subprocess.run([str(exe)], env=env, capture_output=True, text=True).stdout.split()
    assert {"info", "ingest"} <= set(words)
    env |= {"COMP_CWORD": "2", "COMP_WORDS": "reidctl search --to"}
    words = subprocess.run([str(exe)], env=env, capture_output=True, text=True).stdout.split()
    assert "--top-k" in words
