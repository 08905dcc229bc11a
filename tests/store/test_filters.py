"""Filter expressions (pure) and selection on a real database."""

from __future__ import annotations

import numpy as np

from reidctl.store import MilvusStore
from reidctl.store.filters import quote, to_expr
from reidctl.store.milvus import search_width
from reidctl.types import ImageMeta, Selection
from tests.store.helpers import MODEL, Gallery

FP = MODEL["fingerprint"]


def test_expressions() -> None:
    assert to_expr(Selection()) == ""
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    e = to_expr(Selection(cameras=("1", "2"), exclude_cameras=("3",), sources=("s",),
                          after_ms=10, before_ms=20))
    assert e == ('(camera in ["1", "2"]) and (not (camera in ["3"])) and (source in ["s"]) '
                 'and (captured_at >= 10) and (captured_at < 20)')
    assert to_expr(Selection(before_ms=5)) == "(captured_at < 5) and (captured_at >= 0)"
    # the LIKE pre-filter stops before the first wildcard or escape character
    assert to_expr(Selection(path_prefix="/a/b_c")) == '(path like "/a/b%")'
    assert to_expr(Selection(path_prefix="/a\\b")) == '(path like "/a%")'
    assert to_expr(Selection(path_prefix="%x")) == ""  # no stem: checked exactly by select()


def test_select_by_camera_path_prefix_and_person(filled: MilvusStore, gallery: Gallery) -> None:
    by_cam = filled.select(Selection(cameras=("2",)))
    assert {r["id"] for r in by_cam} == {
        i for i, m in zip(gallery.ids, gallery.metas, strict=True) if m.camera == "2"}
    prefix = gallery.metas[7].path[:-6]  # "/data/a/00" -> 100 paths
    rows = filled.select(Selection(path_prefix=prefix))
    assert {r["path"] for r in rows} == {m.path for m in gallery.metas if m.path.startswith(prefix)}
    assert filled.select(Selection(person_ids=("0003",), cameras=("4",))) == [
        r for r in filled.select(Selection(person_ids=("0003",))) if r["camera"] == "4"]


def test_path_prefix_is_exact_despite_like_wildcards(store: MilvusStore, gallery: Gallery) -> None:
    metas = [ImageMeta(p, "1", "1", "s") for p in ("/x/a_b/1.jpg", "/x/aXb/2.jpg", "/x/a_b2.jpg")]
    store.upsert(gallery.ids[:3], gallery.f_g[:3], gallery.f_l[:3], metas, FP)
    assert [r["path"] for r in store.select(Selection(path_prefix="/x/a_b/"))] == ["/x/a_b/1.jpg"]


def test_delete_then_search_does_not_return_them(filled: MilvusStore, gallery: Gallery) -> None:
    gone = [r["id"] for r in filled.select(Selection(cameras=("1",)))]
    assert filled.delete(gone) == len(gone) == 50
    hits = filled.search(gallery.f_g[:20], 300)  # default (Bounded) consistency, right after
    assert not {h.id for q in hits for h in q} & set(gone)
    assert filled.count() == 250 and filled.select(Selection(cameras=("1",))) == []


def test_filtered_searches_walk_wider() -> None:
    assert search_width(20, 64, filtered=False) == 64
    assert search_width(500, 64, filtered=False) == 500
    assert search_width(100, 64, filtered=False, per_hit=4) == 400  # wider walk, more recall
    assert search_width(10, 64, filtered=False, per_hit=4) == 64
    assert search_width(16384, 64, filtered=False, per_hit=4) == 32768  # Milvus' ceiling
    assert search_width(20, 64, filtered=True, per_hit=4) == 3000  # filters: their own width
    assert search_width(20, 64, filtered=True) == 3000  # 43.8% -> 100% recall on CUHK03
    assert search_width(1000, 64, filtered=True) == 4000
    assert search_width(16384, 64, filtered=True) == 8192  # capped (the store raises to limit)


def test_selective_filter_keeps_recall(store: MilvusStore) -> None:
    """Clustered data (60 identities); the filter keeps 15 clusters, not the query's."""
    rng = np.random.default_rng(4)
    centers = rng.standard_normal((60, 128))
    labels = np.arange(3000) % 60
    f_g = centers[labels] + 0.35 * rng.standard_normal((3000, 128))
    f_g = (f_g / np.linalg.norm(f_g, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"{i:064x}" for i in range(3000)]
    metas = [ImageMeta(f"/c/{i}.jpg", f"{labels[i]:04d}", "1", "s") for i in range(3000)]
    f_l = rng.standard_normal((3000, 512)).astype(np.float32)
    store.upsert(ids, f_g, f_l, metas, FP)
    store.flush()  # sealed, HNSW-indexed segments (growing ones are scanned exactly)
    keep = tuple(f"{c:04d}" for c in range(10, 25))
    cand = np.flatnonzero(np.isin(labels, range(10, 25)))  # 750 rows, 25%
    where = Selection(person_ids=keep)

    def recall(ef: int | None) -> float:  # ef None: the store's width for filtered searches
        out = []
        for q in f_g[labels == 0][:20]:  # queries from another cluster
            hits = store.search(q[None], 20, where=where, fresh=True, ef=ef)[0]
            exact = {ids[i] for i in cand[np.argsort(((f_g[cand] - q) ** 2).sum(1))[:20]]}
            out.append(len({h.id for h in hits} & exact) / 20)
        return float(np.mean(out))

    assert recall(None) >= 0.95  # scripts/filter_recall.py measures it on real descriptors
