"""Ingest and search through the CLI on unusable inputs: special files, oversized files,
paths too long for the system or the store, and a source name too long in UTF-8 bytes.

Runs that would hang or exhaust memory if the checks regressed (a named pipe, /dev/zero)
run as real processes with a timeout, so a regression fails instead of hanging.
"""

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
from reidctl.store.schema import load_spec
from tests.cli_helpers import RUNNER_ENV, SETTINGS_ENV, one_line_error
from tests.data.helpers import SYSTEM_PATH_MAX, make_file

TIMEOUT = 300  # s for one reidctl process (model load included) on a busy 2-core machine
runner = CliRunner()


def _reidctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``reidctl ARGS`` as a real process, bounded by :data:`TIMEOUT`."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    return subprocess.run([sys.executable, "-m", "reidctl.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _invoke(*args: str):  # noqa: ANN202 - a typer Result
    return runner.invoke(app, list(args), env=RUNNER_ENV)


def _counts(uri: Path) -> tuple[int, int]:
    """(global, local) row counts of the pair 'gallery' at ``uri``."""
    r = _invoke("info", "--uri", str(uri), "--json")
    assert r.exit_code == 0, r.output + r.stderr
    pair = next(c for c in json.loads(r.stdout)["collections"] if c["name"] == "gallery")
    return pair["global_count"], pair["local_count"]


def _stderr_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)  # no block written: reading it would allocate ``size`` bytes
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> Path:
    """A Lite database whose pair 'gallery' holds 2 images, made by a process that has
    ended (a Lite database stays locked by the process that opened it)."""
    uri = tmp_path_factory.mktemp("limits-db") / "g.db"
    proc = _reidctl("ingest", *map(str, val_images[:2]), "--uri", str(uri), "-q")
    assert proc.returncode == 0, proc.stderr
    return uri


@pytest.mark.slow  # real ingest processes
def test_unusable_files_are_skipped_and_counted(tmp_path: Path, val_images: list[Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for p in val_images[:3]:
        shutil.copy(p, folder / p.name)
    os.mkfifo(folder / "fifo.jpg")
    _sparse(folder / "big.jpg", 1 << 30)
    path_limit = load_spec("global").field("path").max_length
    assert path_limit is not None
    # readable by the system, too long for the store: in characters, and only in bytes
    long_ascii = make_file(folder, path_limit + 67, val_images[3].read_bytes())
    multibyte = make_file(folder, path_limit - 400, val_images[4].read_bytes(), component="ü")
    assert len(multibyte.encode()) > path_limit
    deep = make_file(folder, SYSTEM_PATH_MAX + 200, val_images[5].read_bytes())  # > PATH_MAX
    uri = tmp_path / "g.db"

    proc = _reidctl("ingest", str(folder), "/dev/zero", "--uri", str(uri), "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["files"] == 9 and rep["ingested"] == 3
    assert rep["skipped_by_reason"] == {"not a regular file": 2, "too large": 1,
                                        "path too long": 3}
    why = {ex["path"]: ex["reason"] for ex in rep["skipped_examples"]}
    assert why["/dev/zero"] == "not a regular file: a character device"
    assert why[str(folder / "fifo.jpg")] == "not a regular file: a named pipe (FIFO)"
    assert why[str(folder / "big.jpg")].startswith(f"too large: {1 << 30:,} bytes, the limit is")
    n_bytes = len(multibyte.encode())
    assert why[multibyte] == (f"path too long: {n_bytes:,} bytes in UTF-8 ({len(multibyte):,} "
                              f"characters), the global collection allows {path_limit:,} bytes")
    assert why[long_ascii].startswith(f"path too long: {path_limit + 67:,} bytes")
    assert why[deep].startswith("path too long:")
    assert _counts(uri) == (3, 3)

    proc = _reidctl("ingest", "/dev/zero", str(folder / "fifo.jpg"), str(folder / "big.jpg"),
                    "--uri", str(uri))
    assert proc.returncode == 2
    assert _stderr_line(proc) == ("error: none of the 3 file(s) could be ingested "
                                  "(2 not a regular file, 1 too large)")
    assert _counts(uri) == (3, 3)


@pytest.mark.slow
def test_source_is_checked_in_utf8_bytes_before_any_write(tmp_path: Path,
                                                          val_images: list[Path]) -> None:
    limit = load_spec("global").field("source").max_length
    assert limit is not None
    uri = tmp_path / "g.db"
    r = _invoke("ingest", *map(str, val_images[:3]), "--uri", str(uri), "-q")
    assert r.exit_code == 0, r.output + r.stderr
    before = _counts(uri)
    assert before == (3, 3)

    over = "ü" * (limit // 2 + 1)  # fewer characters than the limit, more bytes
    r = _invoke("ingest", *map(str, val_images[3:6]), "--uri", str(uri), "--source", over)
    assert r.exit_code == 2
    assert (f"source too long: {limit + 2} bytes in UTF-8 ({len(over)} characters), "
            f"the global collection allows {limit} bytes") in one_line_error(r)
    assert _counts(uri) == before  # no orphan row in either collection
    r = _invoke("ingest", *map(str, val_images[3:6]), "--uri", str(uri),
                "--source", os.fsdecode(b"gate-\xff"))  # an argument that is not UTF-8
    assert r.exit_code == 2 and "source not valid UTF-8" in one_line_error(r)
    assert _counts(uri) == before

    fresh = tmp_path / "fresh.db"
    r = _invoke("ingest", str(val_images[3]), "--uri", str(fresh), "--source", over)
    assert r.exit_code == 2 and "source too long" in one_line_error(r)
    r = _invoke("info", "--uri", str(fresh), "-c", "gallery")
    assert r.exit_code == 5  # refused before the pair was created

    r = _invoke("ingest", str(val_images[3]), "--uri", str(uri), "--source",
                "ü" * (limit // 2), "--json")  # exactly the limit in bytes: stored
    assert r.exit_code == 0, r.output + r.stderr
    assert json.loads(r.stdout)["ingested"] == 1
    assert _counts(uri) == (4, 4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_query_image_is_an_input_error(kind: str, db: Path, tmp_path: Path) -> None:
    query = tmp_path / "q.jpg"
    if kind == "fifo":
        os.mkfifo(query)
    else:
        query = Path("/dev/zero")
    proc = _reidctl("search", str(query), "--uri", str(db))
    assert proc.returncode == 2
    what = "a named pipe (FIFO)" if kind == "fifo" else "a character device"
    assert _stderr_line(proc) == (f"error: cannot use query image {query}: "
                                  f"not a regular file: {what}")


def test_oversized_or_unopenable_query_image(db: Path, tmp_path: Path,
                                             val_images: list[Path]) -> None:
    db = Path(shutil.copytree(db, tmp_path / "g.db"))  # this process keeps its copy locked
    big = _sparse(tmp_path / "big.jpg", 1 << 30)
    r = _invoke("search", str(big), "--uri", str(db))
    assert r.exit_code == 2
    assert f"cannot use query image {big}: too large: {1 << 30:,} bytes" in one_line_error(r)
    deep = make_file(tmp_path, SYSTEM_PATH_MAX + 200, val_images[0].read_bytes())
    r = _invoke("search", deep, "--uri", str(db))
    assert r.exit_code == 2
    assert "path too long: File name too long" in one_line_error(r)
    r = _invoke("search", str(tmp_path), "--uri", str(db))  # a folder: each image in it
    assert r.exit_code == 2
    assert "cannot use query image" in one_line_error(r)  # its unusable big.jpg
