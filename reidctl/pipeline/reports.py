"""Typed results of evaluation and the benchmark; ``to_dict()`` is their ``--json`` form.

Percentages are 0-100 and times milliseconds per query throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from reidctl.metrics import QueryScore, summarize
from reidctl.pipeline.ingest import IngestReport
from reidctl.timing import percentiles

# the keys and order of a method's figures in eval's and in bench's JSON
EVAL_METHOD_KEYS = ("mAP", "mAP_trapz", "rank1", "rank5", "rank10", "num_valid_queries",
                    "ms_p50", "ms_p95")
BENCH_METHOD_KEYS = ("mAP", "rank1", "ms_p50", "ms_p95", "mAP_trapz", "rank5", "rank10")


@dataclass(frozen=True)
class MethodReport:
    """One method's accuracy and latency over a protocol's queries.

    Attributes:
        mAP: non-interpolated mAP; mAP_trapz: Market-1501's trapezoidal mAP.
        rank1, rank5, rank10: multi-shot CMC.
        num_valid_queries: queries with a relevant gallery image (the others are not scored).
        ms_p50, ms_p95: retrieval time per query.
        single_shot: CUHK03 single-shot CMC ``{"rank1", "rank5", "rank10"}``, when computed.
    """

    mAP: float
    mAP_trapz: float
    rank1: float
    rank5: float
    rank10: float
    num_valid_queries: int
    ms_p50: float
    ms_p95: float
    single_shot: dict[str, float] | None = None

    @classmethod
    def from_scores(cls, scores: list[QueryScore], ms: Sequence[float],
                    single_shot: dict[str, float] | None = None) -> MethodReport:
        """Summarises per-query scores and times (:func:`reidctl.metrics.summarize`)."""
        s = summarize(scores)
        return cls(s["mAP"], s["mAP_trapz"], s["rank1"], s["rank5"], s["rank10"],
                   s["num_valid_queries"], **percentiles(ms), single_shot=single_shot)

    def to_dict(self, keys: Sequence[str] = EVAL_METHOD_KEYS) -> dict:
        """The figures named by ``keys``, then ``"single_shot"`` when there is one."""
        out = {k: getattr(self, k) for k in keys}
        return out | ({"single_shot": dict(self.single_shot)} if self.single_shot else {})


def _methods(methods: dict[str, MethodReport], keys: Sequence[str]) -> dict[str, dict]:
    return {name: m.to_dict(keys) for name, m in methods.items()}


@dataclass(frozen=True)
class EvalReport:
    """What ``reidctl eval`` reports (see :func:`reidctl.pipeline.evaluate.evaluate`).

    Attributes:
        model: the extractor's description.
        M: coarse candidates re-ranked (capped by the gallery size).
        extract_ms_per_query: query feature extraction, not in the retrieval times.
        c2f_stages_ms_p50: ``{"coarse", "fetch", "rerank"}`` medians of C2F.
        examples: C2F top hits of sample queries (for pictures), when asked for.
        open_set: true- and false-match rates at the threshold, when there is one.
        grid: the picture drawn from ``examples``, once drawn.
        query_options: the settings of the query-time methods scored (``c2f+qe`` ...),
            None when none was asked for.
    """

    dataset: str
    protocol: str
    gallery_size: int
    num_queries: int
    model: dict
    M: int
    collection: str
    extract_ms_per_query: float
    c2f_stages_ms_p50: dict[str, float]
    fine_distance: str
    ingest: IngestReport
    methods: dict[str, MethodReport]
    examples: list[dict] | None = None
    open_set: dict | None = None
    grid: str | None = None
    query_options: str | None = None

    def to_dict(self) -> dict:
        """The ``--json`` object."""
        out = {
            "dataset": self.dataset, "protocol": self.protocol,
            "gallery_size": self.gallery_size, "num_queries": self.num_queries,
            "model": self.model, "M": self.M, "collection": self.collection,
            "extract_ms_per_query": self.extract_ms_per_query,
            "c2f_stages_ms_p50": dict(self.c2f_stages_ms_p50),
            "fine_distance": self.fine_distance, "ingest": self.ingest.to_dict(),
            "methods": _methods(self.methods, EVAL_METHOD_KEYS),
        }
        extra = {"examples": self.examples, "open_set": self.open_set, "grid": self.grid,
                 "query_options": self.query_options}
        return out | {k: v for k, v in extra.items() if v is not None}


@dataclass(frozen=True)
class BenchRun:
    """The benchmark at one distractor count N.

    Attributes:
        stages_ms_p50: ``{"extract", "coarse", "fetch", "rerank"}`` medians (C2F stages and
            the query's feature extraction).
        queries_per_s: C2F throughput on blocks of queries.
        peak_rss_mb: this process's peak resident memory so far.
        inserted, insert_seconds: rows this run wrote into its collection pair.
        inprocess_c2f: the same C2F in numpy over an in-memory gallery (mAP and times only
            are reported), once measured.
    """

    backend: str
    collection: str
    n_distractors: int
    gallery_size: int
    num_queries: int
    M: int
    methods: dict[str, MethodReport]
    stages_ms_p50: dict[str, float]
    queries_per_s: float
    peak_rss_mb: float
    inserted: int
    insert_seconds: float
    inprocess_c2f: MethodReport | None = None

    def to_dict(self) -> dict:
        """One entry of the ``--json`` object's ``"runs"``."""
        out = {
            "backend": self.backend, "collection": self.collection,
            "n_distractors": self.n_distractors, "gallery_size": self.gallery_size,
            "num_queries": self.num_queries, "M": self.M,
            "methods": _methods(self.methods, BENCH_METHOD_KEYS),
            "stages_ms_p50": dict(self.stages_ms_p50), "queries_per_s": self.queries_per_s,
            "peak_rss_mb": self.peak_rss_mb, "inserted": self.inserted,
            "insert_seconds": self.insert_seconds,
        }
        if self.inprocess_c2f is not None:
            r = self.inprocess_c2f
            out |= {"inprocess_c2f_ms_p50": r.ms_p50, "inprocess_c2f_ms_p95": r.ms_p95,
                    "inprocess_c2f_mAP": r.mAP}
        return out


@dataclass(frozen=True)
class BenchReport:
    """What ``reidctl bench`` reports (see :func:`reidctl.pipeline.bench.run_bench`).

    Attributes:
        runs: one per distractor count, increasing.
        ingest: ingest and bare-forward throughput (``{"images_per_s",
            "forward_images_per_s", "images", ...}``; rates None when skipped).
        model: the model fingerprint; collections: the pairs' name pattern.
        distractors: ``{"recipe", "key", "seed", "source_images"}``.
        cache: ``{"dir", "chunk_size", "chunks_computed", "f_l_dtype", "f_l_max_abs_err"}``.
        plot: the picture of the runs, once drawn.
    """

    runs: list[BenchRun]
    ingest: dict
    protocol: str
    model: str
    collections: str
    uri: str
    M: int
    fine_distance: str
    distractors: dict
    cache: dict
    plot: str | None = None

    def to_dict(self) -> dict:
        """The ``--json`` object."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}  # in field order
        out["runs"] = [r.to_dict() for r in self.runs]
        return out if self.plot is not None else {k: v for k, v in out.items() if k != "plot"}


@dataclass(frozen=True)
class PrepareReport:
    """What ``reidctl bench --prepare`` did to the distractor cache."""

    cache: str
    n: int
    chunks_computed: int
    chunks: int
    seconds: float
    images_per_s: float | None = None

    def to_dict(self) -> dict:
        """The ``--json`` object."""
        return asdict(self)
