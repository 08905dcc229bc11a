"""Search: query -> Conv-Net -> coarse top-M in ``global`` -> f_l from ``local`` -> re-rank."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reidctl.model import FeatureExtractor
from reidctl.pipeline.common import extract_files
from reidctl.rerank import rerank
from reidctl.store import MilvusStore
from reidctl.timing import Stopwatch
from reidctl.types import Hit, Selection


@dataclass(frozen=True)
class Candidate:
    """A gallery image in a ranking, with the distance that ranked it."""

    id: str
    distance: float
    meta: dict


@dataclass
class Timings:
    """Milliseconds spent per stage of one query, and what degraded its ranking."""

    coarse: float = 0.0
    fetch: float = 0.0
    rerank: float = 0.0
    warnings: list[str] = field(default_factory=list)  # what degraded the ranking

    @property
    def total(self) -> float:
        return self.coarse + self.fetch + self.rerank


@dataclass
class QueryResult:
    """Ranked hits for one query image."""

    query: str
    hits: list[Hit]
    timings: Timings = field(default_factory=Timings)
    threshold: float | None = None  # the open-set "no match" distance, when there is one

    @property
    def no_match(self) -> bool | None:
        """True when the best hit lies beyond the threshold (the person is most likely not
        in the gallery); None without a threshold."""
        if self.threshold is None:
            return None
        return not self.hits or self.hits[0].distance > self.threshold

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "no_match": self.no_match,
            "threshold": self.threshold,
            "hits": [h.__dict__ for h in self.hits],
            "warnings": list(self.timings.warnings),
            "ms": {"coarse": round(self.timings.coarse, 3), "fetch": round(self.timings.fetch, 3),
                   "rerank": round(self.timings.rerank, 3)},
        }


def coarse_search(
    store: MilvusStore, q_global: np.ndarray, m: int, *, where: Selection | None = None,
    fresh: bool = False, with_meta: bool = True,
) -> list[Candidate]:
    """Euclidean top-``m`` over the gallery's f_g (ANN in Milvus), nearest first; without
    ``with_meta`` the candidates carry ids and distances only."""
    hits = store.search(q_global[None, :], m, where=where, fresh=fresh, with_meta=with_meta)[0]
    return [Candidate(h.id, h.distance, _meta(h) if with_meta else {}) for h in hits]


def _meta(hit: Hit) -> dict:
    return {"person_id": hit.person_id, "camera": hit.camera, "source": hit.source,
            "path": hit.path}


def fine_rerank(
    store: MilvusStore, q_local: np.ndarray, candidates: list[Candidate], device: torch.device,
    *, fine_weight: float, fresh: bool = False, timings: Timings | None = None,
) -> list[Candidate]:
    """Re-ranks coarse candidates by the full-descriptor distance sqrt(d_g^2 + w d_l^2).

    Only f_l is fetched (from ``local``): d_g comes with the coarse result. A candidate
    without a local descriptor (left by a crash or a race, until ``reidctl repair``)
    does not fail the search: it follows the re-ranked ones in coarse order, with its
    coarse distance, and ``timings.warnings`` says how many there were.
    """
    with Stopwatch() as fetch:
        f_l, present = store.fetch_local_partial([c.id for c in candidates],
                                                 fresh=fresh)  # (M, Dl), (M,)
    with Stopwatch() as fine:
        ok = np.flatnonzero(present)  # (M',) rows with a local descriptor, in coarse order
        coarse = np.array([candidates[i].distance for i in ok], dtype=np.float32)  # (M',)
        order, dist = rerank(q_local, f_l[ok], device, coarse_distances=coarse,
                             local_weight=fine_weight)
        out = [Candidate(candidates[ok[i]].id, float(d), candidates[ok[i]].meta)
               for i, d in zip(order.tolist(), dist.tolist(), strict=True)]
        out += [candidates[i] for i in np.flatnonzero(~present)]
    if timings is not None:
        timings.fetch += fetch.ms
        timings.rerank += fine.ms
        if len(ok) < len(candidates):
            timings.warnings.append(
                f"{len(candidates) - len(ok)} of {len(candidates)} candidates have no local "
                "descriptor (ranked by the global distance after the others): run "
                "reidctl repair")
    return out


def c2f(
    store: MilvusStore, q_global: np.ndarray, q_local: np.ndarray, m: int, device: torch.device,
    *, fine_weight: float, where: Selection | None = None, fresh: bool = False,
    with_meta: bool = True,
) -> tuple[list[Candidate], Timings]:
    """Coarse-to-fine search for one query: the re-ranked top-``m`` (see
    :func:`coarse_search` for ``with_meta``)."""
    timings = Timings()
    with Stopwatch() as sw:
        cands = coarse_search(store, q_global, m, where=where, fresh=fresh,
                              with_meta=with_meta)
    timings.coarse = sw.ms
    if not cands:
        return [], timings
    return fine_rerank(store, q_local, cands, device, fine_weight=fine_weight,
                       fresh=fresh, timings=timings), timings


def with_metadata(store: MilvusStore, candidates: list[Candidate],
                  fresh: bool = False) -> list[Candidate]:
    """The candidates with their metadata read from the global collection (one query
    for all of them); a row deleted meanwhile keeps empty metadata."""
    meta = store.existing([c.id for c in candidates], fresh=fresh, complete=False)
    return [Candidate(c.id, c.distance, meta.get(c.id, {})) for c in candidates]


def to_hits(candidates: list[Candidate], top_k: int) -> list[Hit]:
    """The first ``top_k`` candidates as ranked hits."""
    return [
        Hit(rank=r + 1, id=c.id, distance=c.distance, person_id=c.meta.get("person_id", ""),
            camera=c.meta.get("camera", ""), source=c.meta.get("source", ""),
            path=c.meta.get("path", ""))
        for r, c in enumerate(candidates[:top_k])
    ]


def search(
    queries: Sequence[Path], store: MilvusStore, extractor: FeatureExtractor, *,
    top_k: int = 10, m: int = 500, device: torch.device, where: Selection | None = None,
    threshold: float | None = None,
) -> list[QueryResult]:
    """Coarse-to-fine search of every query image; returns its top-``top_k`` hits.

    ``where`` restricts the gallery (camera, source, time window); the filter runs
    inside Milvus, in the coarse ANN search, so the M candidates all satisfy it.
    ``threshold`` (default: the model's calibrated one, if any) marks a query "no match"
    when its best hit is farther.

    Raises:
        CollectionNotFound: the collection pair does not exist.
        FeatureSpaceMismatch: it holds another model's vectors.
        InputError: a query image is missing or unusable.
    """
    store.check_model(extractor.fingerprint)
    threshold = extractor.threshold if threshold is None else threshold
    q_g, q_l = extract_files(extractor, list(queries))
    m = max(m, top_k)
    results = []
    for path, g, loc in zip(queries, q_g, q_l, strict=True):
        # the M candidates travel as ids; metadata is read for the top-k shown only
        ranked, timings = c2f(store, g, loc, m, device, fine_weight=extractor.fine_weight,
                              where=where, with_meta=False)
        with Stopwatch() as sw:
            shown = with_metadata(store, ranked[:top_k]) if ranked else []
        timings.fetch += sw.ms  # reads from Milvus, like f_l
        results.append(QueryResult(str(path), to_hits(shown, top_k), timings, threshold))
    return results
