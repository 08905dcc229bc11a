"""One protocol runner: rankers, ground truth and a timer in, one typed report per method out.

Every way of ranking a gallery (Milvus coarse and C2F, exact scans, in-process references,
and later query-time options) is a *ranker* (:mod:`reidctl.pipeline.rankers`); ``eval``,
``bench`` and ``scripts/ablations.py`` only choose rankers and call :func:`run_protocol`,
so ranking, scoring and timing are written once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from reidctl.metrics import (
    QueryScore,
    rank_matrix,
    relevance,
    score_positions,
    score_ranking,
    single_shot_cmc,
)
from reidctl.pipeline.reports import MethodReport
from reidctl.timing import Timer
from reidctl.types import ImageMeta

R = TypeVar("R")  # what a ranker's search returns: gallery rows, or candidates to map to rows


@dataclass(frozen=True)
class GroundTruth:
    """Relevant and junk images of each query over the labelled gallery.

    Rankings index the labelled gallery by row; a row ``>= n`` stands for an image outside
    it (a distractor): it takes a place in the ranking and is never relevant or junk.

    Attributes:
        good: per query (N,) bool, relevant gallery rows.
        junk: per query (N,) bool, rows skipped wherever they are ranked.
        query_pids: (Q,) str; gallery_pids: (N,) str.
    """

    good: list[np.ndarray]
    junk: list[np.ndarray]
    query_pids: np.ndarray
    gallery_pids: np.ndarray

    @classmethod
    def from_labels(cls, query_pids: Sequence[str], query_cams: Sequence[str],
                    gallery_pids: np.ndarray, gallery_cams: np.ndarray,
                    junk_pids: frozenset[str] = frozenset()) -> GroundTruth:
        """Masks of each query by :func:`reidctl.metrics.relevance`.

        Args:
            gallery_pids, gallery_cams: (N,) str labels of the gallery rows.
        """
        masks = [relevance(p, c, gallery_pids, gallery_cams, junk_pids)
                 for p, c in zip(query_pids, query_cams, strict=True)]
        return cls([g for g, _ in masks], [j for _, j in masks], np.array(query_pids),
                   gallery_pids)

    @classmethod
    def from_metas(cls, queries: Sequence[ImageMeta], gallery: Sequence[ImageMeta],
                   junk_pids: frozenset[str] = frozenset()) -> GroundTruth:
        """Masks of each query from the person and camera ids of the images.

        Args:
            queries: the query images, in query order.
            gallery: the labelled gallery images, in row order.
            junk_pids: person ids whose images are junk wherever they are ranked.
        """
        return cls.from_labels([q.person_id for q in queries], [q.camera for q in queries],
                               np.array([g.person_id for g in gallery]),
                               np.array([g.camera for g in gallery]), junk_pids)

    @property
    def num_queries(self) -> int:
        return len(self.good)

    @property
    def n(self) -> int:
        """Labelled gallery rows."""
        return len(self.gallery_pids)

    def n_good(self, qi: int) -> int:
        """Relevant images of query ``qi`` in the whole gallery."""
        return int(self.good[qi].sum())

    def score(self, qi: int, ranked: np.ndarray) -> QueryScore:
        """Scores query ``qi``'s ranking (rows ``>= n``: unlabelled images)."""
        unlabelled = np.zeros(1, dtype=bool)  # one extra row, neither relevant nor junk
        rows = np.minimum(ranked, self.n)  # (R,)
        return score_ranking(rows, np.concatenate([self.good[qi], unlabelled]),
                             np.concatenate([self.junk[qi], unlabelled]))


class Ranker(Protocol[R]):
    """Ranks the gallery for one query at a time.

    The runner times :meth:`rank` alone, the search a user waits for; then
    :meth:`gallery_rows` turns its result into gallery rows for scoring, untimed (a ranker
    that searches a store maps the returned ids to rows there).
    """

    name: str

    def rank(self, qi: int) -> R:
        """The ranking of query ``qi``, best first, as the method produces it."""
        ...

    def gallery_rows(self, ranked: R) -> np.ndarray:
        """(L,) gallery rows of a ranking from :meth:`rank` (L may be less than the
        gallery)."""
        ...


class Scan(Protocol):
    """Ranks the gallery for all queries in one pass (a gallery streamed in blocks), and
    gives the positions of the relevant images rather than rankings."""

    name: str

    def scan(self, truth: GroundTruth) -> tuple[list[np.ndarray], list[float]]:
        """Per query: positions of the relevant images in the junk-free ranking (ties may
        share one, see :func:`reidctl.metrics.score_positions`), and milliseconds."""
        ...


def run_protocol(
    truth: GroundTruth, rankers: Sequence[Ranker[Any]], scans: Sequence[Scan] = (), *,
    timer: Timer | None = None, single_shot: bool = False,
    on_query: Callable[[int], None] | None = None,
) -> dict[str, MethodReport]:
    """Runs every ranker on every query, scores and times it; then every scan.

    Args:
        timer: collects each ranker's milliseconds per query (its :meth:`Ranker.rank`
            calls) under its name.
        single_shot: also CUHK03 single-shot CMC (holds a (Q, N) position matrix per
            ranker: small galleries only).
        on_query: called with the query index after all rankers have ranked it.

    Returns:
        per method (rankers, then scans, in the order given): its report.
    """
    timer = timer or Timer()
    scores: dict[str, list[QueryScore]] = {r.name: [] for r in rankers}
    kept: dict[str, list[np.ndarray]] = {r.name: [] for r in rankers}
    for qi in range(truth.num_queries):
        for r in rankers:
            with timer.stage(r.name):
                found = r.rank(qi)
            ranked = r.gallery_rows(found)  # (L,) rows, outside the timed search
            scores[r.name].append(truth.score(qi, ranked))
            if single_shot:
                kept[r.name].append(ranked)
        if on_query:
            on_query(qi)
    out = {}
    for r in rankers:
        ss = single_shot_cmc(rank_matrix(kept[r.name], truth.n), truth.query_pids,
                             truth.gallery_pids) if single_shot else None
        out[r.name] = MethodReport.from_scores(scores[r.name], timer.ms(r.name), ss)
    for s in scans:
        positions, ms = s.scan(truth)
        out[s.name] = MethodReport.from_scores(
            [score_positions(p, truth.n_good(qi)) for qi, p in enumerate(positions)], ms)
    return out
