"""Evaluation: a dataset protocol through the same search path, against the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reidctl.data.datasets import Protocol
from reidctl.data.images import content_id
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor
from reidctl.openset import operating_point, scores_from_ranking
from reidctl.pipeline.common import DEFAULT_BATCH, extract_files, model_record
from reidctl.pipeline.ingest import IngestReport, ingest
from reidctl.pipeline.protocol import GroundTruth, run_protocol
from reidctl.pipeline.rankers import ExactLinear, MilvusC2F, MilvusCoarse
from reidctl.pipeline.reports import EvalReport
from reidctl.pipeline.search import to_hits, with_metadata
from reidctl.pipeline.stages import StageFn, stage_opener
from reidctl.query_opts import QueryOptions
from reidctl.store import MilvusStore
from reidctl.timing import Stopwatch
from reidctl.types import ImageMeta


@dataclass(frozen=True)
class Gallery:
    """The stored gallery, read back from the database for scoring and the linear scan."""

    ids: list[str]
    metas: list[ImageMeta]  # (N,) as stored: path, person, camera, source
    f_g: torch.Tensor  # (N, Dg)
    f_l: torch.Tensor  # (N, Dl)


def read_gallery(store: MilvusStore, device: torch.device) -> Gallery:
    """Streams the collection pair into memory (evaluation only, never the search path),
    sorted by id so that seeded draws (single-shot CMC) do not depend on how the
    backend orders its segments."""
    ids: list[str] = []
    metas: list[ImageMeta] = []
    gs: list[np.ndarray] = []
    ls: list[np.ndarray] = []
    for batch in store.iterate(with_vectors=True, fresh=True):
        ids.extend(batch["id"])
        metas.extend(ImageMeta(path=m["path"], person_id=m["person_id"], camera=m["camera"],
                               source=m["source"]) for m in batch["meta"])
        gs.append(batch["f_g"])
        ls.append(batch["f_l"])
    order = np.argsort(np.array(ids), kind="stable")  # by id: independent of storage order
    return Gallery(
        [ids[i] for i in order], [metas[i] for i in order],
        torch.from_numpy(np.concatenate(gs)[order]).to(device),
        torch.from_numpy(np.concatenate(ls)[order]).to(device),
    )


def scoring_order(gallery: Sequence[ImageMeta]) -> list[ImageMeta]:
    """``gallery`` in the order :func:`evaluate` scores it, that of :func:`read_gallery`:
    by primary key, the sha256 of the file bytes (:func:`reidctl.data.images.content_id`).

    Rankings and mAP do not depend on the order; the seeded single-shot CMC draws (one
    image per identity) do. For scoring the same gallery elsewhere (in process).
    """
    return sorted(gallery, key=lambda m: content_id(Path(m.path)))


def default_collection(dataset: str, extractor: FeatureExtractor) -> str:
    """The collection pair eval makes for a dataset and model."""
    return f"eval_{dataset}_{extractor.fingerprint}"


def claim_pair(store: MilvusStore, extractor: FeatureExtractor, dataset: str) -> None:
    """Creates the pair for evaluating ``dataset``, or checks that eval made it.

    Evaluation ingests its gallery and scores against everything the pair holds, so it
    must never write into a pair it did not create for itself (a production gallery
    named by ``--collection`` or a settings file). The pair's model record carries
    ``"purpose": "eval:<dataset>"``; a pair without it is accepted only under the
    default eval name (pairs made before the record existed).

    Raises:
        InputError: the pair exists and was not made by eval for ``dataset``.
    """
    tag = f"eval:{dataset}"
    if not store.exists():
        store.create(global_dim=extractor.global_dim, local_dim=extractor.local_dim,
                     model=model_record(extractor) | {"purpose": tag})
        return
    purpose = store.info().model.get("purpose")
    legacy = purpose is None and store.name == default_collection(dataset, extractor)
    if purpose != tag and not legacy:
        made = f"by reidctl eval for {purpose.split(':', 1)[-1]}" if purpose else "by ingest"
        raise InputError(
            f"collection pair {store.name!r} was made {made}, not by eval for {dataset}: eval "
            "only writes into a pair of its own (leave out --collection, or name a new one)")


def evaluate(
    protocol: Protocol, store: MilvusStore, extractor: FeatureExtractor, *, m: int = 500,
    device: torch.device, batch_size: int = DEFAULT_BATCH,
    on_stage: StageFn | None = None, examples: int = 0,
    top_k: int = 10, threshold: float | None = None, options: QueryOptions | None = None,
) -> EvalReport:
    """Runs ``protocol``: ingests its gallery if needed, then scores coarse, C2F and linear,
    and the query-time options asked for.

    Args:
        on_stage: called with (stage name, total steps); returns a progress callback.
        examples: keep the C2F top-``top_k`` of this many queries, evenly spaced over
            the query list, as the report's ``examples`` (for pictures).
        threshold: the open-set "no match" distance (default: the model's calibrated
            one); when there is one, ``open_set`` reports the true-match rate and the
            false-match rate (leave-identity-out) of C2F at it.
        options: query expansion (``options.qe`` > 0) adds the method ``c2f+qe``,
            k-reciprocal re-ranking ``c2f+kr``, and both ``c2f+qe+kr`` too (each ranks
            the whole query again, so its time includes its own C2F).

    Returns:
        The report: per method mAP, trapezoidal mAP, CMC (and single-shot CMC for CUHK03)
        and retrieval time per query (query feature extraction excluded and reported as
        ``extract_ms_per_query``).
    """
    stage = stage_opener(on_stage)
    claim_pair(store, extractor, protocol.dataset)
    report: IngestReport = ingest(
        [Path(g.path) for g in protocol.gallery], store, extractor, batch_size=batch_size,
        source=protocol.dataset, on_progress=stage("ingest gallery", len(protocol.gallery)))
    queries = protocol.queries
    with Stopwatch() as sw:
        q_g, q_l = extract_files(extractor, [q.path for q in queries], batch_size,
                                 on_progress=stage("extract queries", len(queries)))
    extract_ms = sw.ms / max(len(queries), 1)
    gallery = read_gallery(store, device)
    index = {gid: i for i, gid in enumerate(gallery.ids)}
    n = len(gallery.ids)
    expected = report.ingested + report.updated + report.unchanged
    if n != expected:
        raise InputError(
            f"collection pair {store.name!r} holds {n} images but the {protocol.dataset} "
            f"gallery has {expected}: it was changed after eval made it (reidctl delete --all "
            f"--yes -c {store.name} empties it)")
    m_eff = min(m, n)
    truth = GroundTruth.from_metas(queries, gallery.metas, protocol.junk_person_ids)
    w = extractor.fine_weight
    # ids and distances only, as the search command ranks; identities come from the
    # gallery read above
    # per-query reads need not wait for a server's clock: ingest returned only once its
    # writes were visible to them, and the gallery was read back fresh above
    fine = MilvusC2F(store, q_g, q_l, m_eff, index, device, fine_weight=w)
    rankers = [MilvusCoarse(store, q_g, m_eff, index), fine,
               *(MilvusC2F(store, q_g, q_l, m_eff, index, device, fine_weight=w, options=o)
                 for o in _variants(options)),
               ExactLinear(q_g, q_l, gallery.f_g, gallery.f_l, w)]
    shown = set(np.linspace(0, len(queries) - 1, examples).round().astype(int).tolist()
                if examples and queries else [])
    kept: list[dict] = []
    threshold = extractor.threshold if threshold is None else threshold
    open_lists: list[list[tuple[float, str, str]]] = []
    advance = stage("search", len(queries))

    def after(qi: int) -> None:
        """Keeps what the open-set figures and the example pictures need of C2F."""
        if threshold is not None:
            found = [(c.distance, gallery.metas[index[c.id]]) for c in fine.last]
            open_lists.append([(d, g.person_id, g.camera) for d, g in found])
        if qi in shown:
            kept.append({"query": str(queries[qi].path), "query_person": queries[qi].person_id,
                         "hits": [h.__dict__ for h in to_hits(
                             with_metadata(store, fine.last[:top_k]), top_k)]})
        if advance:
            advance(1)

    # (Q, N) rank positions for single-shot CMC: small galleries only
    methods = run_protocol(truth, rankers, single_shot=protocol.dataset == "cuhk03",
                           on_query=after)
    return EvalReport(
        dataset=protocol.dataset, protocol=protocol.description, gallery_size=n,
        num_queries=len(queries), model=extractor.describe(), M=m_eff, collection=store.name,
        extract_ms_per_query=extract_ms,
        c2f_stages_ms_p50=fine.stages.p50("coarse", "fetch", "rerank"),
        fine_distance=f"sqrt(d_g^2 + {w:g} * d_l^2)", ingest=report, methods=methods,
        examples=kept if examples else None,
        query_options=options.describe() if options and options.active else None,
        open_set=_open_set(open_lists, [bool(g.any()) for g in truth.good], protocol,
                           threshold, extractor) if threshold is not None else None)


def _variants(options: QueryOptions | None) -> list[QueryOptions]:
    """The methods ``options`` asks for: QE alone, k-reciprocal alone, then both."""
    if options is None:
        return []
    qe = QueryOptions(qe=options.qe)
    kr = QueryOptions(kreciprocal=True, k1=options.k1, k2=options.k2, lam=options.lam)
    return [o for o, on in ((qe, options.qe > 0), (kr, options.kreciprocal),
                            (options, options.qe > 0 and options.kreciprocal)) if on]


def _open_set(lists: list, genuine: list[bool], protocol: Protocol, threshold: float,
              extractor: FeatureExtractor) -> dict:
    """Open-set figures of the C2F rankings at ``threshold`` (see :mod:`reidctl.openset`)."""
    scores = scores_from_ranking(
        lists, [q.person_id for q in protocol.queries], [q.camera for q in protocol.queries],
        genuine=genuine, junk_ids=frozenset(protocol.junk_person_ids))
    point = operating_point(scores, threshold)
    from_model = threshold == extractor.threshold
    return point | {"target_fmr": (extractor.open_set or {}).get("target_fmr") if from_model
                    else None, "source": "model" if from_model else "option"}
