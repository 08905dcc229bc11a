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
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from reidctl.data import distractors as dx
from reidctl.data.batches import hwc_batch
from reidctl.data.datasets import Protocol
from reidctl.data.images import decode_hwc, read_file
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor
from reidctl.pipeline.bench_cache import (
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
)
from reidctl.pipeline.ingest import ingest
from reidctl.pipeline.protocol import GroundTruth, run_protocol
from reidctl.pipeline.rankers import InMemoryC2F, MilvusC2F, MilvusCoarse, StreamedLinearScan
from reidctl.pipeline.reports import BenchReport, BenchRun, MethodReport, PrepareReport
from reidctl.pipeline.stages import StageFn, stage_opener
from reidctl.rerank import rerank
from reidctl.store import MAX_TOPK, MilvusStore
from reidctl.timing import Stopwatch

DEFAULT_SIZES = (0, 10_000, 100_000, 520_000)
LINEAR_BLOCK = 16384  # gallery rows per block of the linear scan
QUERY_BLOCK = 16  # queries per request in the batched-throughput pass

OpenPair = Callable[[str], MilvusStore]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def ground_truth(queries: Features, gallery: Features, junk_pids: frozenset[str]) -> GroundTruth:
    """Relevance over the labelled gallery (distractors are neither relevant nor junk)."""
    return GroundTruth.from_metas(queries.metas, gallery.metas, junk_pids)


def _batched_qps(store: MilvusStore, queries: Features, m: int, weight: float,
                 device: torch.device) -> float:
    """Queries per second of C2F run on blocks of queries: one ANN request and one
    f_l fetch per block, then a re-rank per query."""
    nq = len(queries.metas)
    with Stopwatch() as sw:
        for s in range(0, nq, QUERY_BLOCK):
            hits = store.search(queries.f_g[s:s + QUERY_BLOCK], m, with_meta=False)
            ids = list(dict.fromkeys(h.id for per_query in hits for h in per_query))
            f_l = store.fetch_local(ids)  # (U, Dl)
            row = {pk: i for i, pk in enumerate(ids)}
            for j, per_query in enumerate(hits):
                cand = f_l[[row[h.id] for h in per_query]]
                rerank(queries.f_l[s + j], cand, device,
                       coarse_distances=np.array([h.distance for h in per_query], np.float32),
                       local_weight=weight)
    return nq / sw.seconds


def measure(store: MilvusStore, queries: Features, gallery: Features, cache: DistractorCache,
            n: int, truth: GroundTruth, *, m: int, weight: float, device: torch.device,
            stage: Callable[[str, int], ProgressFn | None]) -> BenchRun:
    """Coarse, C2F and linear-scan scores and latencies at N = ``n`` (see module doc);
    ``backend``, ``inserted`` and ``insert_seconds`` are left for the caller."""
    size = len(gallery.ids) + n
    m = min(m, size, MAX_TOPK)
    index = {pk: i for i, pk in enumerate(gallery.ids)}
    fine = MilvusC2F(store, queries.f_g, queries.f_l, m, index, device, fine_weight=weight)
    # the labelled block first, then the distractors, read one block at a time
    blocks = chain([(gallery.f_g, gallery.f_l)],
                   ((g, loc) for _, g, loc in cache.blocks(n, LINEAR_BLOCK)))
    scan = StreamedLinearScan(
        queries.f_g, queries.f_l, blocks, fine_weight=weight, top=m, device=device,
        on_progress=stage(f"linear scan N={n}", size))
    advance = stage(f"search N={n}", truth.num_queries)
    methods = run_protocol(truth, [MilvusCoarse(store, queries.f_g, m, index), fine],
                           [scan], on_query=(lambda _qi: advance(1)) if advance else None)
    return BenchRun(
        backend="", collection=store.name, n_distractors=n, gallery_size=size,
        num_queries=truth.num_queries, M=m, methods=methods,
        stages_ms_p50={"extract": float(np.percentile(queries.extract_ms, 50)),
                       **fine.stages.p50("coarse", "fetch", "rerank")},
        queries_per_s=_batched_qps(store, queries, m, weight, device),
        peak_rss_mb=peak_rss_mb(), inserted=0, insert_seconds=0.0)


def inprocess_c2f(queries: Features, gallery: Features, cache: DistractorCache,
                  sizes: Sequence[int], truth: GroundTruth, *, m: int, weight: float,
                  on_progress: ProgressFn | None = None) -> dict[int, MethodReport]:
    """C2F in numpy over an in-memory gallery (:class:`InMemoryC2F`) at each size. Holds
    the largest gallery: (Dg * 4 + Dl * 2) B per row.

    Returns:
        per size: the report (its mAP and times are what the benchmark gives).
    """
    ng, nmax = len(gallery.ids), max(sizes)
    big_g = np.empty((ng + nmax, gallery.f_g.shape[1]), np.float32)
    big_l = np.empty((ng + nmax, gallery.f_l.shape[1]), np.float16)
    big_g[:ng], big_l[:ng] = gallery.f_g, gallery.f_l
    for start, g, loc in cache.blocks(nmax, LINEAR_BLOCK):
        big_g[ng + start:ng + start + len(g)], big_l[ng + start:ng + start + len(g)] = g, loc
    norms = (big_g * big_g).sum(1)  # (N,)
    on_query = (lambda _qi: on_progress(1)) if on_progress else None
    out = {}
    for n in sizes:
        ranker = InMemoryC2F(queries.f_g, queries.f_l, big_g, big_l, norms, ng + n, m, weight)
        out[n] = run_protocol(truth, [ranker], on_query=on_query)[ranker.name]
    return out


