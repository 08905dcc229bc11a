"""A full disk during ingest: one-line error, nothing half-written, a rerun completes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.store import MilvusStore

runner = CliRunner()


@pytest.fixture(params=["1m", "3m"])  # full during the writes / at the final flush
def tiny_disk(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow  # ingests until a small disk fills
def test_full_disk_during_ingest(tiny_disk: Path, tmp_path: Path, val_images: list[Path]) -> None:
    folder = val_images[0].parent
    r = runner.invoke(app, ["ingest", str(folder), "--uri", str(tiny_disk / "g.db"), "-q"])
    assert r.exit_code == 4, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "disk is full" in err and "Traceback" not in r.output

    moved = tmp_path / "big" / "g.db"  # the same database, given room again
    shutil.copytree(tiny_disk / "g.db", moved)
    with MilvusStore(str(moved)) as store:
        stored = {i for b in store.iterate(with_vectors=False) for i in b["id"]}
        assert 0 < len(stored) <= len(val_images)
        # every global entry that survived has its local descriptor, and no more
        assert store.fetch_local(sorted(stored)).shape[0] == len(stored)
        assert store.info().local_count >= len(stored)  # a local row may precede its global
    r = runner.invoke(app, ["ingest", str(folder), "--uri", str(moved), "--json", "-q"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["ingested"] + rep["unchanged"] + rep["updated"] == len(val_images)
    with MilvusStore(str(moved)) as store:
        ids = [i for b in store.iterate(with_vectors=False) for i in b["id"]]
        assert len(ids) == len(set(ids)) == len(val_images)
        assert store.info().local_count == len(val_images)
