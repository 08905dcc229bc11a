"""Ctrl-C during a real ingest subprocess: one line, exit 130, and a rerun completes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import interrupt_ingest

pytestmark = pytest.mark.slow  # a real ingest, interrupted, then run again

REIDCTL = [sys.executable, "-m", "reidctl.cli.main"]


def test_sigint_during_ingest_then_resume(tmp_path: Path, val_images: list[Path]) -> None:
    uri = str(tmp_path / "i.db")
    folder = val_images[0].parent
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    code, _, err = interrupt_ingest(
        [*REIDCTL, "ingest", str(folder), "--uri", uri, "--batch-size", "16"], Path(uri), env)
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["error: interrupted"]

    done = subprocess.run([*REIDCTL, "ingest", str(folder), "--uri", uri, "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["ingested"] + r["unchanged"] + r["updated"] == len(val_images)
    assert r["unchanged"] > 0  # what the first run stored was not recomputed
    info = subprocess.run([*REIDCTL, "info", "--uri", uri, "--json"], capture_output=True,
                          text=True, timeout=120, env=env)
    d = json.loads(info.stdout)["collections"][0]
    assert d["global_count"] == d["local_count"] == len(val_images)
