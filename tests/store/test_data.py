"""Writes and reads against real Milvus Lite, checked against numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from reidctl.errors import FeatureSpaceMismatch, StoreError
from reidctl.store import MilvusStore
from reidctl.types import ImageMeta, Selection
from tests.store.helpers import MODEL, Gallery, make_gallery, unit_rows

FP = MODEL["fingerprint"]


def brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact euclidean top-k: (Q, k) indices and distances, nearest first."""
    d = np.sqrt(((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(-1))  # (Q, N)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def test_upsert_twice_replaces(filled: MilvusStore, gallery: Gallery) -> None:
    assert filled.count() == 300
    new = make_gallery(seed=1, tag="b")  # same ids, new vectors and paths
    filled.upsert(gallery.ids, new.f_g, new.f_l, new.metas, FP)
    assert filled.count() == 300 and filled.info().local_count == 300
    np.testing.assert_array_equal(filled.fetch_local(gallery.ids, fresh=True), new.f_l)
    hits = filled.search(new.f_g[:10], 1, fresh=True)
    assert [h[0].id for h in hits] == gallery.ids[:10]
    assert filled.existing(gallery.ids[:1])[gallery.ids[0]]["path"] == "/data/b/0000.jpg"


def test_upsert_keeps_the_last_of_repeated_ids(store: MilvusStore, gallery: Gallery) -> None:
    ids = [gallery.ids[0], gallery.ids[1], gallery.ids[0]]
    store.upsert(ids, gallery.f_g[:3], gallery.f_l[:3], gallery.metas[:3], FP)
    assert store.count() == 2
    np.testing.assert_array_equal(store.fetch_local([gallery.ids[0]]), gallery.f_l[2:3])


def test_upsert_refuses_another_feature_space(store: MilvusStore, gallery: Gallery) -> None:
    g, loc, m, ids = gallery.f_g[:2], gallery.f_l[:2], gallery.metas[:2], gallery.ids[:2]
    with pytest.raises(FeatureSpaceMismatch, match="other-fp"):
        store.upsert(ids, g, loc, m, "other-fp")
    with pytest.raises(FeatureSpaceMismatch, match="64-D"):
        store.upsert(ids, g[:, :64], loc, m, FP)
    with pytest.raises(FeatureSpaceMismatch, match="256-D"):
        store.upsert(ids, g, loc[:, :256], m, FP)
    with pytest.raises(ValueError):
        store.upsert(ids, g, loc, m[:1], FP)
    too_long = [m[0], ImageMeta(path="/" + "x" * 3000)]
    with pytest.raises(StoreError, match="path"):
        store.upsert(ids, g, loc, too_long, FP)
    assert store.count() == 0  # validated before the first write


def test_existing(filled: MilvusStore, gallery: Gallery) -> None:
    found = filled.existing([gallery.ids[3], "f" * 64, gallery.ids[7]])
    assert set(found) == {gallery.ids[3], gallery.ids[7]}
    m = gallery.metas[3]
    assert found[gallery.ids[3]] == {
        "path": m.path,
        "model": FP,
        "person_id": m.person_id,
        "camera": m.camera,
        "source": m.source,
        "captured_at": m.captured_at,
    }
    assert filled.existing([]) == {}


def test_search_matches_brute_force(filled: MilvusStore, gallery: Gallery) -> None:
    queries = unit_rows(np.random.default_rng(7), 20, gallery.f_g.shape[1])  # (20, 128)
    k = 50
    idx, dist = brute_force(gallery.f_g, queries, k)
    results = filled.search(queries, k, fresh=True)
    assert len(results) == 20
    for q, hits in enumerate(results):
        assert len(hits) == k and [h.rank for h in hits] == list(range(1, k + 1))
        assert hits[0].id == gallery.ids[idx[q, 0]]
        got = np.array([h.distance for h in hits])
        assert np.all(np.diff(got) >= 0)
        np.testing.assert_allclose(got, dist[q], atol=1e-4)  # euclidean, not squared
        for h in hits:  # each reported distance is the true one for that id
            i = gallery.ids.index(h.id)
            assert abs(h.distance - np.linalg.norm(queries[q] - gallery.f_g[i])) < 1e-4


def test_search_metadata_and_filter(filled: MilvusStore, gallery: Gallery) -> None:
    hits = filled.search(gallery.f_g[5:6], 3, fresh=True)[0]
    top = hits[0]
    m = gallery.metas[5]
    assert top.id == gallery.ids[5] and top.distance == pytest.approx(0.0, abs=1e-3)
    assert (top.person_id, top.camera, top.source, top.path) == (
        m.person_id, m.camera, m.source, m.path)
    bare = filled.search(gallery.f_g[5:6], 3, fresh=True, with_meta=False)[0]
    assert [(h.id, h.distance) for h in bare] == [(h.id, h.distance) for h in hits]
    assert all(h.person_id == h.camera == h.source == h.path == "" for h in bare)
    only_cam2 = filled.search(gallery.f_g[:3], 20, where=Selection(cameras=("2",)), fresh=True)
    assert all(h.camera == "2" for hits in only_cam2 for h in hits)
    assert len(only_cam2[0]) == 20


def test_search_limits_and_errors(filled: MilvusStore, gallery: Gallery) -> None:
    rows = filled.search(gallery.f_g[:1], 16384, fresh=True)[0]
    assert len(rows) == 300  # fewer rows than the limit
    with pytest.raises(StoreError, match="16384"):
        filled.search(gallery.f_g[:1], 16385)
    with pytest.raises(FeatureSpaceMismatch):
        filled.search(gallery.f_g[:1, :64], 5)
    with pytest.raises(ValueError, match="limit must be positive"):
        filled.search(gallery.f_g[:1], 0)


def test_fetch_local_keeps_order(filled: MilvusStore, gallery: Gallery) -> None:
    perm = np.random.default_rng(3).permutation(300)
    order = [*perm.tolist(), int(perm[0])]  # shuffled, one repeat
    got = filled.fetch_local([gallery.ids[i] for i in order])
    assert got.dtype == np.float32 and got.shape == (301, 512)
    np.testing.assert_array_equal(got, gallery.f_l[order])
    assert filled.fetch_local([]).shape == (0, 512)


def test_fetch_local_missing_ids(filled: MilvusStore, gallery: Gallery) -> None:
    with pytest.raises(StoreError, match="2 of 3 ids"):
        filled.fetch_local([gallery.ids[0], "0" * 64, "1" * 64])


def test_iterate_yields_every_row_once(filled: MilvusStore, gallery: Gallery) -> None:
    seen: list[str] = []
    for batch in filled.iterate(batch_size=64):
        b = len(batch["id"])
        assert 0 < b <= 64
        assert batch["f_g"].shape == (b, 128) and batch["f_l"].shape == (b, 512)
        rows = [gallery.ids.index(pk) for pk in batch["id"]]
        np.testing.assert_allclose(batch["f_g"], gallery.f_g[rows], rtol=0, atol=1e-7)
        np.testing.assert_array_equal(batch["f_l"], gallery.f_l[rows])
        assert [m["path"] for m in batch["meta"]] == [gallery.metas[i].path for i in rows]
        assert batch["meta"][0]["model"] == FP and batch["meta"][0]["ingested_at"] > 0
        seen += batch["id"]
    assert sorted(seen) == sorted(gallery.ids)
    light = list(filled.iterate(with_vectors=False, batch_size=1000))
    assert [sorted(b) for b in light] == [["id", "meta"]] and len(light[0]["id"]) == 300


def test_delete_removes_from_both(filled: MilvusStore, gallery: Gallery) -> None:
    gone = gallery.ids[:5]
    assert filled.delete([*gone, "e" * 64, gone[0]]) == 5
    assert filled.count() == 295 and filled.info().local_count == 295
    hits = filled.search(gallery.f_g[:5], 10, fresh=True)
    assert not {h.id for q in hits for h in q} & set(gone)
    assert filled.existing(gone) == {}
    with pytest.raises(StoreError, match="5 of 5"):
        filled.fetch_local(gone, fresh=True)
    assert filled.delete([]) == 0
