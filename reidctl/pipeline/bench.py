"""Person-520K-style scale benchmark: the CUHK03 val gallery plus N synthetic distractors.

Queries are the val camera-A images, the gallery the val camera-B images plus N
distractors (:mod:`reidctl.data.distractors`, made from CUHK03 train). Each N has
its own collection pair, ``bench_<fingerprint>_<recipe key[:8]>_<N>``, holding the
gallery and distractors ``[0, N)``. Growing one pair through the sizes would insert
fewer rows (520K instead of 630K for the default sizes), but measuring a smaller N
afterwards means deleting rows, so every rerun or resumed run would delete and
re-insert hundreds of thousands; separate pairs are written once and then only read,
in any order. Distractor descriptors are cached in chunk files
(:class:`DistractorCache`), so an interrupted build resumes from the last complete
chunk and a rerun recomputes nothing; insertion resumes from the row count.

Per size: coarse (ANN top-M), C2F (top-M re-ranked with f_l fetched from Milvus)
and the linear scan with the full descriptor, computed in process over the gallery
streamed in blocks (memory bounded by one block, never a Q x N matrix); stage
latencies; batched throughput; peak RSS; the same C2F in numpy over an in-memory
gallery as a reference time.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reidctl.data import distractors as dx
from reidctl.data.datasets import Protocol
from reidctl.data.images import decode_hwc, read_bytes
from reidctl.errors import InputError
from reidctl.metrics import QueryScore, relevance, summarize
from reidctl.model import FeatureExtractor
from reidctl.pipeline.bench_cache import (
    CONSISTENCY,
    DEFAULT_CHUNK,
    F_L_DTYPE,
    DistractorCache,
    Features,
    extract_queries,
    gallery_features,
    grow,
)
from reidctl.pipeline.common import (
    DEFAULT_BATCH,
    ForwardStreams,
    ProgressFn,
    ensure_collection,
    hwc_batch,
)
from reidctl.pipeline.ingest import ingest
from reidctl.pipeline.search import Timings, coarse_search, fine_rerank
from reidctl.rerank import full_distances, rerank
from reidctl.store import MilvusStore
from reidctl.store.milvus import MAX_TOPK

DEFAULT_SIZES = (0, 10_000, 100_000, 520_000)
LINEAR_BLOCK = 16384  # gallery rows per block of the linear scan
QUERY_BLOCK = 16  # queries per request in the batched-throughput pass
METHODS = ("coarse", "c2f", "linear")

OpenPair = Callable[[str], MilvusStore]
StageFn = Callable[[str, int], ProgressFn]


def ap_from_positions(positions: Sequence[int] | np.ndarray, n_good: int) -> QueryScore:
    """A query's scores from the ranks of its relevant images, as ``score_ranking`` gives them.

    Args:
        positions: 0-based positions, in the ranking with junk removed, of the relevant
            images that were ranked (relevant images missing from it count as misses).
        n_good: relevant images in the whole gallery.
    """
    hits = np.sort(np.asarray(positions, dtype=np.int64))  # (h,)
    if hits.size > 1:  # equal distances: the relevant images take consecutive places
        hits = np.maximum.accumulate(hits - np.arange(hits.size)) + np.arange(hits.size)
    if n_good == 0:
        return QueryScore(float("nan"), float("nan"), -1, 0)
    if hits.size == 0:
        return QueryScore(0.0, 0.0, -1, n_good)
    i = np.arange(1, hits.size + 1, dtype=np.float64)
    precision = i / (hits + 1)
    old = np.where(hits == 0, 1.0, (i - 1) / np.maximum(hits, 1))
    return QueryScore(float(precision.sum() / n_good),
                      float(((old + precision) / 2).sum() / n_good), int(hits[0]), n_good)


@dataclass(frozen=True)
class Truth:
    """Per query: relevant and junk gallery rows (distractors are neither)."""

    good: list[np.ndarray]  # (g_q,) row indices into the gallery
    junk: list[np.ndarray]
    good_ids: list[set[str]]
    junk_ids: list[set[str]]


def truth(queries: Features, gallery: Features, junk_pids: frozenset[str]) -> Truth:
    pids = np.array([m.person_id for m in gallery.metas])
    cams = np.array([m.camera for m in gallery.metas])
    good, junk = [], []
    for q in queries.metas:
        g, j = relevance(q.person_id, q.camera, pids, cams, junk_pids)
        good.append(np.flatnonzero(g))
        junk.append(np.flatnonzero(j))
    ids = gallery.ids
    return Truth(good, junk, [{ids[i] for i in g} for g in good],
                 [{ids[i] for i in j} for j in junk])


def _positions(ranked_ids: Sequence[str], good: set[str], junk: set[str]) -> list[int]:
    out, pos = [], 0
    for pk in ranked_ids:
        if pk in junk:
            continue
        if pk in good:
            out.append(pos)
        pos += 1
    return out


def _pct(ms: Sequence[float]) -> dict[str, float]:
    return {"ms_p50": float(np.percentile(ms, 50)), "ms_p95": float(np.percentile(ms, 95))}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def linear_scan(queries: Features, gallery: Features, cache: DistractorCache, n: int,
                t: Truth, *, weight: float, top: int, device: torch.device,
                on_progress: ProgressFn | None = None) -> tuple[list[QueryScore], list[float]]:
    """Exact full-descriptor ranking of the gallery + distractors ``[0, n)``, block by block.

    Per query and block, the timed part computes the block's distances and merges its
    top-``top`` into the running top list (what a scan answering the query does); the
    untimed part counts, for each relevant image, the non-junk images closer to the
    query. That count is its 0-based position in the exact ranking (ties go to the
    relevant image), so AP needs no (Q x N) matrix: memory is one block.

    Returns:
        scores per query, scan milliseconds per query.
    """
    nq = len(queries.metas)
    ms = [0.0] * nq
    best = [torch.empty(0, device=device) for _ in range(nq)]
    d_rel: list[torch.Tensor] = []
    counts = [torch.zeros(len(g), dtype=torch.int64, device=device) for g in t.good]

    def blocks() -> Iterator[tuple[bool, np.ndarray, np.ndarray]]:
        yield True, gallery.f_g, gallery.f_l
        for _, g, loc in cache.blocks(n, LINEAR_BLOCK):
            yield False, g, loc

    for first, g_np, l_np in blocks():
        g = torch.from_numpy(g_np).to(device)
        loc = torch.from_numpy(l_np).to(device, torch.float32)
        for qi in range(nq):
            _sync(device)
            t0 = time.perf_counter()
            d = full_distances(queries.f_g[qi], queries.f_l[qi], g, loc, weight)  # (B,)
            merged = torch.cat([best[qi], torch.topk(d, min(top, d.numel()), largest=False)[0]])
            best[qi] = torch.topk(merged, min(top, merged.numel()), largest=False)[0]
            _sync(device)
            ms[qi] += (time.perf_counter() - t0) * 1e3
            if first:
                d_rel.append(d[torch.as_tensor(t.good[qi], device=device)])
                d = d.clone()
                d[torch.as_tensor(t.junk[qi], device=device)] = float("inf")
            counts[qi] += (d[:, None] < d_rel[qi][None, :]).sum(0)
        if on_progress:
            on_progress(len(g_np))
    return [ap_from_positions(c.cpu().numpy(), len(g)) for c, g in zip(counts, t.good,
                                                                       strict=True)], ms


def _batched_qps(store: MilvusStore, queries: Features, m: int, weight: float,
                 device: torch.device) -> float:
    """Queries per second of C2F run on blocks of queries: one ANN request and one
    f_l fetch per block, then a re-rank per query."""
    nq = len(queries.metas)
    t0 = time.perf_counter()
    for s in range(0, nq, QUERY_BLOCK):
        hits = store.search(queries.f_g[s:s + QUERY_BLOCK], m, consistency=CONSISTENCY,
                            with_meta=False)
        ids = list(dict.fromkeys(pk for rows in hits for pk, _, _ in rows))
        f_l = store.fetch_local(ids, consistency=CONSISTENCY)  # (U, Dl)
        row = {pk: i for i, pk in enumerate(ids)}
        for j, rows in enumerate(hits):
            cand = f_l[[row[pk] for pk, _, _ in rows]]
            rerank(queries.f_l[s + j], cand, device,
                   coarse_distances=np.array([d for _, d, _ in rows], np.float32),
                   local_weight=weight)
    return nq / (time.perf_counter() - t0)


def measure(store: MilvusStore, queries: Features, gallery: Features, cache: DistractorCache,
            n: int, t: Truth, *, m: int, weight: float, device: torch.device,
            stage: Callable[[str, int], ProgressFn | None]) -> dict:
    """Coarse, C2F and linear-scan scores and latencies at N = ``n`` (see module doc)."""
    size = len(gallery.ids) + n
    m = min(m, size, MAX_TOPK)
    nq = len(queries.metas)
    scores: dict[str, list[QueryScore]] = {k: [] for k in METHODS}
    times: dict[str, list[float]] = {k: [] for k in METHODS}
    stages: dict[str, list[float]] = {"coarse": [], "fetch": [], "rerank": []}
    advance = stage(f"search N={n}", nq)
    for qi in range(nq):
        timings = Timings()
        t0 = time.perf_counter()
        cands = coarse_search(store, queries.f_g[qi], m, consistency=CONSISTENCY,
                              with_meta=False)
        timings.coarse = (time.perf_counter() - t0) * 1e3
        fine = fine_rerank(store, queries.f_l[qi], cands, device, fine_weight=weight,
                           consistency=CONSISTENCY, timings=timings)
        for name, ranked in (("coarse", cands), ("c2f", fine)):
            pos = _positions([c.id for c in ranked], t.good_ids[qi], t.junk_ids[qi])
            scores[name].append(ap_from_positions(pos, len(t.good[qi])))
        times["coarse"].append(timings.coarse)
        times["c2f"].append(timings.total)
        for name in stages:
            stages[name].append(getattr(timings, name))
        if advance:
            advance(1)
    qps = _batched_qps(store, queries, m, weight, device)
    scores["linear"], times["linear"] = linear_scan(
        queries, gallery, cache, n, t, weight=weight, top=m, device=device,
        on_progress=stage(f"linear scan N={n}", size))
    methods = {}
    for k in METHODS:
        s = summarize(scores[k])
        methods[k] = {"mAP": s["mAP"], "rank1": s["rank1"], **_pct(times[k]),
                      "mAP_trapz": s["mAP_trapz"], "rank5": s["rank5"], "rank10": s["rank10"]}
    p50 = {k: float(np.percentile(v, 50)) for k, v in stages.items()}
    return {"n_distractors": n, "gallery_size": size, "num_queries": nq, "M": m,
            "methods": methods,
            "stages_ms_p50": {"extract": float(np.percentile(queries.extract_ms, 50)), **p50},
            "queries_per_s": qps, "peak_rss_mb": peak_rss_mb()}


def inprocess_c2f(queries: Features, gallery: Features, cache: DistractorCache,
                  sizes: Sequence[int], t: Truth, *, m: int, weight: float,
                  on_progress: ProgressFn | None = None) -> dict[int, dict]:
    """C2F in numpy over an in-memory gallery (f_g float32, f_l float16): exact coarse
    top-M, then the same re-rank. Holds the largest gallery: (Dg * 4 + Dl * 2) B per row.

    Returns:
        per size: {"ms_p50", "ms_p95", "mAP"}.
    """
    ng, nmax = len(gallery.ids), max(sizes)
    big_g = np.empty((ng + nmax, gallery.f_g.shape[1]), np.float32)
    big_l = np.empty((ng + nmax, gallery.f_l.shape[1]), np.float16)
    big_g[:ng], big_l[:ng] = gallery.f_g, gallery.f_l
    for start, g, loc in cache.blocks(nmax, LINEAR_BLOCK):
        big_g[ng + start:ng + start + len(g)], big_l[ng + start:ng + start + len(g)] = g, loc
    norms = (big_g * big_g).sum(1)  # (N,)
    out = {}
    for n in sizes:
        rows, ms, scores = ng + n, [], []
        mm = min(m, rows)
        for qi in range(len(queries.metas)):
            qg, ql = queries.f_g[qi], queries.f_l[qi]
            t0 = time.perf_counter()
            d2 = norms[:rows] - 2.0 * (big_g[:rows] @ qg) + qg @ qg  # (rows,)
            idx = np.argpartition(d2, mm - 1)[:mm] if mm < rows else np.arange(rows)
            idx = idx[np.argsort(d2[idx], kind="stable")]  # (M,) coarse order
            dl = big_l[idx].astype(np.float32) - ql  # (M, Dl)
            fine = np.maximum(d2[idx], 0.0) + weight * np.einsum("ij,ij->i", dl, dl)
            ranked = idx[np.argsort(fine, kind="stable")]
            ms.append((time.perf_counter() - t0) * 1e3)
            kept = ranked[~np.isin(ranked, t.junk[qi])]
            scores.append(ap_from_positions(np.flatnonzero(np.isin(kept, t.good[qi])),
                                            len(t.good[qi])))
            if on_progress:
                on_progress(1)
        out[n] = _pct(ms) | {"mAP": summarize(scores)["mAP"]}
    return out


INGEST_ROUNDS = 5  # forward / ingest rounds of the ingest-throughput measurement


def forward_rate(extractor: FeatureExtractor, batches: Sequence[torch.Tensor],
                 streams: ForwardStreams | None = None) -> float:
    """Images/s of the bare forward pass over ``batches``: one batch at a time on all torch
    threads (``streams`` None, as eval and search run it), or in ingest's ``streams``."""
    t0 = time.perf_counter()
    if streams is None:
        for b in batches:
            extractor.extract(b)
    else:
        for f in [streams.submit(b) for b in batches]:
            f.result()
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def ingest_throughput(scratch: MilvusStore, extractor: FeatureExtractor, files: Sequence[Path],
                      batch_size: int = DEFAULT_BATCH, rounds: int = INGEST_ROUNDS,
                      on_progress: ProgressFn | None = None) -> dict:
    """Images/s of the real ingest path into an empty scratch pair (created before each
    round, dropped after) against the bare forward pass on the same images, decoded and
    batched beforehand in the layout ingest feeds the model.

    The forward pass is timed both ways the model can run batches: one at a time on all
    torch threads (as eval and search do), and in the parallel streams ingest uses; the
    faster is the baseline ("forward_images_per_s"). Forward and ingest alternate for
    ``rounds`` rounds and the best round of each counts: on a shared 2-core machine one
    timing swings by 20% from one run to the next, and the best of a few is the stable
    estimate of what the code can do (every round is in the result).
    """
    size = extractor.input_size
    images = [decode_hwc(read_bytes(f)[1], size) for f in files]
    batches = [hwc_batch(images[s:s + batch_size]) for s in range(0, len(images), batch_size)]
    del images
    extractor.extract(batches[0])  # warm-up, untimed
    one: list[float] = []
    streamed: list[float] = []
    ingested: list[float] = []
    with ForwardStreams(extractor) as streams:
        for f in [streams.submit(b) for b in batches[:streams.streams]]:
            f.result()  # warm-up of each stream, untimed
        for _ in range(rounds):
            one.append(forward_rate(extractor, batches))
            streamed.append(forward_rate(extractor, batches, streams))
            if scratch.exists():
                scratch.drop()
            ensure_collection(scratch, extractor)
            try:
                report = ingest(list(files), scratch, extractor, batch_size=batch_size,
                                on_progress=on_progress)
            finally:
                scratch.drop()
            ingested.append(report.computed / report.seconds)
    return {"images_per_s": max(ingested), "forward_images_per_s": max(one + streamed),
            "images": len(files), "batch_size": batch_size, "rounds": rounds,
            "forward_streams": streams.streams,
            "images_per_s_rounds": [round(v, 1) for v in ingested],
            "forward_one_batch_images_per_s_rounds": [round(v, 1) for v in one],
            "forward_streams_images_per_s_rounds": [round(v, 1) for v in streamed]}


