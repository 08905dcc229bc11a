"""Rankers against naive references on seeded data, and the protocol runner's report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from reidctl.metrics import score_ranking, single_shot_cmc, summarize
from reidctl.pipeline.protocol import GroundTruth, run_protocol
from reidctl.pipeline.rankers import (
    ExactC2F,
    ExactCoarse,
    ExactLinear,
    InMemoryC2F,
    StreamedLinearScan,
)
from reidctl.timing import Timer

CPU = torch.device("cpu")
W = 0.5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict:
    """12 queries and a 60-image gallery of 6 people on 2 cameras, plus 200 distractors;
    descriptors are noisy copies of a per-person centre, so rankings are not trivial."""
    rng = np.random.default_rng(0)
    centres_g, centres_l = rng.normal(size=(6, 16)), rng.normal(size=(6, 32))
    g_pid = np.repeat(np.arange(6), 10)
    q_pid = np.repeat(np.arange(6), 2)
    return {
        "q_g": _unit(centres_g[q_pid] + rng.normal(size=(12, 16))),
        "q_l": _unit(centres_l[q_pid] + rng.normal(size=(12, 32))),
        "g_g": _unit(centres_g[g_pid] + rng.normal(size=(60, 16))),
        "g_l": _unit(centres_l[g_pid] + rng.normal(size=(60, 32))),
        "x_g": _unit(rng.normal(size=(200, 16))), "x_l": _unit(rng.normal(size=(200, 32))),
        "truth": GroundTruth.from_labels(
            [f"{p:04d}" for p in q_pid], ["A" if i % 2 else "B" for i in range(12)],
            np.array([f"{p:04d}" for p in g_pid]),
            np.array(["A" if i % 3 else "B" for i in range(60)]), frozenset({"0005"})),
    }


def _full(q_g: np.ndarray, q_l: np.ndarray, g_g: np.ndarray, g_l: np.ndarray) -> np.ndarray:
    """Naive full-descriptor distances in float64: (G,)."""
    return np.sqrt(((g_g - q_g) ** 2).sum(1) + W * ((g_l - q_l) ** 2).sum(1))


def test_exact_rankers_match_naive_sorts(data: dict) -> None:
    g_t = torch.from_numpy(data["g_g"])
    linear = ExactLinear(data["q_g"], data["q_l"], g_t, torch.from_numpy(data["g_l"]), W)
    coarse = ExactCoarse(data["q_g"], g_t)
    for qi in range(12):
        d = _full(data["q_g"][qi], data["q_l"][qi], data["g_g"], data["g_l"])
        np.testing.assert_array_equal(linear.rank(qi), np.argsort(d, kind="stable"))
        dg = ((data["g_g"] - data["q_g"][qi]) ** 2).sum(1)
        np.testing.assert_array_equal(coarse.rank(qi), np.argsort(dg, kind="stable"))


@pytest.mark.parametrize("m", [5, 20, 60])
def test_c2f_rankers_rerank_the_exact_coarse_top_m(data: dict, m: int) -> None:
    exact = ExactC2F(data["q_g"], data["q_l"], torch.from_numpy(data["g_g"]), data["g_l"], m, W)
    tail = ExactC2F(data["q_g"], data["q_l"], torch.from_numpy(data["g_g"]), data["g_l"], m, W,
                    tail="coarse")
    g_g, g_l = data["g_g"], data["g_l"]
    numpy_c2f = InMemoryC2F(data["q_g"], data["q_l"], g_g, g_l.astype(np.float16),
                            (g_g * g_g).sum(1), 60, m, W)
    for qi in range(12):
        dg = ((g_g - data["q_g"][qi]) ** 2).sum(1)
        top = np.argsort(dg, kind="stable")
        cand = top[:m]
        d = _full(data["q_g"][qi], data["q_l"][qi], g_g[cand], g_l[cand])
        want = cand[np.argsort(d, kind="stable")]  # (m,)
        np.testing.assert_array_equal(exact.rank(qi), want)
        np.testing.assert_array_equal(tail.rank(qi), np.concatenate([want, top[m:]]))
        got = numpy_c2f.rank(qi)  # float16 f_l: the same set, order up to near-ties
        assert sorted(got.tolist()) == sorted(want.tolist())
        assert score_ranking(got, *_masks(data, qi)).ap == pytest.approx(
            score_ranking(want, *_masks(data, qi)).ap, abs=0.05, nan_ok=True)


def _masks(data: dict, qi: int) -> tuple[np.ndarray, np.ndarray]:
    return data["truth"].good[qi], data["truth"].junk[qi]


def test_streamed_scan_gives_the_positions_of_the_full_ranking(data: dict) -> None:
    truth: GroundTruth = data["truth"]
    g = np.concatenate([data["g_g"], data["x_g"]])  # labelled rows first, then distractors
    loc = np.concatenate([data["g_l"], data["x_l"]])
    blocks = [(data["g_g"], data["g_l"])] + [(data["x_g"][s:s + 64], data["x_l"][s:s + 64])
                                             for s in range(0, 200, 64)]
    scan = StreamedLinearScan(data["q_g"], data["q_l"], blocks, fine_weight=W, top=10,
                              device=CPU)
    got = run_protocol(truth, [], [scan])["linear"]
    full = ExactLinear(data["q_g"], data["q_l"], torch.from_numpy(g), torch.from_numpy(loc), W)
    want = run_protocol(truth, [full])["linear"]  # rows >= 60 are distractors
    assert got.mAP == pytest.approx(want.mAP, abs=1e-9)
    assert got.mAP_trapz == pytest.approx(want.mAP_trapz, abs=1e-9)
    assert (got.rank1, got.rank5, got.rank10) == (want.rank1, want.rank5, want.rank10)
    assert got.num_valid_queries == want.num_valid_queries == 10  # person 5 is junk


def test_the_runner_scores_times_and_single_shots_each_ranker(data: dict) -> None:
    truth: GroundTruth = data["truth"]
    g_t = torch.from_numpy(data["g_g"])
    rankers = [ExactCoarse(data["q_g"], g_t),
               ExactC2F(data["q_g"], data["q_l"], g_t, data["g_l"], 8, W)]
    seen: list[int] = []
    timer = Timer()
    reports = run_protocol(truth, rankers, timer=timer, single_shot=True, on_query=seen.append)
    assert list(reports) == ["coarse", "c2f"] and seen == list(range(12))
    for r in rankers:
        rankings = [r.rank(qi) for qi in range(12)]
        s = summarize([score_ranking(rk, *_masks(data, qi)) for qi, rk in enumerate(rankings)])
        rep = reports[r.name]
        assert (rep.mAP, rep.mAP_trapz, rep.rank1, rep.rank5, rep.rank10) == (
            s["mAP"], s["mAP_trapz"], s["rank1"], s["rank5"], s["rank10"])
        ranks = np.full((12, 60), 60.0)
        for qi, rk in enumerate(rankings):
            ranks[qi, rk] = np.arange(len(rk))
        assert rep.single_shot == single_shot_cmc(ranks, truth.query_pids, truth.gallery_pids)
        assert len(timer.ms(r.name)) == 12 and 0 < rep.ms_p50 <= rep.ms_p95
        d = rep.to_dict()
        assert list(d) == ["mAP", "mAP_trapz", "rank1", "rank5", "rank10", "num_valid_queries",
                           "ms_p50", "ms_p95", "single_shot"]
    assert reports["c2f"].rank1 > 50  # the noisy copies are still mostly found first


def test_runner_times_the_search_not_the_mapping_to_rows() -> None:
    """rank() runs inside the ranker's timed stage; gallery_rows() after it has closed."""

    class Watched(Timer):
        timing = False

        @contextmanager
        def stage(self, name: str) -> Iterator[None]:
            self.timing = True
            try:
                with super().stage(name):
                    yield
            finally:
                self.timing = False

    timer = Watched()
    seen: list[tuple[str, bool]] = []

    class ById:
        name = "by id"
        ids = ["c", "a", "b"]  # the gallery rows' ids, in row order

        def rank(self, qi: int) -> list[str]:
            seen.append(("rank", timer.timing))
            return ["b", "x", "a"]  # "x": not in the labelled gallery

        def gallery_rows(self, ranked: list[str]) -> np.ndarray:
            seen.append(("rows", timer.timing))
            return np.array([self.ids.index(i) if i in self.ids else len(self.ids)
                             for i in ranked])

    truth = GroundTruth.from_labels(["p1", "p2"], ["A", "A"], np.array(["p2", "p1", "p1"]),
                                    np.array(["B", "B", "B"]))
    rep = run_protocol(truth, [ById()], timer=timer)["by id"]
    assert seen == [("rank", True), ("rows", False)] * 2
    assert len(timer.ms("by id")) == 2
    # rows [2, 3, 1]: p1 finds its two images at ranks 1 and 3; p2's image is not ranked
    assert rep.rank1 == 50.0 and rep.mAP == pytest.approx(100 * (1 + 2 / 3) / 2 / 2)
