"""Query expansion and k-reciprocal re-ranking through the search path, eval and the CLI, on
real CUHK03 images, the real model and Milvus Lite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.model import load_model
from reidctl.pipeline.common import extract_files
from reidctl.pipeline.evaluate import read_gallery
from reidctl.pipeline.ingest import ingest
from reidctl.pipeline.rankers import ExactC2F, MilvusC2F
from reidctl.pipeline.search import c2f, c2f_options, search
from reidctl.query_opts import QueryOptions
from reidctl.store import MilvusStore
from tests.cli_helpers import RUNNER_ENV, one_line_error

CPU = torch.device("cpu")
runner = CliRunner()


@pytest.fixture(scope="module")
def extractor():  # noqa: ANN201
    return load_model("osnet_x0_25")


@pytest.fixture(scope="module")
def split(val_images: list[Path]) -> tuple[list[Path], list[Path]]:
    """Gallery (shots 5-9) and queries (first shot of each) of the first 12 persons."""
    keep = [p for p in val_images if int(p.name[:4]) < 12]
    gallery = [p for p in keep if int(p.stem[-2:]) >= 5]
    queries = [p for p in keep if int(p.stem[-2:]) == 0]
    return gallery, queries


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, extractor, split):  # noqa: ANN001, ANN201
    s = MilvusStore(str(tmp_path_factory.mktemp("qopts") / "s.db"), "t")
    ingest(split[0], s, extractor)
    yield s
    s.close()


@pytest.fixture(scope="module")
def queries(extractor, split) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    return extract_files(extractor, split[1])


def test_fetch_global_returns_the_stored_vectors(store: MilvusStore) -> None:
    g = read_gallery(store, CPU)
    ids = [g.ids[3], "0" * 64, g.ids[0]]
    f_g, present = store.fetch_global_partial(ids)
    assert present.tolist() == [True, False, True]
    np.testing.assert_array_equal(f_g[[0, 2]], g.f_g[[3, 0]].numpy())
    assert not f_g[1].any()


def test_options_off_and_qe_zero_are_plain_c2f(store, extractor, queries) -> None:  # noqa: ANN001
    q_g, q_l = queries
    w = extractor.fine_weight
    for qi in range(3):
        plain, _ = c2f(store, q_g[qi], q_l[qi], 30, CPU, fine_weight=w, fresh=True)
        same, timings, best = c2f_options(store, q_g[qi], q_l[qi], 30, CPU,
                                          QueryOptions(qe=0), fine_weight=w, fresh=True)
        assert [(c.id, c.distance) for c in same] == [(c.id, c.distance) for c in plain]
        assert best == plain[0].distance and timings.coarse > 0


@pytest.mark.parametrize("options", [QueryOptions(qe=1), QueryOptions(qe=2),
                                     QueryOptions(kreciprocal=True),
                                     QueryOptions(qe=1, kreciprocal=True, k1=6, k2=1, lam=0.1)],
                         ids=lambda o: o.describe())
def test_milvus_path_equals_the_exact_counterpart(store, extractor, queries,  # noqa: ANN001
                                                  options: QueryOptions) -> None:
    """With M = the whole gallery the ANN stage returns every image, so the search path
    (descriptors fetched from Milvus) must rank as the in-process reference does."""
    g = read_gallery(store, CPU)
    n, (q_g, q_l), w = len(g.ids), queries, extractor.fine_weight
    index = {gid: i for i, gid in enumerate(g.ids)}
    milvus = MilvusC2F(store, q_g, q_l, n, index, CPU, fine_weight=w, options=options)
    exact = ExactC2F(q_g, q_l, g.f_g, g.f_l.numpy(), n, w, options=options)
    assert milvus.name == exact.name == options.name
    for qi in range(len(q_g)):
        rows = milvus.gallery_rows(milvus.rank(qi))
        np.testing.assert_array_equal(rows, exact.rank(qi))
    if options.kreciprocal:  # distances stay those to the query, not the ranking score
        full = np.sqrt(((g.f_g.numpy()[rows] - q_g[-1]) ** 2).sum(1)
                       + w * ((g.f_l.numpy()[rows] - q_l[-1]) ** 2).sum(1))
        np.testing.assert_allclose([c.distance for c in milvus.last], full, atol=1e-4)
    assert milvus.stages.p50("coarse", "fetch", "rerank")["fetch"] > 0


def test_search_with_options(store, extractor, split) -> None:  # noqa: ANN001
    options = QueryOptions(qe=1, kreciprocal=True)
    res = search(split[1][:4], store, extractor, top_k=5, m=40, device=CPU, options=options,
                 threshold=0.0)
    plain = search(split[1][:4], store, extractor, top_k=5, m=40, device=CPU, threshold=0.0)
    for r, p in zip(res, plain, strict=True):
        assert r.method == "c2f+qe+kr" and p.method == "c2f" and len(r.hits) == 5
        assert r.best_distance == pytest.approx(p.hits[0].distance)
        assert r.no_match and r.to_dict()["method"] == "c2f+qe+kr"
    top1 = np.mean([r.hits[0].person_id == Path(r.query).name[:4] for r in res])
    assert top1 >= 0.5  # 12 people: the options keep a working ranking


@pytest.mark.slow
def test_eval_reports_the_option_methods(tmp_path: Path, small_root: Path) -> None:
    r = runner.invoke(app, ["eval", "-d", "cuhk03", "--root", str(small_root), "--uri",
                            str(tmp_path / "e.db"), "--m", "40", "--qe", "1", "--kreciprocal",
                            "--json", "-q", "--device", "cpu"], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    methods = json.loads(r.stdout)["methods"]
    assert list(methods) == ["coarse", "c2f", "c2f+qe", "c2f+kr", "c2f+qe+kr", "linear"]
    for name, m in methods.items():
        assert 0 <= m["mAP"] <= 100 and 0 <= m["rank1"] <= m["rank10"] <= 100, name
        assert m["ms_p50"] > 0 and m["ms_p95"] >= m["ms_p50"], name
    assert methods["c2f+qe"]["mAP"] > 0 and methods["c2f+kr"]["mAP"] > 0
    r = runner.invoke(app, ["eval", "-d", "cuhk03", "--root", str(small_root), "--uri",
                            str(tmp_path / "e.db"), "--m", "40", "--kreciprocal", "-q",
                            "--device", "cpu"], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    assert "c2f+kr" in r.stdout and "c2f+qe" not in r.stdout


@pytest.mark.parametrize("bad", [["--qe", "-1"], ["--k1", "0"], ["--k2", "0"],
                                 ["--lambda", "1.5"], ["--lambda", "-0.1"]])
@pytest.mark.parametrize("command", ["eval", "search"])
def test_bad_option_values_are_one_line_errors(tmp_path: Path, val_images: list[Path],
                                               command: str, bad: list[str]) -> None:
    args = (["eval", "-d", "cuhk03", "--root", str(tmp_path)] if command == "eval"
            else ["search", str(val_images[0])])
    r = runner.invoke(app, [*args, "--uri", str(tmp_path / "x.db"), "--kreciprocal", *bad],
                      env=RUNNER_ENV)
    assert r.exit_code == 2
    assert one_line_error(r).startswith("error:") and bad[0] in r.stderr
    assert not (tmp_path / "x.db").exists()
