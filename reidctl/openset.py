"""Open-set identification: "this person is not in the gallery", at a calibrated threshold.

Pure numpy; no I/O. Distances are the fine distance d = sqrt(d_g^2 + w d_l^2) of
search, smaller is more similar; a search answers "no match" when its best hit
is farther than the threshold ``t``.

Definitions (ISO/IEC 19795-1 style, for identification):

- **Genuine query**: a query whose identity has (non-junk) images in the gallery.
  Its genuine score is its best (smallest) distance over the gallery, i.e. the
  distance of its rank-1 hit after junk removal. Identification *succeeds* at
  threshold ``t`` when the rank-1 hit is the same person AND its distance is
  ``<= t``.
- **TMR(t)**, true-match rate (a.k.a. detection-and-identification rate, DIR):
  the fraction of genuine queries that succeed at ``t``.
- **Impostor query**: a query whose person is absent from the gallery. Its
  impostor score is its best distance over the gallery; it is a *false match*
  when that score is ``<= t``.
- **FMR(t)**, false-match rate: the fraction of impostor queries with a false
  match at ``t``.
- **Leave-identity-out** turns a closed dataset into impostor queries: for each
  query, the impostor score is the smallest distance to gallery images of
  OTHER identities, which is what its best hit would be if its own identity
  were removed from the gallery. Every query thus gives one impostor score, and
  each query whose identity is in the gallery also one genuine score.
- **Junk** follows :func:`reidctl.metrics.relevance`: with ``cross_camera`` the
  query person's own images from the query's camera are ignored (not a
  re-identification), as are images whose person id is in ``junk_ids`` (e.g.
  Market-1501's ``-1``). Junk counts neither as genuine nor as impostor.
- **Calibration** picks the largest threshold whose FMR on the calibration
  impostor scores is ``<= target`` (see :func:`calibrate`).

FMR(t) and TMR(t) are right-continuous step functions of ``t`` (a score equal
to ``t`` matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reidctl.metrics import relevance

RankedHit = tuple[float, str, str]  # (distance, person id, camera) of one gallery image


@dataclass(frozen=True)
class OpenSetScores:
    """Genuine and impostor scores of a query set.

    Attributes:
        genuine_best: (Qg,) float64 rank-1 distance of each genuine query
            (``inf`` when a hit list had no usable entry).
        genuine_correct: (Qg,) bool, whether that rank-1 hit is the same person.
        impostor: (Qi,) float64 leave-identity-out best distance of each query
            (``inf`` when no other identity is in its hit list).
    """

    genuine_best: np.ndarray
    genuine_correct: np.ndarray
    impostor: np.ndarray

    @staticmethod
    def concat(parts: Sequence[OpenSetScores]) -> OpenSetScores:
        """The scores of several query sets together (e.g. chunks of one query set)."""
        if not parts:
            return OpenSetScores(np.zeros(0), np.zeros(0, bool), np.zeros(0))
        return OpenSetScores(
            np.concatenate([p.genuine_best for p in parts]),
            np.concatenate([p.genuine_correct for p in parts]),
            np.concatenate([p.impostor for p in parts]),
        )


class Roc(NamedTuple):
    """The open-set ROC: at every ``threshold[i]``, ``fmr[i]`` and ``tmr[i]`` (fractions)."""

    threshold: np.ndarray
    fmr: np.ndarray
    tmr: np.ndarray


def _masks(
    q_id: str, q_cam: str | None, g_ids: np.ndarray, g_cams: np.ndarray | None,
    cross_camera: bool, junk_ids: frozenset[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(good, junk) masks over the gallery for one query, as in evaluation."""
    if cross_camera:
        if q_cam is None or g_cams is None:
            raise ValueError("cross_camera=True needs query and gallery cameras")
        return relevance(q_id, q_cam, g_ids, g_cams, junk_ids)
    junk = np.isin(g_ids, list(junk_ids)) if junk_ids else np.zeros(len(g_ids), bool)
    return (g_ids == q_id) & ~junk, junk


