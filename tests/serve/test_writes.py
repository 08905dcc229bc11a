"""Ingest of uploads and deletes through the web API, and searches from several clients
while an ingest runs; on a gallery of their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reidctl.api import Gallery
from reidctl.model import FeatureExtractor
from reidctl.serve.app import create_app
from tests.api.helpers import Split, bomb_png
from tests.serve.conftest import LOCAL, MAX_UPLOAD, upload


@pytest.fixture
def writable(tmp_path: Path, default_model: FeatureExtractor,
             split: Split) -> Iterator[tuple[TestClient, Gallery, Path]]:
    with Gallery(tmp_path / "w.db", "w", model=default_model, create=True) as g:
        g.ingest(split.gallery[:10])
        uploads = tmp_path / "uploads"
        with TestClient(create_app(g, None, MAX_UPLOAD, uploads=uploads), base_url=LOCAL) as c:
            yield c, g, uploads


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_uploads_are_saved_by_content_and_ingested(writable, split: Split) -> None:  # noqa: ANN001
    c, g, uploads = writable
    new = split.gallery[10:13]
    r = c.post("/api/ingest", files=[*_files(new), ("images", ("notes.txt", b"hi", "text/plain")),
                                     ("images", ("bomb.png", bomb_png(), "image/png"))],
               data={"camera": "gate-3", "time": "2026-11-26T08:00", "person": ""})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["report"]["ingested"] == 3
    assert doc["rejected"] == [{"name": "notes.txt", "reason": "not an image"},
                               {"name": "bomb.png", "reason": "too large"}]
    saved = sorted(uploads.iterdir())
    assert [p.name for p in saved] == sorted(f"{i['id']}.jpg" for i in doc["images"])
    assert {p.read_bytes() for p in saved} == {p.read_bytes() for p in new}
    info = c.get(f"/api/images/{doc['images'][0]['id']}/info").json()
    assert (info["camera"], info["source"], info["time"], info["person"]) == (
        "gate-3", "upload", "2026-11-26T08:00:00Z", "")
    hits = c.post("/api/search?k=1", files=upload(new[1])).json()["hits"]
    assert hits[0]["id"] == doc["images"][1]["id"]
    assert g.count() == 13
    again = c.post("/api/ingest", files=_files(new), data={"camera": "gate-3",
                                                           "time": "2026-11-26T08:00"})
    assert again.json()["report"]["unchanged"] == 3 and g.count() == 13


def test_ingest_refusals(writable) -> None:  # noqa: ANN001
    c, g, _ = writable
    r = c.post("/api/ingest", files=[("images", ("a.txt", b"no", "text/plain"))])
    assert r.status_code == 415 and "none of the 1 upload" in r.json()["error"]
    r = c.post("/api/ingest", files=[("images", ("big.jpg", bytes(MAX_UPLOAD + 1), "image/jpeg"))])
    assert r.status_code == 413 and "'big.jpg' is too large" in r.json()["error"]
    r = c.post("/api/ingest", files=_files([Path(__file__)]), data={"time": "noon"})
    assert r.status_code == 422 and "time must be an ISO 8601 time" in r.json()["error"]
    assert g.count() == 10


def test_deletes_keep_the_command_lines_safety_rules(writable, split: Split) -> None:  # noqa: ANN001
    c, g, _ = writable
    for query, words in (("", "say what to delete"), ("?camera=", "camera is empty"),
                         ("?source=%20", "source is empty"), ("?camera=B", "add all=true"),
                         ("?id=xyz", "not an image id")):
        r = c.delete(f"/api/images{query}")
        assert r.status_code == 422 and words in r.json()["error"], (query, r.text)
    assert g.count() == 10
    dry = c.delete("/api/images?camera=B&all=true&dry_run=true").json()
    assert (dry["matched"], dry["deleted"], dry["whole_pair"]) == (10, 0, True)
    hit = c.post("/api/search?k=1", files=upload(split.gallery[0])).json()["hits"][0]
    c.get(hit["thumb_url"])
    r = c.delete(f"/api/images/{hit['id']}")
    assert r.status_code == 200 and r.json()["deleted"] == 1
    assert r.json()["examples"] == [split.gallery[0].name]  # names, not server paths
    assert c.get(hit["thumb_url"]).status_code == 404
    assert c.delete(f"/api/images/{hit['id']}").status_code == 404
    r = c.delete("/api/images?person=0000")
    assert r.json()["deleted"] == 4 and g.count() == 5
    assert c.delete("/api/images?camera=B").status_code == 422  # all 5 left: needs all=true
    assert c.delete("/api/images?all=true").json()["deleted"] == 5 and g.count() == 0


def test_searches_from_several_clients_during_an_ingest(writable, split: Split) -> None:  # noqa: ANN001
    c, g, _ = writable
    queries = split.queries[:2]
    params = {"k": 5, "source": "cuhk03"}  # the first ten: what the ingest does not add
    want = [c.post("/api/search", params=params, files=upload(q)).json()["hits"]
            for q in queries]
    failures: list[str] = []

    def client_loop() -> None:
        for _ in range(3):
            for q, hits in zip(queries, want, strict=True):
                r = c.post("/api/search", params=params, files=upload(q))
                if r.status_code != 200 or r.json()["hits"] != hits:
                    failures.append(f"{r.status_code} {r.text[:200]}")

    def ingest() -> None:
        r = c.post("/api/ingest", files=_files(split.gallery[10:]))
        if r.status_code != 200:
            failures.append(f"ingest {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=ingest)] + [threading.Thread(target=client_loop)
                                                   for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not failures, failures
    assert g.count() == len(split.gallery)
