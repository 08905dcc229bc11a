"""delete and filtered search through the CLI, on real images, Lite and server."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app

runner = CliRunner()
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture()
def gallery_dir(tmp_path: Path, val_images: list[Path]) -> Path:
    """Camera-B shots of 6 persons, with capture times one hour apart per person."""
    d = tmp_path / "g"
    d.mkdir()
    for p in val_images:
        pid, shot = int(p.name[:4]), int(p.name[5:7])
        if pid < 6 and shot >= 5:
            q = d / p.name
            shutil.copy(p, q)
            os.utime(q, (T0 + 3600 * pid, T0 + 3600 * pid))
    return d


def _json(args: list[str]) -> dict:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output + r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow  # ingests, filters, deletes
def test_filters_and_delete(milvus_uri: str, gallery_dir: Path, val_images: list[Path]) -> None:
    base = ["--uri", milvus_uri, "-c", "cli"]
    rep = _json(["ingest", str(gallery_dir), *base, "--time-from", "mtime", "--json", "-q"])
    n = rep["ingested"]
    assert n > 20
    query = str(next(p for p in val_images if p.name == "0002_00.jpg"))

    window = ["--after", "2026-01-01T01:30", "--before", "2026-01-01T03:30"]  # persons 2 and 3
    hits = _json(["search", query, *base, "-k", "50", "--json", *window])["results"][0]["hits"]
    assert hits and {h["person_id"] for h in hits} == {"0002", "0003"}
    hits = _json(["search", query, *base, "-k", "50", "--json", "--camera", "A"])
    assert hits["results"][0]["hits"] == []  # the gallery is camera B only
    assert len(_json(["search", query, *base, "-k", "50", "--json", "--exclude-camera", "A"])[
        "results"][0]["hits"]) == n

    r = runner.invoke(app, ["delete", *base, "--person", "0002"])
    assert r.exit_code == 2 and "without --yes" in r.stderr  # no terminal to confirm on
    assert _json(["delete", *base, "--person", "0002", "--dry-run", "--json"])["deleted"] == 0
    r = _json(["delete", *base, "--person", "0002", "--yes", "--json"])
    assert r["matched"] == r["deleted"] > 0
    hits = _json(["search", query, *base, "-k", "50", "--json"])["results"][0]["hits"]
    assert "0002" not in {h["person_id"] for h in hits} and len(hits) == n - r["deleted"]
    prefix = str(gallery_dir / "0003_")
    assert _json(["delete", *base, "--path-prefix", prefix, "-y", "--json"])["deleted"] > 0
    assert _json(["info", *base, "--json"])["collections"][0]["global_count"] == (
        n - r["deleted"] - 5)

    r = runner.invoke(app, ["delete", *base, "-y"])
    assert r.exit_code == 2 and "say what to delete" in r.stderr
    r = runner.invoke(app, ["search", query, *base, "--after", "yesterday"])
    assert r.exit_code == 2 and "ISO 8601" in r.stderr
