"""Rankers: each way of ranking a gallery for a query, for :func:`run_protocol`.

Milvus rankers go through the search path (:mod:`reidctl.pipeline.search`) and return its
candidates, whose ids ``gallery_rows`` maps to gallery rows outside the timed search;
exact rankers compute every distance in process and rank rows directly. A new
query-time method is one more class here, and every caller (eval, bench, ablations) can
run it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from reidctl.pipeline.common import ProgressFn
from reidctl.pipeline.protocol import GroundTruth
from reidctl.pipeline.search import Candidate, c2f_options, coarse_search
from reidctl.query_opts import QueryOptions, expand, kr_rerank
from reidctl.rerank import full_distances, rerank, squared_euclidean
from reidctl.store import MilvusStore
from reidctl.timing import Stopwatch, Timer


class _ByIds:
    """Rankers whose rankings are store candidates, mapped to rows by ``index``."""

    index: Mapping[str, int]

    def gallery_rows(self, ranked: list[Candidate]) -> np.ndarray:
        """(L,) gallery rows of ranked candidates; an id outside ``index`` (a distractor)
        maps to ``len(index)``, the unlabelled row."""
        outside = len(self.index)
        return np.array([self.index.get(c.id, outside) for c in ranked], dtype=np.int64)


class _ByRows:
    """Rankers that rank gallery rows directly."""

    @staticmethod
    def gallery_rows(ranked: np.ndarray) -> np.ndarray:
        """The ranking itself: it is made of rows already."""
        return ranked


class MilvusCoarse(_ByIds):
    """ANN top-M on f_g in Milvus (ids and distances only, as search ranks)."""

    name = "coarse"

    def __init__(self, store: MilvusStore, q_global: np.ndarray, m: int,
                 index: Mapping[str, int]) -> None:
        self.store, self.q_global, self.m = store, q_global, m
        self.index = index

    def rank(self, qi: int) -> list[Candidate]:
        return coarse_search(self.store, self.q_global[qi], self.m, with_meta=False)


class MilvusC2F(_ByIds):
    """The search command's coarse-to-fine ranking: the top-M re-ranked with f_l fetched
    from Milvus, then the query-time ``options`` if any (query expansion, k-reciprocal
    re-ranking: :func:`reidctl.pipeline.search.c2f_options`; the name says which, e.g.
    ``c2f+qe``). Keeps the last query's candidates (``last``, with their distances) and
    each stage's milliseconds (``stages``: coarse, fetch, rerank)."""

    def __init__(self, store: MilvusStore, q_global: np.ndarray, q_local: np.ndarray, m: int,
                 index: Mapping[str, int], device: torch.device, *, fine_weight: float,
                 options: QueryOptions | None = None) -> None:
        self.store, self.q_global, self.q_local, self.m = store, q_global, q_local, m
        self.index, self.device, self.fine_weight = index, device, fine_weight
        self.options = options or QueryOptions()
        self.name = self.options.name
        self.last: list[Candidate] = []
        self.stages = Timer()

    def rank(self, qi: int) -> list[Candidate]:
        self.last, timings, _ = c2f_options(
            self.store, self.q_global[qi], self.q_local[qi], self.m, self.device,
            self.options, fine_weight=self.fine_weight, with_meta=False)
        for stage in ("coarse", "fetch", "rerank"):
            self.stages.add(stage, getattr(timings, stage))
        return self.last


class ExactLinear(_ByRows):
    """The linear scan: the full-descriptor distance sqrt(d_g^2 + w d_l^2) to every
    gallery image (:func:`reidctl.rerank.full_distances`), ties in gallery order."""

    name = "linear"

    def __init__(self, q_global: np.ndarray, q_local: np.ndarray, g_global: torch.Tensor,
                 g_local: torch.Tensor, fine_weight: float) -> None:
        self.q_global, self.q_local = q_global, q_local
        self.g_global, self.g_local, self.fine_weight = g_global, g_local, fine_weight

    def rank(self, qi: int) -> np.ndarray:
        d = full_distances(self.q_global[qi], self.q_local[qi], self.g_global, self.g_local,
                           self.fine_weight)  # (N,)
        return torch.argsort(d, stable=True).cpu().numpy()