def evenly(items: Sequence, k: int | None) -> list:
    """``k`` items spread evenly over ``items`` (all of them when ``k`` is None or larger)."""
    if k is None or k >= len(items):
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def prepare(protocol: Protocol, train_files: Sequence[Path], extractor: FeatureExtractor, *,
            cache_dir: Path, n: int, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
            on_progress: ProgressFn | None = None) -> dict:
    """Fill the descriptor cache up to ``n`` distractors (and the gallery), nothing else.

    The long part of a first benchmark run, on its own: resumable chunk by chunk, so it
    can be spread over several runs before any database is involved.

    Returns:
        ``{"cache", "n", "chunks_computed", "chunks", "seconds", "images_per_s"}``.
    """
    if n < 0:
        raise InputError(f"distractor count must be >= 0, got {n}")
    cache = DistractorCache(cache_dir, extractor, train_files, seed, chunk_size)
    t0 = time.perf_counter()
    gallery_features(cache, protocol.gallery, None)
    if on_progress is not None:  # what earlier runs left counts as done
        on_progress(max(0, n - len(cache.missing(n)) * chunk_size))
    computed = cache.ensure(n, on_progress)
    seconds = time.perf_counter() - t0
    return {"cache": str(cache.folder), "n": n, "chunks_computed": len(computed),
            "chunks": len(cache.chunks(n)), "seconds": round(seconds, 1),
            "images_per_s": round(len(computed) * chunk_size / seconds, 1) if computed else None}


