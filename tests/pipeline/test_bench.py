"""The scale benchmark: distractors, the descriptor cache, resumable insertion, AP from
ranks and a tiny end-to-end run, on real CUHK03 images, the real default model and a
real Milvus Lite file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reidctl.cli.bench_cmd import register
from reidctl.data import distractors as dx
from reidctl.data.batches import to_batch
from reidctl.data.datasets import cuhk03
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor, load_model
from reidctl.pipeline.bench import INGEST_ROUNDS
from reidctl.pipeline.bench_cache import DistractorCache, gallery_features, grow
from reidctl.store import MilvusStore
from tests.cli_helpers import one_line_error, sub_app

runner = CliRunner()


@pytest.fixture(scope="module")
def train_files(cuhk03_root: Path) -> list[Path]:
    return dx.train_pool(cuhk03_root / "train")


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return load_model("osnet_x0_25")




def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def test_distractors_are_deterministic_and_nobody_in_the_queries(
    train_files: list[Path], cuhk03_root: Path,
) -> None:
    for i in (0, 1, 7, 123_456):
        a = _pixels(dx.make_distractor(i, train_files, seed=0))
        assert np.array_equal(a, _pixels(dx.make_distractor(i, train_files, seed=0)))
        other = _pixels(dx.make_distractor(i, train_files, seed=1))
        assert a.shape != other.shape or not np.array_equal(a, other)
    assert not np.array_equal(_pixels(dx.make_distractor(0, train_files, 0)),
                              _pixels(dx.make_distractor(1, train_files, 0)))
    kinds = [dx.plan(i, train_files, 0).kind for i in range(400)]
    assert 0.4 < kinds.count("splice") / len(kinds) < 0.6

    key = dx.recipe_key(train_files, 0)
    assert key == dx.recipe_key([Path("/elsewhere") / f.name for f in train_files], 0)
    assert key != dx.recipe_key(train_files, 1)
    metas = [dx.distractor_meta(key, i) for i in range(2000)]
    assert len({m.person_id for m in metas}) == 2000
    assert {(m.camera, m.source) for m in metas} == {("X", "distractor")}
    protocol = cuhk03(cuhk03_root, "val")
    assert not {m.person_id for m in metas} & {q.person_id for q in protocol.queries}
    ids = [dx.distractor_id(key, i) for i in range(2000)]
    assert len(set(ids)) == 2000 and all(len(pk) == 64 and int(pk, 16) >= 0 for pk in ids)
    assert ids[5] == dx.distractor_id(key, 5)
    assert dx.distractor_id(dx.recipe_key(train_files, 1), 5) != ids[5]


def test_a_splice_is_the_top_of_one_person_over_the_bottom_of_another(
    train_files: list[Path],
) -> None:
    splices = [p for p in (dx.plan(i, train_files, 0) for i in range(40)) if p.kind == "splice"]
    assert len(splices) >= 5
    for p in splices[:5]:
        assert dx.person_of(train_files[p.top]) != dx.person_of(train_files[p.bottom])
        assert 0.45 <= p.cut <= 0.55
        upper = Image.open(train_files[p.top]).convert("RGB")
        lower = Image.open(train_files[p.bottom]).convert("RGB").resize(
            upper.size, Image.Resampling.BILINEAR)
        raw = dx.render(p, train_files, augment=False)
        assert raw.size == upper.size
        assert dx.make_distractor(p.index, train_files, 0).size == upper.size
        blend, pure_lower = dx.seam_rows(upper.size[1], p.cut)
        assert 0 < blend < pure_lower < upper.size[1]
        px = _pixels(raw)
        assert np.array_equal(px[:blend], _pixels(upper)[:blend])
        assert np.array_equal(px[pure_lower:], _pixels(lower)[pure_lower:])
        # the seam is a blend: each row lies between the two sources
        lo = np.minimum(_pixels(upper), _pixels(lower)).astype(int)[blend:pure_lower]
        hi = np.maximum(_pixels(upper), _pixels(lower)).astype(int)[blend:pure_lower]
        seam = px[blend:pure_lower].astype(int)
        assert ((seam >= lo - 1) & (seam <= hi + 1)).all()


def test_the_cache_resumes_from_the_last_complete_chunk(
    tmp_path: Path, extractor: FeatureExtractor, train_files: list[Path],
) -> None:
    cache = DistractorCache(tmp_path / "c", extractor, train_files, seed=0, chunk_size=8,
                            batch_size=8)
    assert cache.ensure(20) == [0, 1, 2]  # 20 distractors: 3 chunks of 8
    files = [cache.chunk_path(k) for k in range(3)]
    stamps = [f.stat().st_mtime_ns for f in files]
    before = np.load(files[2])["f_g"]
    files[2].unlink()
    assert cache.ensure(20) == [2]
    assert [f.stat().st_mtime_ns for f in files[:2]] == stamps[:2]
    np.testing.assert_allclose(np.load(files[2])["f_g"], before, atol=1e-5)
    assert cache.ensure(24) == [] and not list(cache.folder.glob("*.tmp"))
    again = DistractorCache(tmp_path / "c", extractor, train_files, seed=0, chunk_size=8)
    assert again.ensure(24) == []
    with pytest.raises(InputError, match="seed"):
        DistractorCache(tmp_path / "c", extractor, train_files, seed=1, chunk_size=8)

    # float16 f_l: close to the float32 descriptors, and to their distances
    f_g, f_l16, err = cache.load(0)
    with np.load(files[0]) as z:
        assert z["ids"].tolist() == cache.ids(0, 8)
    px = [dx.to_pixels(dx.make_distractor(i, train_files, 0), extractor.input_size)
          for i in range(8)]
    d = extractor.extract(to_batch(px))
    np.testing.assert_allclose(f_g, d.global_, atol=1e-5)
    f_l = f_l16.astype(np.float32)
    assert err == pytest.approx(np.abs(f_l - d.local).max(), abs=1e-6) and err < 1e-3
    exact = np.linalg.norm(d.local[None] - d.local[:, None], axis=2)  # (8, 8)
    half = np.linalg.norm(f_l[None] - d.local[:, None], axis=2)
    off = ~np.eye(8, dtype=bool)
    assert np.abs(half - exact)[off].max() / exact[off].min() < 1e-3


def test_insertion_resumes_and_repairs(
    tmp_path: Path, extractor: FeatureExtractor, train_files: list[Path], small_root: Path,
) -> None:
    cache = DistractorCache(tmp_path / "c", extractor, train_files, seed=0, chunk_size=8,
                            batch_size=8)
    cache.ensure(20)
    protocol = cuhk03(small_root, "val")
    gallery = gallery_features(cache, protocol.gallery[:12])
    with MilvusStore(str(tmp_path / "g.db"), "b") as store:
        assert grow(store, extractor, cache, gallery, 20).inserted == 12 + 20
        assert grow(store, extractor, cache, gallery, 20).inserted == 0
        store.delete(cache.ids(15, 20))  # an interrupted run: the last rows are missing
        assert grow(store, extractor, cache, gallery, 20).inserted == 5
        store.delete(cache.ids(3, 4))  # a hole: not a prefix any more
        assert grow(store, extractor, cache, gallery, 20).inserted == 1
        store.delete(cache.ids(3, 4) + cache.ids(18, 19))  # a hole the count hides
        assert grow(store, extractor, cache, gallery, 20).inserted == 3  # 18, 19 again, 3
        assert store.count() == 32
        rows = [m for b in store.iterate(with_vectors=False) for m in b["meta"]]
        found = {m["person_id"] for m in rows if m["source"] == "distractor"}
        assert found == {f"d{i}" for i in range(20)}
        assert not found & {q.person_id for q in protocol.queries}


def _invoke(root: Path, train: Path, tmp: Path, *extra: str):  # noqa: ANN202
    app = sub_app(register)
    return runner.invoke(app, [
        "bench", "--n", "64", "--n", "0", "--queries", "12", "--chunk-size", "32",
        "--ingest-sample", "16", "--root", str(root), "--train", str(train),
        "--uri", str(tmp / "bench.db"), "--cache", str(tmp / "cache"), "--device", "cpu",
        "--json", "-q", *extra])


@pytest.mark.slow  # a whole bench run
def test_a_tiny_bench_run(small_root: Path, cuhk03_root: Path, tmp_path: Path) -> None:
    r = _invoke(small_root, cuhk03_root / "train", tmp_path, "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    n_gallery = len(cuhk03(small_root, "val").gallery)
    assert [run["n_distractors"] for run in rep["runs"]] == [0, 64]
    for run in rep["runs"]:
        assert run["backend"] == "milvus-lite" and run["num_queries"] == 12
        assert run["gallery_size"] == n_gallery + run["n_distractors"]
        assert set(run["methods"]) == {"coarse", "c2f", "linear"}
        for s in run["methods"].values():
            assert 0.0 <= s["rank1"] <= 100.0 and 0.0 < s["mAP"] <= 100.0
            assert 0.0 < s["ms_p50"] <= s["ms_p95"]
        assert set(run["stages_ms_p50"]) == {"extract", "coarse", "fetch", "rerank"}
        assert all(v > 0 for v in run["stages_ms_p50"].values())
        assert run["queries_per_s"] > 0 and run["peak_rss_mb"] > 50
        assert run["inprocess_c2f_ms_p50"] > 0
        # M (500) covers the gallery: C2F re-ranks everything, like the exact scan
        assert run["methods"]["c2f"]["mAP"] == pytest.approx(
            run["methods"]["linear"]["mAP"], abs=0.5)
        assert run["inprocess_c2f_mAP"] == pytest.approx(run["methods"]["linear"]["mAP"],
                                                         abs=0.5)
    lin = [run["methods"]["linear"]["mAP"] for run in rep["runs"]]
    assert lin[1] <= lin[0] + 1e-9  # distractors are never relevant
    ing = rep["ingest"]
    assert ing["images_per_s"] == pytest.approx(max(ing["images_per_s_rounds"]), abs=0.05)
    assert len(ing["forward_one_batch_images_per_s_rounds"]) == ing["rounds"] == INGEST_ROUNDS
    # the baseline is the faster way of running the bare model
    assert ing["forward_images_per_s"] == pytest.approx(max(
        ing["forward_one_batch_images_per_s_rounds"] + ing["forward_streams_images_per_s_rounds"]),
        abs=0.05)
    assert ing["images_per_s"] > 0
    assert rep["cache"]["chunks_computed"] == [0, 1] and rep["cache"]["f_l_dtype"] == "float16"
    assert [run["inserted"] for run in rep["runs"]] == [n_gallery, n_gallery + 64]
    assert Image.open(tmp_path / "p.png").size == (960, 360)

    again = json.loads(_invoke(small_root, cuhk03_root / "train", tmp_path).stdout)
    assert again["cache"]["chunks_computed"] == []  # a rerun recomputes nothing
    assert [run["inserted"] for run in again["runs"]] == [0, 0]
    assert [run["methods"]["linear"]["mAP"] for run in again["runs"]] == pytest.approx(lin)


def test_backend_and_uri_must_agree(small_root: Path, tmp_path: Path) -> None:
    r = _invoke(small_root, small_root, tmp_path, "--backend", "milvus-server")
    assert r.exit_code == 2
    assert "milvus-lite URI" in one_line_error(r)


@pytest.mark.slow  # a whole bench run
def test_prepare_fills_the_cache_only(small_root: Path, cuhk03_root: Path, tmp_path: Path) -> None:
    r = _invoke(small_root, cuhk03_root / "train", tmp_path, "--prepare")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n"] == 64 and rep["chunks"] == 2 and rep["chunks_computed"] == 2
    assert len(list(Path(rep["cache"]).glob("chunk_*.npz"))) == 2
    assert not (tmp_path / "bench.db").exists()  # no database involved
    again = json.loads(_invoke(small_root, cuhk03_root / "train", tmp_path, "--prepare").stdout)
    assert again["chunks_computed"] == 0
