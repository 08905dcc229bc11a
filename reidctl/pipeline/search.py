"""Search: query -> Conv-Net -> coarse top-M in ``global`` -> f_l from ``local`` -> re-rank."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reidctl.model import FeatureExtractor
from reidctl.pipeline.common import extract_files
from reidctl.query_opts import QueryOptions, expand, kr_rerank
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
    method: str = "c2f"  # what ranked the hits (see QueryOptions.name)
    best_distance: float | None = None  # the plain C2F best distance (before any options)
    captured_at: list[int] = field(default_factory=list)  # per hit: epoch ms, -1 unknown

    @property
    def no_match(self) -> bool | None:
        """True when the best hit lies beyond the threshold (the person is most likely not
        in the gallery); None without a threshold. After query-time options the decision
        is the plain C2F best distance's (what the threshold was calibrated on)."""
        if self.threshold is None:
            return None
        if self.best_distance is not None:
            return self.best_distance > self.threshold
        return not self.hits or self.hits[0].distance > self.threshold

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "method": self.method,
            "no_match": self.no_match,
            "threshold": self.threshold,
            "hits": [h.__dict__ | {"captured_at": t} for h, t in zip(
                self.hits, self.captured_at or [-1] * len(self.hits), strict=True)],
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
    return _fine(store, q_local, candidates, device, fine_weight=fine_weight, fresh=fresh,
                 timings=timings)[0]


def _fine(
    store: MilvusStore, q_local: np.ndarray, candidates: list[Candidate], device: torch.device,
    *, fine_weight: float, fresh: bool, timings: Timings | None,
) -> tuple[list[Candidate], np.ndarray]:
    """:func:`fine_rerank`, also returning the re-ranked candidates' f_l: (M', Dl) for the
    first M' of the ranking, those that have one."""
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
    return out, f_l[ok[order]]


def _c2f_pass(
    store: MilvusStore, q_global: np.ndarray, q_local: np.ndarray, m: int,
    device: torch.device, timings: Timings, *, fine_weight: float, where: Selection | None,
    fresh: bool, with_meta: bool,
) -> tuple[list[Candidate], np.ndarray]:
    """One coarse search and re-rank, its times added to ``timings``: the ranking and the
    f_l of its first M' candidates (see :func:`_fine`)."""
    with Stopwatch() as sw:
        cands = coarse_search(store, q_global, m, where=where, fresh=fresh,
                              with_meta=with_meta)
    timings.coarse += sw.ms
    if not cands:
        return [], np.zeros((0, q_local.shape[-1]), dtype=np.float32)
    return _fine(store, q_local, cands, device, fine_weight=fine_weight, fresh=fresh,
                 timings=timings)


def c2f(
    store: MilvusStore, q_global: np.ndarray, q_local: np.ndarray, m: int, device: torch.device,
    *, fine_weight: float, where: Selection | None = None, fresh: bool = False,
    with_meta: bool = True,
) -> tuple[list[Candidate], Timings]:
    """Coarse-to-fine search for one query: the re-ranked top-``m`` (see
    :func:`coarse_search` for ``with_meta``)."""
    timings = Timings()
    ranked, _ = _c2f_pass(store, q_global, q_local, m, device, timings,
                          fine_weight=fine_weight, where=where, fresh=fresh,
                          with_meta=with_meta)
    return ranked, timings


def c2f_options(
    store: MilvusStore, q_global: np.ndarray, q_local: np.ndarray, m: int, device: torch.device,
    options: QueryOptions, *, fine_weight: float, where: Selection | None = None,
    fresh: bool = False, with_meta: bool = True,
) -> tuple[list[Candidate], Timings, float | None]:
    """:func:`c2f`, then the query-time options (:mod:`reidctl.query_opts`).

    Query expansion fetches the f_g of the top-``options.qe`` hits (their f_l came with
    the re-rank), expands the query and runs C2F again with it (a second coarse search in
    Milvus, ``where`` included): the distances are then the expanded query's.
    k-reciprocal re-ranking fetches the f_g of the M candidates and re-ranks them with
    the original query; the distances stay the full-descriptor distances to the query,
    so they need not increase down the list. A candidate without f_l or f_g (deleted
    meanwhile) follows the others. The stages add up over both searches.

    Returns:
        The ranking, the timings, and the plain C2F best distance (None without
        candidates): what an open-set threshold is compared with.
    """
    timings = Timings()
    kw = {"fine_weight": fine_weight, "where": where, "fresh": fresh, "with_meta": with_meta}
    ranked, local = _c2f_pass(store, q_global, q_local, m, device, timings, **kw)
    best = ranked[0].distance if ranked else None
    if options.qe and len(local):
        top = ranked[:min(options.qe, len(local))]
        with Stopwatch() as sw:
            f_g, got = store.fetch_global_partial([c.id for c in top], fresh=fresh)
        timings.fetch += sw.ms
        with Stopwatch() as sw:
            qe_g = expand(q_global, f_g[got])
            qe_l = expand(q_local, local[:len(top)][got])
        timings.rerank += sw.ms
        ranked, local = _c2f_pass(store, qe_g, qe_l, m, device, timings, **kw)
    if options.kreciprocal and len(local):
        ranked = _kreciprocal(store, q_global, q_local, ranked, local, device, options,
                              fine_weight=fine_weight, fresh=fresh, timings=timings)
    return ranked, timings, best


