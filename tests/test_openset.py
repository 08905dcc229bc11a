"""Open-set scores, calibration, ROC and operating points: hand-computed cases and references."""

from __future__ import annotations

import numpy as np
import pytest

from reidctl.metrics import relevance
from reidctl.openset import (
    OpenSetScores,
    calibrate,
    operating_point,
    roc,
    scores_from_distances,
    scores_from_ranking,
)

# --- calibrate ---------------------------------------------------------------------------


def _fmr(impostor: list[float] | np.ndarray, t: float) -> float:
    return float(np.mean(np.asarray(impostor) <= t))


def test_calibrate_is_largest_threshold_below_the_next_impostor() -> None:
    imp = [0.4, 0.1, 0.3, 0.2]
    t = calibrate(imp, 0.25)  # one false match of four allowed
    assert 0.2 > t > 0.1 and t == np.nextafter(0.2, -np.inf)
    assert _fmr(imp, t) == 0.25 and _fmr(imp, np.nextafter(t, np.inf)) == 0.5


def test_calibrate_ties_keep_fmr_at_or_below_target() -> None:
    imp = [0.1, 0.2, 0.2, 0.4]
    t = calibrate(imp, 0.5)  # k = 2, but s_2 == s_3: both ties must fall above t
    assert t == np.nextafter(0.2, -np.inf) and _fmr(imp, t) == 0.25
    assert calibrate([0.3, 0.3, 0.3], 0.5) < 0.3  # all tied: nothing can be accepted
    assert _fmr([0.3, 0.3, 0.3], calibrate([0.3, 0.3, 0.3], 0.9)) == 0.0


def test_calibrate_edge_targets() -> None:
    imp = [0.4, 0.1, 0.3, 0.2]
    t0 = calibrate(imp, 0.0)
    assert t0 == np.nextafter(0.1, -np.inf) and _fmr(imp, t0) == 0.0
    assert calibrate(imp, 1.0) == np.inf
    assert calibrate(imp, 0.99) == np.nextafter(0.4, -np.inf)  # 3 of 4 allowed
    assert calibrate([0.5], 0.5) == np.nextafter(0.5, -np.inf)
    assert calibrate([0.1, np.inf], 0.5) == np.finfo(np.float64).max  # inf never matches
    assert calibrate([0.1, np.inf], 1.0) == np.inf


