"""Helpers shared by the CLI tests."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

# REIDCTL_* settings that must not leak from the caller's environment into the rows
SETTINGS_ENV = ("REIDCTL_URI", "REIDCTL_TOKEN", "REIDCTL_COLLECTION", "REIDCTL_MODEL",
                "REIDCTL_DEVICE", "REIDCTL_CONFIG", "REIDCTL_USER", "REIDCTL_PASSWORD",
                "REIDCTL_DB", "REIDCTL_TLS", "REIDCTL_TLS_CA", "REIDCTL_TLS_SERVER_NAME",
                "REIDCTL_TLS_CERT", "REIDCTL_TLS_KEY", "REIDCTL_TIMEOUT", "REIDCTL_DEBUG")
RUNNER_ENV: dict[str, str | None] = dict.fromkeys(SETTINGS_ENV)

def one_line_error(result: Any) -> str:  # noqa: ANN401 - a typer Result
    """The single stderr line of a failed command (no traceback anywhere)."""
    text = result.stderr.strip()
    assert "Traceback" not in result.output + text
    assert len(text.splitlines()) == 1, text
    return text


def sub_app(register: Callable[[typer.Typer], None]) -> typer.Typer:
    """A Typer app holding only the commands ``register`` adds."""
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def _batch_stored(uri: Path) -> bool:
    """Whether a Milvus Lite database has data in a global collection's WAL (Lite appends
    each upsert to it): the ingest's first batch is stored, the others are to come."""
    return any(os.path.getsize(p) > 0
               for p in glob.glob(str(uri / "collections" / "*_global" / "wal" / "*")))


def interrupt_ingest(command: list[str], uri: Path, env: dict[str, str],
                     attempts: int = 3) -> tuple[int, str, str]:
    """Runs an ingest into the Lite database ``uri`` as a real process and sends SIGINT as
    soon as its first batch is stored; returns (exit code, stdout, stderr). A run that
    finished before the signal arrived is retried on a fresh database; when every try
    finishes first, the test fails (it would have checked nothing)."""
    env = dict(env, PYTHONUNBUFFERED="1")
    for _ in range(attempts):
        shutil.rmtree(uri, ignore_errors=True)
        # SIGINT at its default: a shell starts background jobs with it ignored, and a
        # Python started that way keeps ignoring it (no KeyboardInterrupt at all)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 120
            while (time.monotonic() < deadline and proc.poll() is None
                   and not _batch_stored(uri)):
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            return proc.returncode, stdout, stderr
    raise AssertionError(f"{attempts} ingests finished before SIGINT arrived: "
                         "nothing was interrupted")


def lite_gallery(folder: Path, images: list[Path]) -> Path:
    """A Lite database ``folder/g.db`` with the pair 'gallery' holding ``images`` (copied
    into ``folder``), made by ``reidctl ingest`` with the default model."""
    from typer.testing import CliRunner

    from reidctl.cli.main import app

    for p in images:
        shutil.copy(p, folder / p.name)
    uri = folder / "g.db"
    r = CliRunner().invoke(app, ["ingest", str(folder), "--uri", str(uri), "-q"], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    return uri