def scores_from_distances(
    dist: np.ndarray, q_ids: Sequence[str] | np.ndarray, g_ids: Sequence[str] | np.ndarray,
    q_cams: Sequence[str] | np.ndarray | None = None,
    g_cams: Sequence[str] | np.ndarray | None = None, *, cross_camera: bool = True,
    junk_ids: frozenset[str] = frozenset(),
) -> OpenSetScores:
    """Genuine and leave-identity-out impostor scores from a full distance matrix.

    Rank-1 is the first smallest distance in gallery order (as a stable sort).

    Args:
        dist: (Q, G) query-to-gallery distances.
        q_ids: (Q,) query person ids; g_ids: (G,) gallery person ids.
        q_cams: (Q,), g_cams: (G,) camera ids; required with ``cross_camera``.
        cross_camera: ignore the query person's own images from the query's camera.
        junk_ids: person ids ignored wherever they appear in the gallery.

    Returns:
        The scores; a query whose identity has no non-junk gallery image gives
        only an impostor score.
    """
    dist = np.asarray(dist, dtype=np.float64)
    g_ids_a = np.asarray(g_ids).astype(str)
    g_cams_a = None if g_cams is None else np.asarray(g_cams).astype(str)
    q_ids_l = [str(q) for q in q_ids]
    q_cams_l: list[str | None] = [None] * len(q_ids_l) if q_cams is None else [
        str(c) for c in q_cams]
    if dist.shape != (len(q_ids_l), len(g_ids_a)):
        raise ValueError(f"distances {dist.shape} for {len(q_ids_l)} queries, "
                         f"{len(g_ids_a)} gallery images")
    gen_best: list[float] = []
    gen_ok: list[bool] = []
    imp: list[float] = []
    for qi, (q_id, q_cam) in enumerate(zip(q_ids_l, q_cams_l, strict=True)):
        good, junk = _masks(q_id, q_cam, g_ids_a, g_cams_a, cross_camera, junk_ids)
        other = ~junk & (g_ids_a != q_id)  # (G,) other identities, junk removed
        d = dist[qi]  # (G,)
        imp.append(float(d[other].min()) if other.any() else np.inf)
        if good.any():
            usable = np.where(junk, np.inf, d)  # (G,)
            top = int(np.argmin(usable))  # first minimum: the stable rank-1
            gen_best.append(float(usable[top]))
            gen_ok.append(bool(good[top]))
    return OpenSetScores(np.array(gen_best, np.float64), np.array(gen_ok, bool),
                         np.array(imp, np.float64))


def scores_from_ranking(
    rankings: Sequence[Sequence[RankedHit]], q_ids: Sequence[str],
    q_cams: Sequence[str] | None = None, *, genuine: Sequence[bool] | np.ndarray | None = None,
    cross_camera: bool = True, junk_ids: frozenset[str] = frozenset(),
) -> OpenSetScores:
    """Genuine and leave-identity-out impostor scores from per-query ranked hit lists.

    Equal to :func:`scores_from_distances` when every hit list covers the whole
    gallery in stable distance order. With shorter lists (C2F's top-M), a query
    whose list holds no other identity gets impostor score ``inf``.

    Args:
        rankings: per query, its hits ``(distance, person_id, camera)``, best first.
        q_ids: (Q,) query person ids; q_cams: (Q,) cameras (required with ``cross_camera``).
        genuine: (Q,) whether each query's identity has a non-junk gallery image
            (e.g. ``relevance(...)[0].any()`` over the gallery metadata); None:
            inferred from the hit lists, exact only when they cover the gallery.
        cross_camera, junk_ids: as for :func:`scores_from_distances`.

    Returns:
        The scores.
    """
    if len(rankings) != len(q_ids) or (q_cams is not None and len(q_cams) != len(q_ids)):
        raise ValueError("one hit list, person id and camera per query")
    if cross_camera and q_cams is None:
        raise ValueError("cross_camera=True needs query cameras")
    gen_best: list[float] = []
    gen_ok: list[bool] = []
    imp: list[float] = []
    for qi, hits in enumerate(rankings):
        q_id = str(q_ids[qi])
        q_cam = None if q_cams is None else str(q_cams[qi])
        first: tuple[float, bool] | None = None  # rank-1 after junk removal
        impostor: float | None = None
        has_good = False
        for dist, pid, cam in hits:
            pid = str(pid)
            if pid in junk_ids or (cross_camera and pid == q_id and str(cam) == q_cam):
                continue  # junk
            same = pid == q_id
            if first is None:
                first = (float(dist), same)
            if same:
                has_good = True
            elif impostor is None:
                impostor = float(dist)
            if has_good and impostor is not None:
                break  # nothing further down the list can change the scores
        imp.append(np.inf if impostor is None else impostor)
        is_genuine = has_good if genuine is None else bool(genuine[qi])
        if is_genuine:
            gen_best.append(np.inf if first is None else first[0])
            gen_ok.append(False if first is None else first[1])
    return OpenSetScores(np.array(gen_best, np.float64), np.array(gen_ok, bool),
                         np.array(imp, np.float64))


