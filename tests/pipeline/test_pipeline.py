"""Ingest, search and eval end to end on real CUHK03 images and real Milvus Lite."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.data.batches import hwc_batch, to_batch
from reidctl.data.datasets import Protocol, cuhk03
from reidctl.data.images import content_id, decode, decode_hwc
from reidctl.errors import CollectionNotFound, FeatureSpaceMismatch, InputError
from reidctl.model import load_model
from reidctl.pipeline.common import extract_files
from reidctl.pipeline.evaluate import evaluate
from reidctl.pipeline.ingest import ingest
from reidctl.pipeline.search import c2f, coarse_search, search
from reidctl.store import MilvusStore

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def extractor():  # noqa: ANN201
    return load_model("osnet_x0_25")


@pytest.fixture(scope="module")
def subset(val_images: list[Path]) -> list[Path]:
    """All shots of the first 12 persons of CUHK03 val (about 110 images)."""
    keep = {f"{i:04d}" for i in range(12)}
    return [p for p in val_images if p.name[:4] in keep]


@pytest.fixture()
def store(milvus_uri: str):  # noqa: ANN201
    s = MilvusStore(milvus_uri, "t")
    yield s
    s.close()


def test_ingest_twice_leaves_no_duplicates(store, extractor, subset) -> None:
    r1 = ingest(subset, store, extractor, batch_size=32)
    assert (r1.ingested, r1.updated, r1.unchanged) == (len(subset), 0, 0)
    assert store.count() == len(subset)
    r2 = ingest(subset, store, extractor, batch_size=32)
    assert (r2.ingested, r2.updated, r2.unchanged) == (0, 0, len(subset))
    assert store.count() == len(subset)
    r3 = ingest(subset[:5], store, extractor, force=True)
    assert r3.updated == 5 and store.count() == len(subset)
    ids = [b for batch in store.iterate(with_vectors=False) for b in batch["id"]]
    assert len(ids) == len(set(ids)) == len(subset)


@pytest.mark.slow
def test_ingest_stores_what_the_model_computes(store, extractor, subset, tmp_path) -> None:
    """The ingest path (decoded ahead, batched channels-last, forward in parallel streams,
    writes gathered) stores exactly the descriptors of one plain batch-by-batch pass;
    a copy of an image in a later batch is dropped from a batch decoded before it."""
    copy = tmp_path / "zz_copy.jpg"
    shutil.copy(subset[0], copy)
    r = ingest([*subset, copy], store, extractor, batch_size=16)
    assert (r.ingested, r.skipped["duplicate content"]) == (len(subset), 1)
    got = {i: (g, loc) for b in store.iterate()
           for i, g, loc in zip(b["id"], b["f_g"], b["f_l"], strict=True)}
    f_g, f_l = extract_files(extractor, subset)
    for k, p in enumerate(subset):
        g, loc = got[content_id(p)]
        np.testing.assert_allclose(g, f_g[k], atol=1e-6)
        np.testing.assert_allclose(loc, f_l[k], atol=1e-6)


def test_hwc_batch_is_to_batch_channels_last(subset) -> None:
    data = [p.read_bytes() for p in subset[:8]]
    want = to_batch([decode(d, (256, 128)).pixels for d in data])
    got = hwc_batch([decode_hwc(d, (256, 128)) for d in data])
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_bad_files_are_skipped_and_counted(store, extractor, subset, tmp_path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in subset[:6]:
        shutil.copy(p, folder / p.name)
    data = subset[6].read_bytes()
    (folder / "9999_00.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (folder / "notes.jpg").write_text("not an image at all")
    shutil.copy(subset[0], folder / "copy_of_first.jpg")  # same bytes under another name
    files = sorted(folder.iterdir())
    r = ingest(files, store, extractor)
    assert r.ingested == 6
    assert r.skipped == {"corrupt or truncated": 1, "not an image": 1, "duplicate content": 1}
    assert store.count() == 6


def test_nothing_usable_is_an_error(store, extractor, tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.raises(InputError, match="none of the 1 file"):
        ingest([bad], store, extractor)


def test_c2f_equals_exact_rerank_of_the_same_candidates(store, extractor, subset) -> None:
    ingest(subset, store, extractor)
    rows = [b for b in store.iterate(with_vectors=True, fresh=True)]
    ids = [i for b in rows for i in b["id"]]
    f_l = np.concatenate([b["f_l"] for b in rows])
    q = extractor.extract(torch.rand(1, 3, *extractor.input_size, generator=torch.Generator()
                                     .manual_seed(0)))
    m = 40
    coarse = coarse_search(store, q.global_[0], m, fresh=True)
    w = extractor.fine_weight
    fine, timings = c2f(store, q.global_[0], q.local[0], m, CPU, fine_weight=w, fresh=True)
    assert {c.id for c in fine} == {c.id for c in coarse} and len(fine) == m
    by_id = dict(zip(ids, f_l, strict=True))
    cand = np.stack([by_id[c.id] for c in coarse])
    d_g = np.array([c.distance for c in coarse])
    brute = np.sqrt(d_g**2 + w * np.linalg.norm(cand - q.local[0], axis=1) ** 2)
    expected = [coarse[i].id for i in np.argsort(brute, kind="stable")]
    assert [c.id for c in fine] == expected
    np.testing.assert_allclose([c.distance for c in fine], np.sort(brute), atol=1e-4)
    assert timings.coarse > 0 and timings.fetch > 0


def test_search_finds_the_same_person_first(store, extractor, subset) -> None:
    gallery = [p for p in subset if int(p.stem[-2:]) >= 5]
    queries = [p for p in subset if int(p.stem[-2:]) < 5][:10]
    ingest(gallery, store, extractor)
    results = search(queries, store, extractor, top_k=5, m=50, device=CPU)
    assert len(results) == len(queries)
    assert all(len(r.hits) == 5 for r in results)
    assert all(r.hits[0].distance <= r.hits[-1].distance for r in results)
    top1 = np.mean([r.hits[0].person_id == Path(r.query).name[:4] for r in results])
    assert top1 >= 0.5  # 12 people: a working model gets most right
    assert results[0].hits[0].camera == "B"


def test_search_missing_collection_and_other_model(tmp_path, extractor, subset) -> None:
    s = MilvusStore(str(tmp_path / "m.db"), "absent")
    with pytest.raises(CollectionNotFound):
        search(subset[:1], s, extractor, device=CPU)
    ingest(subset[:4], s, extractor)
    other = load_model("googlenet")
    with pytest.raises(FeatureSpaceMismatch, match=extractor.fingerprint):
        ingest(subset[:4], s, other)


@pytest.mark.slow
def test_eval_reports_three_methods(store, extractor, cuhk03_root) -> None:
    full = cuhk03(cuhk03_root)
    keep = {f"{i:04d}" for i in range(15)}
    small = Protocol(full.dataset, full.description,
                     [q for q in full.queries if q.person_id in keep],
                     [g for g in full.gallery if g.person_id in keep])
    r = evaluate(small, store, extractor, m=30, device=CPU)
    assert r.gallery_size == len(small.gallery) and r.num_queries == len(small.queries)
    assert list(r.methods) == ["coarse", "c2f", "linear"]
    for m in r.methods.values():
        assert 0 < m.mAP <= 100 and 0 <= m.rank1 <= m.rank5 <= m.rank10 <= 100
        assert m.ms_p50 > 0 and m.ms_p95 >= m.ms_p50
        assert m.single_shot is not None and set(m.single_shot) == {"rank1", "rank5", "rank10"}
    assert r.ingest.ingested == len(small.gallery)
    assert set(r.c2f_stages_ms_p50) == {"coarse", "fetch", "rerank"}
    d = r.to_dict()  # the --json object
    assert d["methods"]["c2f"]["mAP"] == r.methods["c2f"].mAP and "open_set" not in d
    again = evaluate(small, store, extractor, m=30, device=CPU)
    assert again.ingest.unchanged == len(small.gallery)
    assert again.methods["c2f"].mAP == pytest.approx(r.methods["c2f"].mAP)
