"""Metrics against hand-computed cases and a literal port of the Market-1501 AP loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reidctl.metrics import (
    rank_matrix,
    relevance,
    score_positions,
    score_ranking,
    single_shot_cmc,
    summarize,
)


def _mask(n: int, idx: list[int]) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[idx] = True
    return m


def test_two_hits_by_hand() -> None:
    s = score_ranking(np.arange(5), _mask(5, [0, 2]), _mask(5, []))
    assert s.ap == pytest.approx((1 / 1 + 2 / 3) / 2)
    # trapezoid: hit 1 -> (1 + 1)/2, hit 2 -> (1/2 + 2/3)/2, each weighted 1/2
    assert s.ap_trapz == pytest.approx((1.0 + (0.5 + 2 / 3) / 2) / 2)
    assert s.first_hit == 0 and s.n_good == 2


def test_junk_is_removed_before_scoring() -> None:
    s = score_ranking(np.array([3, 0, 1, 2]), _mask(4, [2]), _mask(4, [3]))
    assert s.ap == pytest.approx(1 / 3)
    assert s.ap_trapz == pytest.approx((0 + 1 / 3) / 2)
    assert s.first_hit == 2
    r = summarize([s])
    assert r["rank1"] == 0.0 and r["rank5"] == 100.0


def test_relevant_images_cut_off_count_as_misses() -> None:
    s = score_ranking(np.array([0, 1]), _mask(6, [1, 4]), _mask(6, []))
    assert s.ap == pytest.approx(0.5 / 2)
    assert s.n_good == 2


def test_no_hit_and_no_relevant() -> None:
    assert score_ranking(np.array([0, 1]), _mask(3, [2]), _mask(3, [])).ap == 0.0
    s = score_ranking(np.array([0, 1]), _mask(2, []), _mask(2, []))
    assert math.isnan(s.ap) and s.n_good == 0
    assert summarize([s, score_ranking(np.array([0]), _mask(1, [0]), _mask(1, []))])[
        "num_valid_queries"] == 1


def test_relevance_marks_same_camera_and_junk_ids() -> None:
    pids = np.array(["0001", "0001", "0002", "-1", "0000"])
    cams = np.array(["1", "2", "1", "2", "3"])
    good, junk = relevance("0001", "1", pids, cams, frozenset({"-1"}))
    assert good.tolist() == [False, True, False, False, False]
    assert junk.tolist() == [True, False, False, True, False]


def _market_compute_ap(index: np.ndarray, good: set[int], junk: set[int]) -> float:
    """Literal port of compute_AP.m from the Market-1501 evaluation code."""
    ngood = len(good)
    old_recall, old_precision, ap, intersect, j, good_now, njunk = 0.0, 1.0, 0.0, 0, 0, 0, 0
    for n in range(len(index)):
        flag = False
        if index[n] in good:
            flag = True
            good_now += 1
        if index[n] in junk:
            njunk += 1
            continue
        if flag:
            intersect += 1
        recall = intersect / ngood
        precision = intersect / (j + 1)
        ap += (recall - old_recall) * ((old_precision + precision) / 2)
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            return ap
    return ap


def test_trapezoidal_ap_matches_market_reference_on_random_rankings() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(5, 40))
        ranked = rng.permutation(n)
        labels = rng.integers(0, 3, n)  # 0 other, 1 good, 2 junk
        if not (labels == 1).any():
            labels[0] = 1
        good, junk = labels == 1, labels == 2
        s = score_ranking(ranked, good, junk)
        ref = _market_compute_ap(ranked, set(np.flatnonzero(good)), set(np.flatnonzero(junk)))
        assert s.ap_trapz == pytest.approx(ref, abs=1e-12)
        # non-interpolated AP: mean of precision at each hit (reference loop)
        kept = [i for i in ranked if not junk[i]]
        hits = [k for k, i in enumerate(kept) if good[i]]
        assert s.ap == pytest.approx(np.mean([(h + 1) / (p + 1) for h, p in enumerate(hits)]))


def test_single_shot_cmc_perfect_and_reversed() -> None:
    gp = np.array(["a", "a", "b", "b", "c"])
    qp = np.array(["a", "b", "c"])
    d = np.where(gp[None, :] == qp[:, None], 0.0, 1.0)
    assert single_shot_cmc(d, qp, gp)["rank1"] == 100.0
    r = single_shot_cmc(1.0 - d, qp, gp, ks=(1, 3))
    assert r["rank1"] == 0.0 and r["rank3"] == 100.0


def test_ap_from_positions_equals_score_ranking() -> None:
    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(1, 40))
        pids = rng.integers(0, 4, n).astype(str)
        cams = rng.integers(0, 2, n).astype(str)
        good, junk = relevance("1", "0", pids, cams, frozenset({"3"} if case % 2 else set()))
        ranked = rng.permutation(n)[: int(rng.integers(0, n + 1))]  # maybe cut off
        kept = ranked[~junk[ranked]]
        positions = np.flatnonzero(good[kept])
        want = score_ranking(ranked, good, junk)
        got = score_positions(rng.permutation(positions), int(good.sum()))
        assert got.first_hit == want.first_hit and got.n_good == want.n_good
        np.testing.assert_allclose([got.ap, got.ap_trapz], [want.ap, want.ap_trapz],
                                   equal_nan=True)
    # two relevant images at the same distance take consecutive places
    assert score_positions([0, 0], 2).ap == 1.0


def test_ties_counted_by_a_scan_take_consecutive_places() -> None:
    # a scan counts the images strictly closer: two relevant images tied behind one
    # negative both count 1; a third behind those three counts 3
    s = score_positions([1, 1, 3], 3)
    # places 1, 2, 3 (0-based): precisions 1/2, 2/3, 3/4
    assert s.ap == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3) and s.first_hit == 1


def test_rank_matrix_marks_unranked_and_outside_rows() -> None:
    ranks = rank_matrix([np.array([2, 0]), np.array([3, 1, 0, 2]), np.array([5, 1])], n=4)
    assert ranks.tolist() == [[1, 4, 0, 4], [2, 1, 3, 0], [4, 1, 4, 4]]