def _kreciprocal(
    store: MilvusStore, q_global: np.ndarray, q_local: np.ndarray, ranked: list[Candidate],
    local: np.ndarray, device: torch.device, options: QueryOptions, *, fine_weight: float,
    fresh: bool, timings: Timings,
) -> list[Candidate]:
    """k-reciprocal re-ranking of the first ``len(local)`` candidates (those with f_l)."""
    head = ranked[:len(local)]
    with Stopwatch() as sw:
        f_g, got = store.fetch_global_partial([c.id for c in head], fresh=fresh)  # (M', Dg)
    timings.fetch += sw.ms
    with Stopwatch() as sw:
        ok = np.flatnonzero(got)
        order, dist = kr_rerank(q_global, q_local, f_g[ok], local[ok], device,
                                local_weight=fine_weight, k1=options.k1, k2=options.k2,
                                lam=options.lam)
        out = [Candidate(head[ok[i]].id, float(d), head[ok[i]].meta)
               for i, d in zip(order.tolist(), dist.tolist(), strict=True)]
        out += [head[i] for i in np.flatnonzero(~got)] + ranked[len(local):]
    timings.rerank += sw.ms
    return out


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
    threshold: float | None = None, options: QueryOptions | None = None,
) -> list[QueryResult]:
    """Coarse-to-fine search of every query image; returns its top-``top_k`` hits.

    ``where`` restricts the gallery (camera, source, time window); the filter runs
    inside Milvus, in the coarse ANN search, so the M candidates all satisfy it.
    ``threshold`` (default: the model's calibrated one, if any) marks a query "no match"
    when its best hit is farther. ``options`` adds query expansion and k-reciprocal
    re-ranking (:func:`c2f_options`).

    Raises:
        CollectionNotFound: the collection pair does not exist.
        FeatureSpaceMismatch: it holds another model's vectors.
        InputError: a query image is missing or unusable.
    """
    store.check_model(extractor.fingerprint)
    threshold = extractor.threshold if threshold is None else threshold
    q_g, q_l = extract_files(extractor, list(queries))
    m = max(m, top_k)
    options = options or QueryOptions()
    return [rank_query(store, str(path), g, loc, top_k, m, device, options,
                       fine_weight=extractor.fine_weight, where=where, threshold=threshold)
            for path, g, loc in zip(queries, q_g, q_l, strict=True)]


def rank_query(
    store: MilvusStore, query: str, q_g: np.ndarray, q_l: np.ndarray, top_k: int, m: int,
    device: torch.device, options: QueryOptions, *, fine_weight: float,
    where: Selection | None, threshold: float | None,
) -> QueryResult:
    """One query's C2F ranking from its descriptors (:func:`c2f_options`); the M candidates
    travel as ids and metadata is read for the top-k shown only (counted as fetch time).

    Args:
        q_g, q_l: ``(Dg,)`` and ``(Dl,)`` the query's descriptors.
        m: coarse candidates, at least ``top_k``.
    """
    ranked, timings, best = c2f_options(store, q_g, q_l, m, device, options,
                                        fine_weight=fine_weight, where=where, with_meta=False)
    with Stopwatch() as sw:
        shown = with_metadata(store, ranked[:top_k]) if ranked else []
    timings.fetch += sw.ms  # reads from Milvus, like f_l
    return QueryResult(query, to_hits(shown, top_k), timings, threshold, options.name, best,
                       [int(c.meta.get("captured_at", -1)) for c in shown])