class ExactCoarse(_ByRows):
    """Exact Euclidean ranking on f_g over the whole gallery (no ANN index)."""

    name = "coarse"

    def __init__(self, q_global: np.ndarray, g_global: torch.Tensor) -> None:
        self.q_global, self.g_global = q_global, g_global

    def order(self, qi: int) -> tuple[np.ndarray, torch.Tensor]:
        """(N,) rows nearest first, and (N,) squared distances in row order."""
        return self.order_of(self.q_global[qi])

    def order_of(self, q: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """:meth:`order` of the f_g ``q`` (Dg,)."""
        d2 = squared_euclidean(torch.from_numpy(np.asarray(q)[None]), self.g_global)[0]
        return torch.argsort(d2, stable=True).numpy(), d2

    def rank(self, qi: int) -> np.ndarray:
        return self.order(qi)[0]


class ExactC2F(_ByRows):
    """C2F with an exact coarse stage: the top-``m`` of :class:`ExactCoarse` re-ranked by
    :func:`reidctl.rerank.rerank`, the search path's re-rank; then the query-time
    ``options`` if any, as :func:`reidctl.pipeline.search.c2f_options` applies them (the
    in-process counterpart of :class:`MilvusC2F`).

    ``tail="drop"`` ranks the M candidates only (as search returns them); ``"coarse"``
    appends the rest of the gallery in the query's coarse order.
    """

    def __init__(self, q_global: np.ndarray, q_local: np.ndarray, g_global: torch.Tensor,
                 g_local: np.ndarray, m: int, fine_weight: float, tail: str = "drop",
                 options: QueryOptions | None = None) -> None:
        self.coarse = ExactCoarse(q_global, g_global)
        self.q_global, self.q_local, self.g_local, self.m = q_global, q_local, g_local, m
        self.fine_weight, self.tail = fine_weight, tail
        self.options = options or QueryOptions()
        self.name = self.options.name

    def _c2f(self, qg: np.ndarray, ql: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M,) candidate rows re-ranked, and (N,) all rows in coarse order."""
        order, d2 = self.coarse.order_of(qg)
        cand = order[:self.m]  # (M,)
        coarse = d2[cand].sqrt().numpy()  # Euclidean, as the index returns it
        fine, _ = rerank(ql, self.g_local[cand], coarse_distances=coarse,
                         local_weight=self.fine_weight)
        return cand[fine], order

    def rank(self, qi: int) -> np.ndarray:
        qg, ql, opt = self.q_global[qi], self.q_local[qi], self.options
        ranked, order = self._c2f(qg, ql)
        if opt.qe:
            top = ranked[:opt.qe]
            ranked, _ = self._c2f(expand(qg, self.coarse.g_global[top].numpy()),
                                  expand(ql, self.g_local[top]))
        if opt.kreciprocal:
            fine, _ = kr_rerank(qg, ql, self.coarse.g_global[ranked].numpy(),
                                self.g_local[ranked], torch.device("cpu"),
                                local_weight=self.fine_weight, k1=opt.k1, k2=opt.k2,
                                lam=opt.lam)
            ranked = ranked[fine]
        if self.tail != "coarse":
            return ranked
        return np.concatenate([ranked, order[~np.isin(order, ranked)]])


class InMemoryC2F(_ByRows):
    """C2F in numpy over a gallery held in memory (f_g float32, f_l float16): exact
    coarse top-M from precomputed norms, then the fine distance. The benchmark's
    reference time for what Milvus adds; it ranks the first ``rows`` rows only, so one
    copy of the largest gallery serves every size."""

    name = "c2f in numpy"

    def __init__(self, q_global: np.ndarray, q_local: np.ndarray, g_global: np.ndarray,
                 g_local: np.ndarray, norms: np.ndarray, rows: int, m: int,
                 fine_weight: float) -> None:
        self.q_global, self.q_local = q_global, q_local
        self.g_global, self.g_local, self.norms = g_global[:rows], g_local, norms[:rows]
        self.rows, self.m, self.fine_weight = rows, min(m, rows), fine_weight

    def rank(self, qi: int) -> np.ndarray:
        qg, ql, mm = self.q_global[qi], self.q_local[qi], self.m
        d2 = self.norms - 2.0 * (self.g_global @ qg) + qg @ qg  # (rows,)
        idx = np.argpartition(d2, mm - 1)[:mm] if mm < self.rows else np.arange(self.rows)
        idx = idx[np.argsort(d2[idx], kind="stable")]  # (M,) coarse order
        dl = self.g_local[idx].astype(np.float32) - ql  # (M, Dl)
        fine = np.maximum(d2[idx], 0.0) + self.fine_weight * np.einsum("ij,ij->i", dl, dl)
        return idx[np.argsort(fine, kind="stable")]


class StreamedLinearScan:
    """The linear scan over a gallery too large for memory, streamed block by block.

    The first block is the labelled gallery, the others unlabelled images. Per query and
    block, the timed part computes the block's distances and merges its top-``top`` into
    the running top list (what a scan answering the query does); the untimed part counts,
    for each relevant image, the non-junk images closer to the query. That count is its
    position in the exact ranking, so no (Q x N) matrix is needed: memory is one block.
    """

    name = "linear"

    def __init__(self, q_global: np.ndarray, q_local: np.ndarray,
                 blocks: Iterable[tuple[np.ndarray, np.ndarray]], *, fine_weight: float,
                 top: int, device: torch.device, on_progress: ProgressFn | None = None) -> None:
        self.q_global, self.q_local, self.blocks = q_global, q_local, blocks
        self.fine_weight, self.top, self.device = fine_weight, top, device
        self.on_progress = on_progress

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def scan(self, truth: GroundTruth) -> tuple[list[np.ndarray], list[float]]:
        dev, nq = self.device, truth.num_queries
        good = [np.flatnonzero(g) for g in truth.good]  # (g_q,) rows per query
        junk = [np.flatnonzero(j) for j in truth.junk]
        ms = [0.0] * nq
        best = [torch.empty(0, device=dev) for _ in range(nq)]
        d_rel: list[torch.Tensor] = []
        counts = [torch.zeros(len(g), dtype=torch.int64, device=dev) for g in good]
        for b, (g_np, l_np) in enumerate(self.blocks):
            g = torch.from_numpy(g_np).to(dev)
            loc = torch.from_numpy(l_np).to(dev, torch.float32)
            for qi in range(nq):
                with Stopwatch(self._sync) as sw:
                    d = full_distances(self.q_global[qi], self.q_local[qi], g, loc,
                                       self.fine_weight)  # (B,)
                    k = min(self.top, d.numel())
                    merged = torch.cat([best[qi], torch.topk(d, k, largest=False)[0]])
                    best[qi] = torch.topk(merged, min(self.top, merged.numel()),
                                          largest=False)[0]
                ms[qi] += sw.ms
                if b == 0:  # the labelled block: relevant distances, junk out of the count
                    d_rel.append(d[torch.as_tensor(good[qi], device=dev)])
                    d = d.clone()
                    d[torch.as_tensor(junk[qi], device=dev)] = float("inf")
                counts[qi] += (d[:, None] < d_rel[qi][None, :]).sum(0)
            if self.on_progress:
                self.on_progress(len(g_np))
        return [c.cpu().numpy() for c in counts], ms