def calibrate(impostor: np.ndarray | Sequence[float], target_fmr: float) -> float:
    """The largest threshold whose FMR over ``impostor`` is at most ``target_fmr``.

    With ``n`` impostor scores sorted ``s_1 <= ... <= s_n``, at most
    ``k = floor(target_fmr * n)`` of them may be ``<= t``. Every ``t < s_(k+1)``
    qualifies and ``t = s_(k+1)`` does not, so the answer is the largest float
    below ``s_(k+1)``. Ties need no special case: scores tied with ``s_(k+1)``
    all fall above the threshold, so the measured FMR may be below the target
    (it is the largest achievable one not above it). ``target_fmr = 0`` gives a
    threshold just below the smallest impostor score (FMR 0 on this data);
    ``k >= n`` (``target_fmr = 1``) accepts everything: ``inf``.

    Args:
        impostor: (Qi,) impostor scores (``inf`` allowed: never a false match).
        target_fmr: the tolerated false-match rate, in [0, 1].

    Returns:
        The threshold ``t``; a query is answered with its best hit when that
        hit's distance is ``<= t``, else with "no match".

    Raises:
        ValueError: no impostor score, NaN scores, target outside [0, 1].
    """
    s = np.sort(np.asarray(impostor, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no impostor score to calibrate on")
    if np.isnan(s).any():
        raise ValueError("impostor scores contain NaN")
    if not 0.0 <= target_fmr <= 1.0:
        raise ValueError(f"target FMR must be in [0, 1], got {target_fmr}")
    n = s.size
    k = int(np.floor(target_fmr * n))
    # the largest k with k / n <= target as the measured FMR computes it (0.29 * 100 < 29)
    while k < n and (k + 1) / n <= target_fmr:
        k += 1
    while k > 0 and k / n > target_fmr:
        k -= 1
    if k >= n:
        return float("inf")
    return float(np.nextafter(s[k], -np.inf))


def _rate(sorted_scores: np.ndarray, t: np.ndarray | float, total: int) -> np.ndarray:
    """Fraction of ``total`` scores ``<= t`` (NaN when total is 0)."""
    if total == 0:
        return np.full(np.shape(t), np.nan)
    return np.searchsorted(sorted_scores, t, side="right") / total


def roc(scores: OpenSetScores) -> Roc:
    """FMR and TMR at every distinct finite score as threshold, ascending.

    Below the first threshold both rates are 0; the curve is a step function
    between thresholds. A rate with no query to count (no genuine or no
    impostor score) is NaN.
    """
    hits = np.sort(scores.genuine_best[scores.genuine_correct])  # successes once t >= them
    imp = np.sort(scores.impostor)
    t = np.unique(np.concatenate([scores.genuine_best, scores.impostor]))
    t = t[np.isfinite(t)]
    return Roc(t, _rate(imp, t, imp.size), _rate(hits, t, scores.genuine_best.size))


def operating_point(scores: OpenSetScores, threshold: float) -> dict[str, float | int]:
    """FMR and TMR (fractions) at ``threshold``.

    Returns:
        {"threshold", "fmr", "tmr", "queries_genuine", "queries_impostor"}; a rate
        with no query to count is NaN.
    """
    hits = scores.genuine_best[scores.genuine_correct]
    n_gen, n_imp = int(scores.genuine_best.size), int(scores.impostor.size)
    return {
        "threshold": float(threshold),
        "fmr": float(np.count_nonzero(scores.impostor <= threshold) / n_imp) if n_imp
        else float("nan"),
        "tmr": float(np.count_nonzero(hits <= threshold) / n_gen) if n_gen else float("nan"),
        "queries_genuine": n_gen,
        "queries_impostor": n_imp,
    }