def test_calibrate_float_grid_reaches_the_target_exactly() -> None:
    imp = np.arange(100) / 100.0
    for target in (0.01, 0.07, 0.29, 0.57):  # 0.29 * 100 == 28.999999999999996 in floats
        t = calibrate(imp, target)
        assert _fmr(imp, t) == target


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")]])
def test_calibrate_refuses_no_or_nan_scores(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        calibrate(bad, 0.1)


@pytest.mark.parametrize("target", [-0.01, 1.01])
def test_calibrate_refuses_target_outside_unit_interval(target: float) -> None:
    with pytest.raises(ValueError, match="target FMR"):
        calibrate([0.1], target)


def test_calibrate_is_maximal_on_random_tied_scores() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        imp = rng.integers(0, 10, size=int(rng.integers(1, 40))).astype(np.float64) / 10
        target = float(rng.choice([0.0, 1.0, rng.random()]))
        t = calibrate(imp, target)
        assert _fmr(imp, t) <= target
        if np.isfinite(t):
            assert _fmr(imp, float(np.nextafter(t, np.inf))) > target  # no larger t qualifies


# --- operating point and ROC -------------------------------------------------------------

HAND = OpenSetScores(
    genuine_best=np.array([0.1, 0.2, 0.3]),
    genuine_correct=np.array([True, False, True]),
    impostor=np.array([0.15, 0.25, 0.35, 0.45]),
)


def test_operating_point_hand_computed() -> None:
    p = operating_point(HAND, 0.25)
    assert p == {"threshold": 0.25, "fmr": 0.5, "tmr": pytest.approx(1 / 3),
                 "queries_genuine": 3, "queries_impostor": 4}
    assert operating_point(HAND, 0.3)["tmr"] == pytest.approx(2 / 3)  # a tie with t matches
    assert operating_point(HAND, 0.0)["fmr"] == operating_point(HAND, 0.0)["tmr"] == 0.0
    top = operating_point(HAND, np.inf)
    assert top["fmr"] == 1.0 and top["tmr"] == pytest.approx(2 / 3)  # wrong rank-1 never counts


def test_roc_hand_computed() -> None:
    r = roc(HAND)
    np.testing.assert_allclose(r.threshold, [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45])
    np.testing.assert_allclose(r.fmr, [0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(r.tmr, np.array([1, 1, 1, 1, 2, 2, 2]) / 3)
    for t, f, m in zip(*r, strict=True):
        p = operating_point(HAND, float(t))
        assert (p["fmr"], p["tmr"]) == pytest.approx((f, m))


def test_rates_without_queries_are_nan() -> None:
    only_impostors = OpenSetScores(np.zeros(0), np.zeros(0, bool), np.array([0.2, np.inf]))
    p = operating_point(only_impostors, 0.3)
    assert np.isnan(p["tmr"]) and p["fmr"] == 0.5 and p["queries_genuine"] == 0
    r = roc(only_impostors)
    assert list(r.threshold) == [0.2] and np.isnan(r.tmr).all()  # inf is no threshold


# --- scores ------------------------------------------------------------------------------

G_IDS = np.array(["a", "a", "b", "c", "-1"])
G_CAMS = np.array(["B", "A", "B", "B", "B"])


def test_scores_from_distances_hand_computed() -> None:
    dist = np.array([
        [0.5, 0.1, 0.3, 0.7, 0.9],  # a@A: a@A is junk -> rank-1 b (0.3): genuine, wrong
        [0.2, 0.9, 0.6, 0.4, 0.9],  # b@A: rank-1 a (0.2): genuine, wrong; impostor 0.2
        [0.8, 0.6, 0.7, 0.9, 0.05],  # d@A: absent person -> impostor only (the -1 is junk)
        [0.1, 0.6, 0.7, 0.2, 0.9],  # c@A: rank-1 a (0.1)... impostor 0.1
    ])
    s = scores_from_distances(dist, ["a", "b", "d", "c"], G_IDS, ["A", "A", "A", "A"], G_CAMS,
                              junk_ids=frozenset({"-1"}))
    np.testing.assert_allclose(s.genuine_best, [0.3, 0.2, 0.1])
    assert s.genuine_correct.tolist() == [False, False, False]
    np.testing.assert_allclose(s.impostor, [0.3, 0.2, 0.6, 0.1])

    same_cam = scores_from_distances(dist[:1], ["a"], G_IDS, cross_camera=False)
    assert same_cam.genuine_best.tolist() == [0.1] and same_cam.genuine_correct.tolist() == [True]
    assert same_cam.impostor.tolist() == [0.3]  # without junk ids the -1 would count: 0.3 < 0.9

    correct = scores_from_distances(np.array([[0.3, 0.9, 0.4, 0.5, 0.0]]), ["a"], G_IDS, ["A"],
                                    G_CAMS, junk_ids=frozenset({"-1"}))
    assert correct.genuine_correct.tolist() == [True] and correct.impostor.tolist() == [0.4]


def test_scores_need_cameras_for_cross_camera() -> None:
    with pytest.raises(ValueError, match="camera"):
        scores_from_distances(np.zeros((1, 5)), ["a"], G_IDS)
    with pytest.raises(ValueError, match="camera"):
        scores_from_ranking([[]], ["a"])
    with pytest.raises(ValueError, match="distances"):
        scores_from_distances(np.zeros((2, 5)), ["a"], G_IDS, ["A"], G_CAMS)


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, g = 40, 70
    g_ids = rng.choice(["p0", "p1", "p2", "p3", "p4", "p5", "-1"], size=g)
    g_cams = rng.choice(["A", "B", "C"], size=g)
    q_ids = rng.choice(["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"], size=q)  # p6, p7 absent
    q_cams = rng.choice(["A", "B", "C"], size=q)
    # coarse values: many ties, also at rank 1; half the queries lie near their own identity
    same = q_ids[:, None] == g_ids[None, :]  # (Q, G)
    near = (np.arange(q) % 2 == 0)[:, None] & same
    dist = rng.integers(0, 20, size=(q, g)) / 10 + np.where(near, 0.0, 1.0)  # (Q, G)
    return dist, q_ids, q_cams, g_ids, g_cams


def _hit_lists(dist: np.ndarray, g_ids: np.ndarray, g_cams: np.ndarray,
               top: int | None = None) -> list[list[tuple[float, str, str]]]:
    out = []
    for row in dist:
        order = np.argsort(row, kind="stable")[:top]
        out.append([(float(row[i]), str(g_ids[i]), str(g_cams[i])) for i in order])
    return out


@pytest.mark.parametrize("cross_camera", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_ranking_version_equals_matrix_version(seed: int, cross_camera: bool) -> None:
    dist, q_ids, q_cams, g_ids, g_cams = _random_case(seed)
    junk = frozenset({"-1"})
    ref = scores_from_distances(dist, q_ids, g_ids, q_cams, g_cams, cross_camera=cross_camera,
                                junk_ids=junk)
    got = scores_from_ranking(_hit_lists(dist, g_ids, g_cams), list(q_ids), list(q_cams),
                              cross_camera=cross_camera, junk_ids=junk)
    assert 0 < ref.genuine_best.size < len(q_ids) and ref.impostor.size == len(q_ids)
    assert ref.genuine_correct.any() and not ref.genuine_correct.all()
    np.testing.assert_array_equal(got.genuine_best, ref.genuine_best)
    np.testing.assert_array_equal(got.genuine_correct, ref.genuine_correct)
    np.testing.assert_array_equal(got.impostor, ref.impostor)


def test_truncated_hit_lists_with_known_genuine_queries() -> None:
    dist, q_ids, q_cams, g_ids, g_cams = _random_case(7)
    ref = scores_from_distances(dist, q_ids, g_ids, q_cams, g_cams)
    genuine = [bool(relevance(p, c, g_ids, g_cams)[0].any())
               for p, c in zip(q_ids, q_cams, strict=True)]
    short = scores_from_ranking(_hit_lists(dist, g_ids, g_cams, top=3), list(q_ids),
                                list(q_cams), genuine=genuine)
    assert short.genuine_best.size == ref.genuine_best.size  # denominators from the gallery
    # a score found in the top 3 is the exact one; one not found is inf
    assert np.isin(short.impostor, [*ref.impostor, np.inf]).all()
    assert (short.impostor >= ref.impostor).all() and np.isinf(short.impostor).any()
    assert (short.genuine_best >= ref.genuine_best).all()
    assert not short.genuine_correct[~ref.genuine_correct].any()


def test_concat_keeps_order() -> None:
    both = OpenSetScores.concat([HAND, HAND])
    assert both.genuine_best.tolist() == [0.1, 0.2, 0.3] * 2
    assert both.impostor.size == 8 and OpenSetScores.concat([]).impostor.size == 0
