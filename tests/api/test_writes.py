"""Ingest, delete and concurrent use through the Python API, on galleries of their own."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from reidctl.api import Gallery, ImageNotFound
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor
from tests.api.helpers import Split


@pytest.fixture
def fresh(tmp_path: Path, default_model: FeatureExtractor) -> Gallery:
    with Gallery(tmp_path / "w.db", "w", model=default_model, create=True) as g:
        yield g


def test_ingest_then_delete_with_the_safety_rules(fresh: Gallery, split: Split,
                                                  tmp_path: Path) -> None:
    files = split.gallery[:10]
    r = fresh.ingest(files, source="gate-3", time_from_mtime=True)
    assert (r.ingested, r.unchanged, r.created) == (10, 0, False)
    again = fresh.ingest(files, source="gate-3", time_from_mtime=True)
    assert (again.ingested, again.unchanged) == (0, 10)
    hit = fresh.search(files[0], k=1)[0].hits[0]
    assert hit.source == "gate-3" and hit.time is not None
    with pytest.raises(InputError, match="empty"):
        fresh.delete(source="")  # a blank selector never means everything
    with pytest.raises(InputError, match="say what to delete"):
        fresh.delete()
    with pytest.raises(InputError, match="add --all"):
        fresh.delete(source="gate-3")  # every image: needs everything=True
    assert fresh.count() == 10
    preview = fresh.delete(source="gate-3", dry_run=True)
    assert (preview.matched, preview.deleted, preview.whole) == (10, 0, True)
    one = fresh.delete(hit.id)
    assert (one.matched, one.deleted) == (1, 1)
    with pytest.raises(ImageNotFound):
        fresh.get(hit.id)
    assert fresh.delete(camera="B", person="0000").deleted == 4
    assert fresh.delete(everything=True).deleted == 5 and fresh.count() == 0
    with pytest.raises(InputError, match="path does not exist"):
        fresh.ingest([tmp_path / "missing"])


def test_search_id_computes_again_without_stored_descriptors(
        fresh: Gallery, split: Split, tmp_path: Path) -> None:
    files = []
    for p in split.gallery[:8]:
        shutil.copy(p, tmp_path / p.name)
        files.append(tmp_path / p.name)
    fresh.ingest(files)
    target = fresh.search(files[2], k=1)[0].hits[0]
    fresh.store.delete_rows("local", [target.id])  # a cut-short write: no local descriptor
    r = fresh.search_id(target.id, k=8)
    assert r.ms.extract > 0  # computed from the file
    assert any("no local descriptor" in w for w in r.warnings)
    assert target.id in [h.id for h in r.hits]
    files[2].write_bytes(files[3].read_bytes())  # the stored path now holds another image
    with pytest.raises(InputError, match="has changed since it was ingested"):
        fresh.search_id(target.id)
    files[2].unlink()
    with pytest.raises(InputError, match="cannot be read"):
        fresh.search_id(target.id)


def test_searches_from_threads_while_an_ingest_runs(fresh: Gallery, split: Split) -> None:
    """Concurrent searches give the answers of sequential ones, and an ingest running
    meanwhile neither fails them nor fails."""
    fresh.ingest(split.gallery[:12])
    queries = split.queries
    want = [[h.id for h in r.hits] for r in fresh.search(queries, k=5,
                                                         filters=_first_twelve())]
    errors: list[BaseException] = []
    got: dict[int, list[list[str]]] = {}

    def searcher(n: int) -> None:
        try:
            got[n] = [[h.id for h in fresh.search(q, k=5, filters=_first_twelve())[0].hits]
                      for q in queries]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def ingester() -> None:
        try:
            fresh.ingest(split.gallery[12:], source="later")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=ingester)] + [
        threading.Thread(target=searcher, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert all(got[n] == want for n in range(3))
    assert fresh.count() == len(split.gallery)


def _first_twelve():  # noqa: ANN202 - a Selection
    """The images of the first ingest: those the later one does not add (source "")."""
    from reidctl.api import where

    return where(source="cuhk03")
