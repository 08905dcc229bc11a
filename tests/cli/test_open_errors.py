"""Opening a database through the real CLI: a bad setting or path is one ``error:`` line
with exit 2, a database that cannot be opened exit 4 saying why, and commands that only
read never create a Lite database."""

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
from tests.cli_helpers import RUNNER_ENV, one_line_error
from tests.store.helpers import held_by_another_process, make_database, read_only

runner = CliRunner()


def _run(*args: str, env: dict[str, str | None] | None = None):  # noqa: ANN202
    return runner.invoke(app, list(args), env=RUNNER_ENV | (env or {}))


def _fails(result, code: int, *fragments: str) -> str:  # noqa: ANN001
    """The one ``error:`` line of a command that exited with ``code``."""
    assert result.exit_code == code, result.output + result.stderr
    line = one_line_error(result)
    assert line.startswith("error:") and "unexpected" not in line, line
    for fragment in fragments:
        assert fragment in line, line
    return line


def _reading_commands(uri: str, image: Path) -> dict[str, list[str]]:
    """Each command that only reads the database, as arguments."""
    return {"info": ["info", "--uri", uri],
            "search": ["search", str(image), "--uri", uri],
            "delete": ["delete", "--person", "0000", "--yes", "--uri", uri]}


# --- --timeout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "env", "toml"), [
    (["--timeout", "inf"], {}, None),
    (["--timeout", "-inf"], {}, None),
    (["--timeout", "nan"], {}, None),
    ([], {"REIDCTL_TIMEOUT": "inf"}, None),
    ([], {}, "timeout = inf\n"),
    ([], {}, "timeout = nan\n"),
    ([], {}, "timeout = -5\n"),
], ids=["option-inf", "option-minus-inf", "option-nan", "env-inf", "toml-inf", "toml-nan",
        "toml-negative"])
def test_timeout_that_is_not_a_finite_positive_number(
    tmp_path: Path, val_images: list[Path], args: list[str], env: dict[str, str],
    toml: str | None,
) -> None:
    if toml is not None:
        (tmp_path / "reidctl.toml").write_text(toml, encoding="utf-8")
        args = ["--config", str(tmp_path / "reidctl.toml"), *args]
    uri = str(tmp_path / "new.db")
    for command in (["info", "--uri", uri], ["ingest", str(val_images[0]), "--uri", uri]):
        _fails(_run(*args, *command, env=env), 2, "--timeout")
    assert not (tmp_path / "new.db").exists()


# --- malformed URIs ------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "why"), [
    ("http://127.0.0.1:abc", "Port could not be cast to integer value as 'abc'"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:65536", "Port out of range"),
    ("ftp://127.0.0.1:19530", "unknown scheme 'ftp'"),
])
def test_malformed_uri_is_a_usage_error(uri: str, why: str, val_images: list[Path]) -> None:
    for args in _reading_commands(uri, val_images[0]).values():
        _fails(_run(*args), 2, f"error: bad URI {uri!r}: {why}")
    _fails(_run("ingest", str(val_images[0]), "--uri", uri), 2, "bad URI")


def test_malformed_uri_error_hides_credentials() -> None:
    r = _run("info", "--uri", "http://alice:s3cret@db.example:port")
    line = _fails(r, 2, "bad URI 'http://***@db.example:port'")
    assert "s3cret" not in r.output + line and "alice" not in line


def test_doctor_with_a_malformed_uri_is_a_usage_error() -> None:
    _fails(_run("doctor", "--uri", "http://[::1"), 2, "bad URI")


# --- Lite paths that are not databases ---------------------------------------------------------


@pytest.mark.parametrize("content", [b"a text file, not a database\n", os.urandom(2048), b""],
                         ids=["text", "random-bytes", "empty"])
def test_db_file_that_is_not_a_database(tmp_path: Path, val_images: list[Path],
                                        content: bytes) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(content)
    commands = [*_reading_commands(str(path), val_images[0]).values(),
                ["ingest", str(val_images[0]), "--uri", str(path)]]
    for args in commands:
        _fails(_run(*args), 2, f"error: {path} is a file, not a Milvus Lite database")
    assert path.read_bytes() == content


def test_db_folder_that_is_not_a_database(tmp_path: Path, val_images: list[Path]) -> None:
    path = tmp_path / "photos.db"
    path.mkdir()
    (path / "notes.txt").write_text("mine", encoding="utf-8")
    r = _run("ingest", str(val_images[0]), "--uri", str(path))
    _fails(r, 2, f"{path} is a folder that is not a Milvus Lite database")
    assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]


def test_lite_path_not_ending_in_db_is_a_usage_error(tmp_path: Path,
                                                    val_images: list[Path]) -> None:
    r = _run("ingest", str(val_images[0]), "--uri", str(tmp_path / "gallery.sqlite"))
    _fails(r, 2, "error: a Milvus Lite URI is a file path ending in .db")


