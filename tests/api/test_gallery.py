"""The Python API on a real gallery: CUHK03 val images, the default model, Milvus Lite."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidctl.api import Gallery, ImageNotFound, SearchHit, where
from reidctl.data.query_images import QueryImageError
from reidctl.errors import CollectionNotFound, InputError
from reidctl.model import FeatureExtractor
from reidctl.pipeline.search import search as pipeline_search
from tests.api.helpers import Split, bomb_png, person


def test_import_is_cheap() -> None:
    """``import reidctl.api`` (and the package) loads neither torch nor pymilvus."""
    code = ("import sys, reidctl, reidctl.api; "
            "print(sorted(m for m in ('torch', 'pymilvus') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_search_is_the_command_lines_search(gallery: Gallery, split: Split) -> None:
    """The same hits and distances as the pipeline ``reidctl search`` runs."""
    mine = gallery.search(split.queries, k=5)
    theirs = pipeline_search(split.queries, gallery.store, gallery.model, top_k=5,
                             device=gallery.device)
    assert [r.query for r in mine] == [str(q) for q in split.queries]
    for a, b in zip(mine, theirs, strict=True):
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        np.testing.assert_allclose([h.distance for h in a.hits],
                                   [h.distance for h in b.hits], rtol=1e-5)
        assert [h.path for h in a.hits] == [h.path for h in b.hits]


def test_camera_a_queries_find_their_person_first(gallery: Gallery, split: Split) -> None:
    results = gallery.search(split.queries, k=5)
    right = [r.hits[0].person == person(q) for q, r in zip(split.queries, results, strict=True)]
    assert sum(right) > len(right) / 2, right
    for r in results:
        assert [h.rank for h in r.hits] == [1, 2, 3, 4, 5]
        assert all(a.distance <= b.distance for a, b in zip(r.hits, r.hits[1:], strict=False))
        assert all(h.camera == "B" and h.source == "cuhk03" and h.time is None for h in r.hits)
        assert all(Path(h.path).is_file() for h in r.hits)
        assert r.no_match is None and r.method == "c2f"
        ms = r.ms
        assert min(ms.decode, ms.extract, ms.coarse, ms.fetch, ms.rerank) >= 0
        assert ms.extract > 0 and ms.total == pytest.approx(
            ms.decode + ms.extract + ms.coarse + ms.fetch + ms.rerank)


def test_paths_bytes_pil_and_arrays_are_the_same_query(gallery: Gallery, split: Split) -> None:
    q = split.queries[2]
    rgb = Image.open(q).convert("RGB")
    kinds = [q, str(q), q.read_bytes(), rgb, np.asarray(rgb), rgb.convert("RGBA")]
    results = gallery.search(kinds, k=5)
    assert [r.query for r in results[2:]] == [f"<image {i}>" for i in range(2, 6)]
    first = results[0]
    for r in results[1:]:
        assert [h.id for h in r.hits] == [h.id for h in first.hits]
        np.testing.assert_allclose([h.distance for h in r.hits],
                                   [h.distance for h in first.hits], atol=1e-5)


def test_a_gallery_image_finds_itself(gallery: Gallery, split: Split) -> None:
    r = gallery.search(split.gallery[7], k=3)[0]
    assert Path(r.hits[0].path) == split.gallery[7]
    assert r.hits[0].distance < 1e-3


def test_filters_run_in_the_search(gallery: Gallery, split: Split) -> None:
    q = split.queries[0]
    only = gallery.search(q, k=10, filters=where(person="0002"))[0]
    assert only.hits and {h.person for h in only.hits} == {"0002"}
    assert gallery.search(q, filters=where(camera="A"))[0].hits == []  # all are camera B
    # no image has a capture time: a time filter passes none
    assert gallery.search(q, filters=where(after=dt.datetime(2000, 1, 1)))[0].hits == []
    assert where() is None
    with pytest.raises(InputError, match="empty"):
        where(source="  ")
    with pytest.raises(InputError, match="ISO 8601"):
        where(before="yesterday")


def test_query_options_and_threshold(gallery: Gallery, split: Split) -> None:
    q = split.queries[3]
    plain = gallery.search(q, k=5)[0]
    expanded = gallery.search(q, k=5, qe=1, kreciprocal=True)[0]
    assert expanded.method == "c2f+qe+kr" and len(expanded.hits) == 5
    assert expanded.best_distance == pytest.approx(plain.best_distance)
    near = gallery.search(q, k=5, threshold=plain.hits[0].distance / 2)[0]
    assert near.no_match is True and near.hits  # the closest images are still listed
    far = gallery.search(q, k=5, threshold=plain.hits[0].distance * 2)[0]
    assert far.no_match is False
    with pytest.raises(InputError, match="k must be"):
        gallery.search(q, k=0)


def test_search_id_uses_the_stored_descriptors(gallery: Gallery, split: Split) -> None:
    target = gallery.search(split.gallery[3], k=1)[0].hits[0]
    r = gallery.search_id(target.id.upper(), k=4)
    assert r.query == f"id:{target.id}"
    assert r.hits[0].id == target.id and r.hits[0].distance < 1e-3
    assert r.ms.decode == r.ms.extract == 0.0
    rest = gallery.search_id(target.id, k=3, exclude_self=True)
    assert [h.rank for h in rest.hits] == [1, 2, 3]
    assert [h.id for h in rest.hits] == [h.id for h in r.hits[1:4]]


def test_get_and_ids(gallery: Gallery, split: Split) -> None:
    hit: SearchHit = gallery.search(split.gallery[0], k=1)[0].hits[0]
    rec = gallery.get(hit.id)
    assert (rec.path, rec.person, rec.camera) == (str(split.gallery[0]), "0000", "B")
    assert rec.model == gallery.model.fingerprint and rec.time is None
    with pytest.raises(ImageNotFound, match="not in collection pair"):
        gallery.get("0" * 64)
    for bad in ("../../etc/passwd", "", "g" * 64, "0" * 63):
        with pytest.raises(InputError, match="not an image id"):
            gallery.get(bad)
        with pytest.raises(InputError, match="not an image id"):
            gallery.search_id(bad)


def test_info(gallery: Gallery, split: Split) -> None:
    i = gallery.info()
    assert (i.collection, i.backend) == ("cuhk", "milvus-lite")
    assert i.images == i.local_images == len(split.gallery) == gallery.count()
    assert i.model["fingerprint"] == gallery.model.fingerprint and i.threshold is None
    assert i.index["type"] == "HNSW"


def test_unusable_queries_are_one_line_errors(gallery: Gallery, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="query image does not exist"):
        gallery.search(tmp_path / "nope.jpg")
    with pytest.raises(QueryImageError, match="not an image") as e:
        gallery.search(b"hello, not a picture")
    assert e.value.reason == "not an image"
    with pytest.raises(QueryImageError, match="too large") as e:
        gallery.search(bomb_png())
    assert e.value.reason == "too large"
    with pytest.raises(InputError, match=r"\(H, W, 3\) uint8"):
        gallery.search(np.zeros((64, 32), np.uint8))
    with pytest.raises(InputError, match="too small"):
        gallery.search(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="expected a path"):
        gallery.search([3.5])
    with pytest.raises(InputError, match="no query"):
        gallery.search([])


def test_missing_database_or_pair(tmp_path: Path, default_model: FeatureExtractor,
                                  gallery: Gallery) -> None:
    with pytest.raises(CollectionNotFound, match="no Milvus Lite database"):
        Gallery(tmp_path / "none.db", model=default_model)
    assert not (tmp_path / "none.db").exists()  # nothing created without create=True
    db = gallery.store.uri
    with pytest.raises(CollectionNotFound, match="'other' not found"):
        Gallery(db, "other", model=default_model)


def test_from_env(monkeypatch: pytest.MonkeyPatch, gallery: Gallery,
                  default_model: FeatureExtractor) -> None:
    monkeypatch.setenv("REIDCTL_URI", gallery.store.uri)
    monkeypatch.setenv("REIDCTL_COLLECTION", "cuhk")
    monkeypatch.setenv("REIDCTL_TIMEOUT", "12")
    with Gallery.from_env(model=default_model) as g:
        assert g.count() == gallery.count()
        assert g.store.timeout == 12.0
    monkeypatch.setenv("REIDCTL_TIMEOUT", "soon")
    with pytest.raises(InputError, match="REIDCTL_TIMEOUT"):
        Gallery.from_env(model=default_model)


def test_search_id_without_itself_decides_on_the_others(gallery: Gallery,
                                                        split: Split) -> None:
    target = gallery.search(split.gallery[5], k=1)[0].hits[0]
    both = gallery.search_id(target.id, k=3)
    rest = gallery.search_id(target.id, k=2, exclude_self=True,
                             threshold=both.hits[1].distance / 2)
    assert both.no_match is None and rest.no_match is True
    assert rest.best_distance == pytest.approx(both.hits[1].distance)
