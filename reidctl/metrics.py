"""Retrieval metrics: AP (non-interpolated and Market-1501 trapezoidal) and CMC.

Pure numpy; no I/O. A query's ranking may be shorter than the gallery (a coarse
stage cut it off): relevant images missing from it count as never retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QueryScore:
    """Scores of one query.

    Attributes:
        ap: non-interpolated average precision (torchreid / fast-reid definition).
        ap_trapz: trapezoidal AP of the official Market-1501 evaluation code.
        first_hit: 0-based rank of the first relevant image after junk removal, -1 if none.
        n_good: relevant images in the whole gallery.
    """

    ap: float
    ap_trapz: float
    first_hit: int
    n_good: int


def relevance(
    query_pid: str, query_cam: str, gallery_pids: np.ndarray, gallery_cams: np.ndarray,
    junk_pids: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, np.ndarray]:
    """Good and junk masks over the gallery for one query.

    Same person by the same camera is junk (not a re-identification); so is any
    person id in ``junk_pids``.

    Args:
        gallery_pids: (N,) person ids as strings.
        gallery_cams: (N,) camera ids as strings.

    Returns:
        good (N,) bool, junk (N,) bool.
    """
    same_pid = gallery_pids == query_pid
    same_cam = gallery_cams == query_cam
    junk = same_pid & same_cam
    if junk_pids:
        junk |= np.isin(gallery_pids, list(junk_pids))
    good = same_pid & ~junk
    return good, junk


def score_positions(positions: np.ndarray | list[int], n_good: int) -> QueryScore:
    """A query's scores from the positions of its relevant images: the one AP definition.

    Ties: positions may come from counting the images strictly closer than each relevant
    one (a streamed scan), where relevant images at equal distance share a count; they
    then take consecutive places, so a tie never costs a relevant image. Positions read
    off a ranking are distinct already and stay as they are.

    Args:
        positions: 0-based positions, in the ranking with junk removed, of the relevant
            images that were ranked (relevant images missing from it count as misses).
        n_good: relevant images in the whole gallery.

    Returns:
        The query's scores; with no relevant image, AP is nan.
    """
    hits = np.sort(np.asarray(positions, dtype=np.int64))  # (h,)
    if hits.size > 1:  # shared counts become consecutive places
        hits = np.maximum.accumulate(hits - np.arange(hits.size)) + np.arange(hits.size)
    if n_good == 0:
        return QueryScore(float("nan"), float("nan"), -1, 0)
    if hits.size == 0:
        return QueryScore(0.0, 0.0, -1, n_good)
    i = np.arange(1, hits.size + 1, dtype=np.float64)  # 1..h: relevant seen so far
    precision = i / (hits + 1)
    ap = float(precision.sum() / n_good)
    old_precision = np.where(hits == 0, 1.0, (i - 1) / np.maximum(hits, 1))
    ap_trapz = float(((old_precision + precision) / 2).sum() / n_good)
    return QueryScore(ap, ap_trapz, int(hits[0]), n_good)


def relevant_positions(ranked: np.ndarray, good: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """0-based positions of the relevant images in ``ranked`` once junk is removed.

    Args:
        ranked: (R,) gallery indices, best first; R may be less than N.
        good: (N,) bool, relevant gallery images.
        junk: (N,) bool, images to skip wherever they are ranked.

    Returns:
        (h,) positions, increasing.
    """
    kept = ranked[~junk[ranked]]  # (R',) ranking without junk
    return np.flatnonzero(good[kept])


def score_ranking(ranked: np.ndarray, good: np.ndarray, junk: np.ndarray) -> QueryScore:
    """Scores one ranked list (:func:`relevant_positions`, then :func:`score_positions`).

    Args:
        ranked: (R,) gallery indices, best first; R may be less than N.
        good: (N,) bool, relevant gallery images.
        junk: (N,) bool, images to skip wherever they are ranked.

    Returns:
        The query's scores; with no relevant image, AP is nan.
    """
    return score_positions(relevant_positions(ranked, good, junk), int(good.sum()))


def summarize(scores: list[QueryScore], ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """mAP, trapezoidal mAP and CMC rank-k, in percent, over queries with a relevant image.

    Returns:
        {"mAP", "mAP_trapz", "rank1", "rank5", ..., "num_valid_queries"}.
    """
    valid = [s for s in scores if s.n_good > 0]
    if not valid:
        raise ValueError("no query has a relevant gallery image")
    first = np.array([s.first_hit for s in valid])
    out = {
        "mAP": 100.0 * float(np.mean([s.ap for s in valid])),
        "mAP_trapz": 100.0 * float(np.mean([s.ap_trapz for s in valid])),
    }
    for k in ks:
        out[f"rank{k}"] = 100.0 * float(np.mean((first >= 0) & (first < k)))
    out["num_valid_queries"] = len(valid)
    return out


def rank_matrix(rankings: list[np.ndarray], n: int) -> np.ndarray:
    """Each gallery image's position in each query's ranking, for :func:`single_shot_cmc`.

    Args:
        rankings: per query (R,) gallery indices best first; indices >= ``n`` (images
            outside the labelled gallery) are left out.
        n: labelled gallery size.

    Returns:
        (Q, n) float64 positions; images a ranking does not hold are at position ``n``.
    """
    ranks = np.full((len(rankings), n), n, np.int64)
    for qi, ranked in enumerate(rankings):
        at = np.arange(len(ranked))  # (R,)
        inside = ranked < n
        ranks[qi, ranked[inside]] = at[inside]
    return ranks.astype(np.float64)


SINGLE_SHOT_DRAWS = 20  # gallery draws single-shot CMC averages over


def single_shot_cmc(
    distances: np.ndarray, query_pids: np.ndarray, gallery_pids: np.ndarray,
    draws: int = SINGLE_SHOT_DRAWS, ks: tuple[int, ...] = (1, 5, 10), seed: int = 0,
) -> dict[str, float]:
    """CUHK03 single-shot CMC: one random gallery image per identity, averaged over draws.

    Args:
        distances: (Q, N) query-to-gallery distances (small galleries only).
        query_pids: (Q,) person ids; gallery_pids: (N,).

    Returns:
        {"rank1", "rank5", "rank10"} in percent.
    """
    rng = np.random.default_rng(seed)
    ids = np.unique(gallery_pids)
    members = [np.flatnonzero(gallery_pids == p) for p in ids]
    acc = np.zeros(len(ks))
    for _ in range(draws):
        pick = np.array([rng.choice(m) for m in members])  # (P,) one image per identity
        d = distances[:, pick]  # (Q, P)
        order = np.argsort(d, axis=1, kind="stable")
        ranked_pids = ids[order]  # (Q, P)
        match = ranked_pids == query_pids[:, None]
        has = match.any(axis=1)
        first = np.where(has, match.argmax(axis=1), np.iinfo(np.int64).max)
        acc += np.array([np.mean(first[has] < k) for k in ks])
    return {f"rank{k}": 100.0 * float(a / draws) for k, a in zip(ks, acc, strict=True)}
