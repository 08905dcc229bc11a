"""Images stored in one collection only (what a crash or a race leaves): search still
answers, a rerun of ingest stores them whole again, and ``reidctl repair`` finds and
removes both kinds; a --source too long for the store in bytes writes nothing. Milvus
Lite and a server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.store import MilvusStore
from tests.cli_helpers import RUNNER_ENV

runner = CliRunner()


def run(args: list[str]) -> tuple[int, dict | None, str]:
    r = runner.invoke(app, [*args, "--json"], env=RUNNER_ENV)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, (json.loads(r.stdout) if r.exit_code == 0 else None), r.stderr


def ok(args: list[str]) -> dict:
    code, out, err = run(args)
    assert code == 0 and out is not None, err
    return out


def halves(uri: str, name: str) -> tuple[set[str], set[str]]:
    with MilvusStore(uri, name) as store:
        return ({pk for page in store.ids("global") for pk in page},
                {pk for page in store.ids("local") for pk in page})


@pytest.fixture()
def folder(tmp_path: Path, val_images: list[Path]) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for p in val_images[:12]:
        shutil.copy(p, d / p.name)
    return d


@pytest.mark.slow
def test_orphans_are_searched_around_reingested_and_repaired(
        milvus_uri: str, folder: Path, val_images: list[Path]) -> None:
    base = ["--uri", milvus_uri, "-c", "orph"]
    assert ok(["ingest", str(folder), *base, "-q"])["ingested"] == 12
    g, loc = halves(milvus_uri, "orph")
    ids = sorted(g)
    with MilvusStore(milvus_uri, "orph") as store:  # what a crash or an old race leaves
        store.delete_rows("local", ids[:3])  # searchable, without local descriptors
        store.delete_rows("global", ids[3:5])  # local descriptors without an entry
        store.wait_visible(ids[3:5], present=False)
    assert ok(["repair", *base, "--dry-run"]) | {"examples": []} == {
        "global_only": 3, "local_only": 2, "examples": [], "dry_run": True, "collection": "orph"}

    found = ok(["search", str(val_images[0]), *base, "-k", "12"])["results"][0]
    assert len(found["hits"]) == 10  # the 12 less the 2 without an entry
    assert found["warnings"] and "3 of 10 candidates have no local descriptor" in \
        found["warnings"][0]
    last = found["hits"][-3:]  # ranked after the others, by their coarse distance
    assert {h["id"] for h in last} == set(ids[:3])
    assert [h["distance"] for h in last] == sorted(h["distance"] for h in last)

    # ingest's skip check needs both halves: the rerun stores the 5 whole again
    rep = ok(["ingest", str(folder), *base, "-q"])
    assert rep["unchanged"] == 7 and rep["ingested"] == 5, rep
    assert halves(milvus_uri, "orph") == (g, loc)

    with MilvusStore(milvus_uri, "orph") as store:
        store.delete_rows("local", ids[:2])
        store.delete_rows("global", ids[6:7])
        store.wait_visible(ids[6:7], present=False)
    fixed = ok(["repair", *base])
    assert (fixed["global_only"], fixed["local_only"]) == (2, 1)
    assert len(fixed["examples"]) == 2 and all(Path(p).parent == folder
                                               for p in fixed["examples"])
    g2, loc2 = halves(milvus_uri, "orph")
    assert g2 == loc2 == g - set(ids[:2]) - set(ids[6:7])
    again = ok(["repair", *base])
    assert again["global_only"] == again["local_only"] == 0
    found = ok(["search", str(val_images[0]), *base, "-k", "12"])["results"][0]
    assert found["warnings"] == [] and len(found["hits"]) == 9


def test_source_too_long_in_bytes_writes_nothing(milvus_uri: str, folder: Path) -> None:
    """33 'ü' are 33 characters but 66 bytes: over the field's 64 (a server refuses it
    after the local half would have been written; Lite would accept it)."""
    base = ["--uri", milvus_uri, "-c", "src"]
    assert ok(["ingest", str(folder / "0000_00.jpg"), *base, "-q"])["ingested"] == 1
    code, _, err = run(["ingest", str(folder), *base, "--source", "ü" * 33, "-q"])
    assert code == 2 and err.startswith("error: source name") and "66 bytes" in err, err
    g, loc = halves(milvus_uri, "src")
    assert len(g) == 1 and g == loc  # no orphan local row from the refused run
    assert ok(["ingest", str(folder), *base, "--source", "ü" * 32, "-q"])["ingested"] == 11
