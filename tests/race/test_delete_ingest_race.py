"""A delete and an ingest of the same images, run at the same time against a Milvus server
with a pause that holds one of them between its two writes, 20 times: no search fails,
and no image is left in one collection only (before and after ``reidctl repair``).

Two collections have no transaction between them. Before the fix, an ingest paused
between its local and its global write while a delete removed both halves left global
rows without local descriptors, and every search failed until ``ingest --force``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV, SETTINGS_ENV
from tests.milvus_server import drop_all

pytestmark = pytest.mark.slow  # 20 rounds of a real delete and ingest

REPO = Path(__file__).resolve().parents[2]
HOOK = [sys.executable, str(Path(__file__).with_name("pause_hook.py"))]
ROUNDS = 20
IMAGES = 8  # deleted and ingested again each round
KEEP = 4  # stay, so that a delete of the others is not a delete of the whole pair
PAUSE_S = 3.0  # an ingest held between its writes while a delete runs
HOLD_S = 8.0  # a delete held between its halves while a whole ingest runs

runner = CliRunner()


def cli(args: list[str]) -> dict:
    r = runner.invoke(app, [*args, "--json"], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    return json.loads(r.stdout)


def paused(args: list[str], after: str, marker: Path) -> subprocess.Popen:
    """``reidctl ARGS`` in a process of its own that pauses after the call ``after``."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env.update(PAUSE_AFTER=after, PAUSE_MARKER=str(marker), PYTHONPATH=str(REPO))
    return subprocess.Popen([*HOOK, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before the pause:\n{out}\n{err}")
        assert time.monotonic() < deadline, "the pause never came"
        time.sleep(0.05)


def finish(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    return json.loads(out), err


def test_concurrent_delete_and_ingest_leave_no_orphan(
    milvus_server: str, tmp_path: Path, val_images: list[Path]
) -> None:
    drop_all(milvus_server)
    folder, kept = tmp_path / "imgs", tmp_path / "kept"
    folder.mkdir()
    kept.mkdir()
    for p in val_images[:IMAGES]:
        shutil.copy(p, folder / p.name)
    for p in val_images[IMAGES:IMAGES + KEEP]:
        shutil.copy(p, kept / p.name)
    query = str(val_images[0])
    base = ["--uri", milvus_server, "-c", "race"]
    assert cli(["ingest", str(kept), *base, "--source", "keep", "-q"])["ingested"] == KEEP
    assert cli(["ingest", str(folder), *base, "--source", "s0", "-q"])["ingested"] == IMAGES

    rewrites = redeletes = 0
    for i in range(ROUNDS):
        old, new = f"s{i}", f"s{i + 1}"
        marker = tmp_path / f"pause{i}"
        if i % 2 == 0:
            # ingest (new source: every row rewritten) paused between its two writes,
            # while the delete of the same images runs to completion
            ingest = paused(["ingest", str(folder), *base, "--source", new, "-q", "--json"],
                            f"upsert:_local:{PAUSE_S}", marker)
            wait_for(marker, ingest)
            gone = cli(["delete", "--source", old, *base, "--yes"])
            report, err = finish(ingest)
            assert gone["deleted"] == IMAGES and report["updated"] == IMAGES, (gone, report)
            rewrites += "writing them again" in err
        else:
            # delete paused between its global and its local half, while the ingest runs
            delete = paused(["delete", "--source", old, *base, "--yes", "--json"],
                            f"delete:_global:{HOLD_S}", marker)
            wait_for(marker, delete)
            t0 = time.monotonic()
            cli(["ingest", str(folder), *base, "--source", new, "-q"])
            assert time.monotonic() - t0 < HOLD_S, "the ingest outlasted the delete's pause"
            gone, err = finish(delete)
            assert gone["deleted"] == IMAGES, gone
            redeletes += "deleting them again" in err
            if cli(["info", *base])["collections"][0]["global_count"] == KEEP:
                cli(["ingest", str(folder), *base, "--source", new, "-q"])  # next round's
        found = cli(["search", query, *base, "-k", str(IMAGES + KEEP)])["results"][0]
        assert found["warnings"] == [] and len(found["hits"]) == IMAGES + KEEP, (i, found)
        orphans = cli(["repair", *base, "--dry-run"])
        assert orphans["global_only"] == orphans["local_only"] == 0, (i, orphans)
    fixed = cli(["repair", *base])
    assert fixed["global_only"] == fixed["local_only"] == 0
    info = cli(["info", *base])["collections"][0]
    assert info["global_count"] == info["local_count"] == IMAGES + KEEP
    # the pause put each race where it bites: the losing side's repair path ran
    assert rewrites == ROUNDS // 2, rewrites
    assert redeletes == ROUNDS // 2, redeletes