def run_bench(
    protocol: Protocol, train_files: Sequence[Path], extractor: FeatureExtractor,
    open_pair: OpenPair, *, cache_dir: Path, backend: str, device: torch.device,
    sizes: Sequence[int] = DEFAULT_SIZES, m: int = 500, seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK, max_queries: int | None = None, ingest_sample: int = 512,
    on_stage: StageFn | None = None,
) -> dict:
    """The benchmark (see the module doc).

    Args:
        protocol: queries and base gallery (CUHK03 val: camera A against camera B).
        train_files: the distractors' source images (CUHK03 train, disjoint identities).
        open_pair: opens a collection pair by name on the chosen Milvus.
        cache_dir: the model's cache folder (chunks, manifest, gallery descriptors).
        sizes: distractor counts N, measured in increasing order.
        max_queries: use this many queries, spread evenly (all when None).
        ingest_sample: train images for the ingest-throughput measurement (0: skip).
        on_stage: called with (stage, total steps); returns a progress callback.

    Returns:
        ``{"runs": [run per N], "ingest": {"images_per_s", "forward_images_per_s",
        "images", "batch_size"}, "protocol", "model", "collections", "uri", "M",
        "fine_distance", "distractors": {...}, "cache": {...}}``; a run is
        ``{"backend", "collection", "n_distractors", "gallery_size", "num_queries", "M",
        "methods": {"coarse" | "c2f" | "linear": {"mAP", "rank1", "ms_p50", "ms_p95",
        "mAP_trapz", "rank5", "rank10"}}, "stages_ms_p50": {"extract", "coarse", "fetch",
        "rerank"}, "queries_per_s", "peak_rss_mb", "inserted", "insert_seconds",
        "inprocess_c2f_ms_p50", "inprocess_c2f_ms_p95", "inprocess_c2f_mAP"}``.
        Percentages 0-100, times in ms per query; retrieval times exclude the query's
        feature extraction ("extract"). ``peak_rss_mb`` is this process's peak so far
        (with Milvus Lite it includes the embedded database); the in-process reference
        runs after every size is measured, so its gallery copy is not in it.
    """
    def stage(name: str, total: int) -> ProgressFn | None:
        """A progress callback whose bar appears on its first step (none for cached work)."""
        if on_stage is None or total <= 0:
            return None
        bar: list[ProgressFn] = []

        def advance(k: int) -> None:
            if not bar:
                bar.append(on_stage(name, total))
            bar[0](k)
        return advance

    sizes = sorted(set(int(n) for n in sizes))
    if not sizes or sizes[0] < 0:
        raise InputError(f"distractor counts must be >= 0, got {sizes}")
    if not 1 <= m <= MAX_TOPK:
        raise InputError(f"M must be in 1..{MAX_TOPK}, got {m}")
    fp = extractor.fingerprint
    cache = DistractorCache(cache_dir, extractor, train_files, seed, chunk_size)
    ingest_rep = {"images_per_s": None, "forward_images_per_s": None, "images": 0}
    if ingest_sample > 0:
        sample = evenly(list(train_files), ingest_sample)
        with open_pair(f"bench_ingest_{fp}") as scratch:
            ingest_rep = ingest_throughput(
                scratch, extractor, sample,
                on_progress=stage("ingest throughput", INGEST_ROUNDS * len(sample)))
    qmetas = evenly(protocol.queries, max_queries)
    queries = extract_queries(extractor, qmetas, stage("extract queries", len(qmetas)))
    gallery = gallery_features(cache, protocol.gallery,
                               stage("extract gallery", len(protocol.gallery)))
    t = truth(queries, gallery, protocol.junk_person_ids)
    prefix = f"bench_{fp}_{cache.key[:8]}"
    runs, computed = [], []
    w = extractor.fine_weight
    for n in sizes:
        todo = cache.missing(n)
        computed += cache.ensure(n, stage(f"distractors to N={n}", len(todo) * chunk_size))
        with open_pair(f"{prefix}_{n}") as store:
            g = grow(store, extractor, cache, gallery, n, stage(f"insert N={n}", n))
            run = {"backend": backend, "collection": store.name}
            run |= measure(store, queries, gallery, cache, n, t, m=m, weight=w, device=device,
                           stage=stage)
            run |= {"inserted": g.inserted, "insert_seconds": g.seconds}
            uri = store.uri
        runs.append(run)
    ref = inprocess_c2f(queries, gallery, cache, sizes, t, m=m, weight=w,
                        on_progress=stage("in-process C2F", len(sizes) * len(qmetas)))
    for run in runs:
        r = ref[run["n_distractors"]]
        run |= {"inprocess_c2f_ms_p50": r["ms_p50"], "inprocess_c2f_ms_p95": r["ms_p95"],
                "inprocess_c2f_mAP": r["mAP"]}
    return {
        "runs": runs, "ingest": ingest_rep, "protocol": protocol.description,
        "model": fp, "collections": f"{prefix}_<N>", "uri": uri, "M": m,
        "fine_distance": f"sqrt(d_g^2 + {w:g} * d_l^2)",
        "distractors": {"recipe": dx.RECIPE_VERSION, "key": cache.key, "seed": seed,
                        "source_images": len(train_files)},
        "cache": {"dir": str(cache.folder), "chunk_size": cache.chunk_size,
                  "chunks_computed": computed, "f_l_dtype": F_L_DTYPE,
                  "f_l_max_abs_err": cache.max_error(max(sizes))},
    }