# --- commands that only read create nothing ----------------------------------------------------


def test_reading_commands_never_create_a_database(tmp_path: Path,
                                                  val_images: list[Path]) -> None:
    uri = tmp_path / "absent.db"
    for args in _reading_commands(str(uri), val_images[0]).values():
        _fails(_run(*args), 5, f"error: no Milvus Lite database at {uri}")
        assert not uri.exists(), args
    empty = tmp_path / "empty.db"  # an empty folder is not a database either
    empty.mkdir()
    _fails(_run("info", "--uri", str(empty)), 5, "no Milvus Lite database at")
    assert list(empty.iterdir()) == []


def _doctor(*args: str) -> tuple[int, dict[str, dict[str, str]]]:
    r = _run("doctor", *args, "--json")
    assert r.exit_code in (0, 1), r.output + r.stderr
    report = json.loads(r.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert r.exit_code == (1 if failed else 0) and report["ok"] == (not failed)
    return r.exit_code, checks


@pytest.mark.slow
def test_doctor_reports_a_missing_database_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, checks = _doctor("--uri", str(tmp_path / "new.db"))
    milvus = checks["milvus"]
    assert milvus["status"] == "warn" and milvus["fix"] == "reidctl ingest creates it"
    assert f"no Milvus Lite database at {tmp_path / 'new.db'} yet" in milvus["detail"]
    assert checks["disk"]["status"] in ("ok", "warn")
    assert not (tmp_path / "new.db").exists()
    monkeypatch.chdir(tmp_path)  # the default URI, ./reidctl.db
    _, checks = _doctor()
    assert checks["milvus"]["status"] == "warn"
    assert list(tmp_path.iterdir()) == []


def test_doctor_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    path.write_text("not a database", encoding="utf-8")
    code, checks = _doctor("--uri", str(path))
    assert code == 1 and checks["milvus"]["status"] == "fail"
    assert "is a file, not a Milvus Lite database" in checks["milvus"]["detail"]
    assert "--uri" in checks["milvus"]["fix"]
    assert path.read_text(encoding="utf-8") == "not a database"


# --- databases that cannot be opened -----------------------------------------------------------


def test_database_in_use_by_another_process(tmp_path: Path, val_images: list[Path]) -> None:
    path = make_database(tmp_path / "g.db")
    with held_by_another_process(path):
        for args in (["info", "--uri", str(path)],
                     ["ingest", str(val_images[0]), "--uri", str(path)]):
            _fails(_run(*args), 4, f"error: Milvus Lite database {path} is in use by "
                   "another process")
        code, checks = _doctor("--uri", str(path))
        assert code == 1 and "in use by another process" in checks["milvus"]["detail"]
    r = _run("info", "--uri", str(path), "--json")
    assert r.exit_code == 0, r.output + r.stderr
    assert [p["name"] for p in json.loads(r.stdout)["collections"]] == ["gallery"]


def test_read_only_database_and_folder(tmp_path: Path, val_images: list[Path]) -> None:
    path = make_database(tmp_path / "g.db")
    with read_only(path / "LOCK"):
        line = _fails(_run("info", "--uri", str(path)), 4,
                      f"error: cannot open Milvus Lite database {path}: cannot write")
    assert "another process" not in line
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        line = _fails(_run("ingest", str(val_images[0]), "--uri", str(folder / "new.db")), 4,
                      f"error: cannot create Milvus Lite database {folder / 'new.db'}")
    assert "another process" not in line and not (folder / "new.db").exists()


_BIND_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def test_read_only_mount(tmp_path: Path, val_images: list[Path]) -> None:
    """A folder on a read-only file system (a read-only bind mount in a private mount
    namespace): the real ``reidctl`` process says the file system is read-only."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    make_database(folder / "g.db")
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare command: cannot make a read-only bind mount here")
    probe = subprocess.run([unshare, "-rm", "sh", "-c", _BIND_RO, str(folder), "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if k not in RUNNER_ENV}
    reidctl = [sys.executable, "-m", "reidctl.cli.main"]
    for args, message in (
        (["info", "--uri", str(folder / "g.db")],
         f"error: cannot open Milvus Lite database {folder / 'g.db'}: cannot write "
         f"{folder / 'g.db' / 'LOCK'}: the file system is read-only"),
        (["ingest", str(val_images[0]), "--uri", str(folder / "new.db")],
         f"error: cannot create Milvus Lite database {folder / 'new.db'}: cannot write "
         f"{folder / 'new.db'}: the file system is read-only"),
    ):
        r = subprocess.run([unshare, "-rm", "sh", "-c", _BIND_RO, str(folder), *reidctl, *args],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 4, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert not (folder / "new.db").exists()