INGEST_ROUNDS = 5  # forward / ingest rounds of the ingest-throughput measurement


def forward_rate(extractor: FeatureExtractor, batches: Sequence[torch.Tensor],
                 streams: ForwardStreams | None = None) -> float:
    """Images/s of the bare forward pass over ``batches``: one batch at a time on all torch
    threads (``streams`` None, as eval and search run it), or in ingest's ``streams``."""
    with Stopwatch() as sw:
        if streams is None:
            for b in batches:
                extractor.extract(b)
        else:
            for f in [streams.submit(b) for b in batches]:
                f.result()
    return sum(len(b) for b in batches) / sw.seconds


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
    images = [decode_hwc(read_file(f), size) for f in files]
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
            on_progress: ProgressFn | None = None) -> PrepareReport:
    """Fill the descriptor cache up to ``n`` distractors (and the gallery), nothing else.

    The long part of a first benchmark run, on its own: resumable chunk by chunk, so it
    can be spread over several runs before any database is involved.

    Returns:
        The cache folder, chunks computed now and in all, time and rate.
    """
    if n < 0:
        raise InputError(f"distractor count must be >= 0, got {n}")
    cache = DistractorCache(cache_dir, extractor, train_files, seed, chunk_size)
    with Stopwatch() as sw:
        gallery_features(cache, protocol.gallery, None)
        if on_progress is not None:  # what earlier runs left counts as done
            on_progress(max(0, n - len(cache.missing(n)) * chunk_size))
        computed = cache.ensure(n, on_progress)
    return PrepareReport(
        cache=str(cache.folder), n=n, chunks_computed=len(computed), chunks=len(cache.chunks(n)),
        seconds=round(sw.seconds, 1),
        images_per_s=round(len(computed) * chunk_size / sw.seconds, 1) if computed else None)


def run_bench(
    protocol: Protocol, train_files: Sequence[Path], extractor: FeatureExtractor,
    open_pair: OpenPair, *, cache_dir: Path, backend: str, device: torch.device,
    sizes: Sequence[int] = DEFAULT_SIZES, m: int = 500, seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK, max_queries: int | None = None, ingest_sample: int = 512,
    on_stage: StageFn | None = None,
) -> BenchReport:
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
        The report: a run per N (coarse, C2F and linear-scan accuracy and latency, C2F
        stages, batched throughput, peak RSS, rows inserted, the in-process C2F reference)
        and the ingest throughput, distractor recipe and cache. Retrieval times exclude
        the query's feature extraction (stage "extract"). ``peak_rss_mb`` is this
        process's peak so far (with Milvus Lite it includes the embedded database); the
        in-process reference runs after every size is measured, so its gallery copy is
        not in it.
    """
    stage = stage_opener(on_stage, lazy=True)  # cached work shows no bar
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
    truth = ground_truth(queries, gallery, protocol.junk_person_ids)
    prefix = f"bench_{fp}_{cache.key[:8]}"
    runs, computed = [], []
    w = extractor.fine_weight
    for n in sizes:
        todo = cache.missing(n)
        computed += cache.ensure(n, stage(f"distractors to N={n}", len(todo) * chunk_size))
        with open_pair(f"{prefix}_{n}") as store:
            g = grow(store, extractor, cache, gallery, n, stage(f"insert N={n}", n))
            run = measure(store, queries, gallery, cache, n, truth, m=m, weight=w,
                          device=device, stage=stage)
            runs.append(replace(run, backend=backend, inserted=g.inserted,
                                insert_seconds=g.seconds))
            uri = store.uri
    ref = inprocess_c2f(queries, gallery, cache, sizes, truth, m=m, weight=w,
                        on_progress=stage("in-process C2F", len(sizes) * len(qmetas)))
    return BenchReport(
        runs=[replace(run, inprocess_c2f=ref[run.n_distractors]) for run in runs],
        ingest=ingest_rep, protocol=protocol.description, model=fp,
        collections=f"{prefix}_<N>", uri=uri, M=m, fine_distance=f"sqrt(d_g^2 + {w:g} * d_l^2)",
        distractors={"recipe": dx.RECIPE_VERSION, "key": cache.key, "seed": seed,
                     "source_images": len(train_files)},
        cache={"dir": str(cache.folder), "chunk_size": cache.chunk_size,
               "chunks_computed": computed, "f_l_dtype": F_L_DTYPE,
               "f_l_max_abs_err": cache.max_error(max(sizes))})
