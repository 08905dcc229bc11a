"""SIGKILL a real `reidctl ingest` at random points, resume it, and verify the store.

The check lives in tests/crash/check.py (its ingest runner and store reader beside it);
these tests run it on 200 real CUHK03 val images, on Milvus Lite and on a Milvus server.
Two directed cases (tests/crash/sigkill_hook.py) put the kill where a random one rarely
lands: between a batch's local and global write, and while the collection pair is created.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from reidctl.pipeline.ingest import WRITE_BATCHES
from tests.crash.check import render, run_check
from tests.crash.ingest_runner import run_ingest
from tests.crash.store_check import read_store

pytestmark = pytest.mark.slow  # every test here runs real ingests and kills them

N_IMAGES = 200  # room for a kill before the last write of each run (writes of 32 rows)
BATCH = 4  # 50 batches, 7 writes: room for kills at several points of the writing phase
HOOK = [sys.executable, str(Path(__file__).with_name("sigkill_hook.py"))]
COMMON = {"model": "osnet_x0_25", "device": "cpu", "token": None, "timeout": 300}


def _copy(images: list[Path], folder: Path) -> Path:
    folder.mkdir()
    for p in images:
        shutil.copy2(p, folder / p.name)
    return folder


def _empty_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """URI of a store without the `crash` collection pair."""
    if backend == "lite":
        return str(tmp_path / "crash.db")
    from reidctl.store import MilvusStore

    uri = request.getfixturevalue("milvus_server")
    with MilvusStore(uri, "crash") as store:
        if store.exists():
            store.drop()
    return uri


@pytest.mark.parametrize(("backend", "kills"), [("lite", 3), ("server", 2)])
def test_killed_ingest_resumes_without_loss_or_duplicates(
    backend: str, kills: int, val_images: list[Path], tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    images = _copy(val_images[:N_IMAGES], tmp_path / "images")
    uri = _empty_store(backend, tmp_path, request)

    res = run_check(images, uri, kills=kills, collection="crash", seed=0,
                    batch_size=BATCH, sample=20, run_timeout=300)
    report = render(res)
    print(report)
    n = N_IMAGES
    assert res.images == n
    assert not res.failures, report

    # kills happened, and at least one left the store partially written
    killed = [r for r in res.runs if r.outcome == "killed"]
    assert len(killed) == res.kills >= 1, report
    assert any(0 < r.global_after < n for r in killed), report
    # after every kill: no global entry without its local descriptor, no duplicate, and
    # local-only entries only from the one write a kill can cut between its two halves
    for r in res.runs:
        assert r.global_without_local == 0, report
        assert r.duplicates == 0, report
        assert 0 <= r.local_without_global <= WRITE_BATCHES * BATCH, report
        assert r.local_after - r.local_without_global == r.global_after, report

    s = res.store
    assert s["global_count"] == s["local_count"] == n, report
    assert s["global_distinct"] == s["local_distinct"] == n, report
    assert s["duplicates_global"] == s["duplicates_local"] == 0, report
    assert s["missing_global"] == s["missing_local"] == 0, report
    assert s["extra_global"] == s["extra_local"] == 0, report
    assert s["global_without_local"] == s["local_without_global"] == 0, report
    assert s["bad_path"] == s["bad_model"] == s["bad_norm"] == 0, report
    assert s["sampled"] == 20, report
    assert max(s["max_diff_global"], s["max_diff_local"]) <= 1e-5, report

    final = res.final
    assert final is not None and final.report is not None, report
    r = final.report
    assert r["unchanged"] > 0, report  # the final run resumed instead of starting over
    assert r["unchanged"] == final.global_before, report
    assert r["ingested"] + r["updated"] == n - final.global_before, report
    assert r["ingested"] + r["updated"] + r["unchanged"] == n, report


def test_kill_between_local_and_global_write_leaves_only_harmless_local_rows(
    val_images: list[Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    w = WRITE_BATCHES * BATCH  # rows per write: ingest gathers batches into one upsert
    n = w + BATCH  # two writes: w rows, then BATCH rows; SIGKILL after the 2nd local one
    images = _copy(val_images[:n], tmp_path / "images")
    uri = _empty_store("lite", tmp_path, request)  # (passes on the server too, 40 s slower)
    killed, _ = run_ingest(
        images, uri, "crash", BATCH, n, plan=None, period_hint=1.0, skip_upto=0,
        launcher=HOOK, env={"CRASH_AFTER": "upsert:_local:2"}, **COMMON)
    assert killed.returncode == -9, killed.error
    snap = read_store(images, uri, "crash")
    assert snap["global_count"] == w, snap
    assert snap["local_count"] == n, snap
    assert snap["local_without_global"] == BATCH, snap  # the cut write: local only
    assert snap["global_without_local"] == 0, snap
    assert snap["duplicates_global"] == snap["duplicates_local"] == 0, snap

    final, _ = run_ingest(images, uri, "crash", BATCH, n, plan=None,
                          period_hint=1.0, skip_upto=0, **COMMON)
    assert final.outcome == "final", final.error
    r = final.report
    assert r["unchanged"] == w, r
    assert r["ingested"] == BATCH and r["updated"] == 0, r  # the cut write redone
    s = read_store(images, uri, "crash", sample=8)
    assert s["global_count"] == s["local_count"] == s["global_distinct"] == n, s
    assert s["local_without_global"] == s["global_without_local"] == 0, s
    assert s["duplicates_global"] == s["duplicates_local"] == 0, s
    assert s["missing_global"] == s["missing_local"] == s["bad_norm"] == 0, s
    assert max(s["max_diff_global"], s["max_diff_local"]) <= 1e-5, s


@pytest.mark.parametrize(("backend", "suffix"), [
    ("lite", "_local"), ("lite", "_global"),
    ("server", "_local"), ("server", "_global"),
])
def test_kill_while_creating_the_collection_pair_is_completed_by_the_rerun(
    backend: str, suffix: str, val_images: list[Path], tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    n = 10
    images = _copy(val_images[:n], tmp_path / "images")
    uri = _empty_store(backend, tmp_path, request)
    killed, _ = run_ingest(
        images, uri, "crash", BATCH, n, plan=None, period_hint=1.0, skip_upto=0,
        launcher=HOOK, env={"CRASH_AFTER": f"create_collection:{suffix}:1"}, **COMMON)
    assert killed.returncode == -9, killed.error

    final, _ = run_ingest(images, uri, "crash", BATCH, n, plan=None,
                          period_hint=1.0, skip_upto=0, **COMMON)
    assert final.outcome == "final", final.error
    assert final.report["ingested"] == n, final.report
    s = read_store(images, uri, "crash")
    assert s["global_count"] == s["local_count"] == s["global_distinct"] == n, s
    assert s["local_without_global"] == s["global_without_local"] == 0, s
