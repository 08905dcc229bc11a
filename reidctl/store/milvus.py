"""MilvusStore: reads and writes on a gallery collection pair (see :mod:`reidctl.store.pair`).

Invariants kept here: writes go local first, then global (an entry visible to
coarse search always has its local descriptor); deletes go global first, then
local; every write is an upsert keyed by the content hash, so re-ingesting an
image replaces it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from reidctl.errors import FeatureSpaceMismatch, StoreError
from reidctl.store import _rows as rows
from reidctl.store.filters import to_expr
from reidctl.store.upkeep import ID_BATCH, PairUpkeep
from reidctl.types import Hit, ImageMeta, Selection

log = logging.getLogger(__name__)

MAX_TOPK = 16384  # Milvus' top-k and nq ceiling
EF_FILTERED_MIN = 3000  # HNSW search width whenever a filter is set
EF_FILTERED_MAX = 8192
EF_MAX = 32768  # Milvus 2.3 HNSW: ef in [top-k, 32768]
_HITS_PER_CALL = 65536  # nq * limit per search request, bounds the response size
_FETCH_BYTES = 16 << 20  # local vectors per fetch request


def search_width(limit: int, ef_min: int, *, filtered: bool, per_hit: int = 1) -> int:
    """HNSW ``ef`` for a search of ``limit`` hits: ``per_hit`` x ``limit``, at least
    ``ef_min`` (and never below ``limit``, as Milvus requires).

    ``per_hit`` buys recall, and a wider walk costs little next to the rest of a search;
    ``schemas/global.json`` sets it (recall@100 per width, measured with
    ``scripts/ef_recall.py``: docs/benchmarks.md, "Scale").

    A filter gets a fixed wider walk: the graph walk skips the rows a filter rejects,
    so a selective filter leaves too few candidates within the usual width. Scaling
    ``ef`` to the filter's selectivity would need the selectivity counted first, which
    costs more than the wider walk (``scripts/filter_recall.py``: docs/benchmarks.md,
    "Filtered coarse search").
    """
    if not filtered:
        return max(limit, min(EF_MAX, max(ef_min, per_hit * limit)))
    ef = max(limit, ef_min)
    return min(EF_FILTERED_MAX, max(4 * ef, EF_FILTERED_MIN))


class MilvusStore(PairUpkeep):
    """A gallery collection pair in Milvus (Lite or server): lifecycle, reads and writes.

    Example:
        >>> with MilvusStore("gallery.db") as store:          # doctest: +SKIP
        ...     store.create(global_dim=128, local_dim=512, model={"fingerprint": "abc"})
        ...     store.upsert(ids, f_g, f_l, metas, "abc")
        ...     hits = store.search(queries, 500, fresh=True)
    """

    def existing(self, ids: Sequence[str], *, fresh: bool = True,
                 complete: bool = True) -> dict[str, dict[str, Any]]:
        """Which ids are stored, with their metadata.

        Args:
            ids: primary keys.
            fresh: see every write acknowledged so far (the default; False may lag a
                server's latest writes by a few seconds, without waiting).
            complete: count an id as stored only when its local descriptor is there too
                (what an ingest's skip check needs: an image left without it by a race
                or a crash is then recomputed); False reads the global collection only.

        Returns:
            ``id -> {"path", "model", "person_id", "camera", "source", "captured_at"}``
            for the ids present.
        """
        self._pair()
        consistency = rows.level(fresh)
        uniq = list(dict.fromkeys(rows.check_ids(ids, self._pk_len)))
        out: dict[str, dict[str, Any]] = {}
        for batch in rows.chunks(uniq, ID_BATCH):
            found = self._query(
                self.global_name, rows.in_expr("id", batch), ["id", *rows.EXISTING_FIELDS],
                consistency,
            )
            for r in found:
                out[str(r["id"])] = rows.pick(r, rows.EXISTING_FIELDS)
        if complete and out:
            local = self._present(self.local_name, list(out), consistency)
            out = {pk: rec for pk, rec in out.items() if pk in local}
        return out

    def upsert(
        self,
        ids: Sequence[str],
        f_g: np.ndarray,
        f_l: np.ndarray,
        metas: Sequence[ImageMeta],
        model_fingerprint: str,
    ) -> None:
        """Write images: local descriptors first, then global rows (insert or replace).

        Args:
            ids: N primary keys (sha256 hex of the image bytes); a repeated id keeps
                its last occurrence.
            f_g: (N, Dg) global descriptors.
            f_l: (N, Dl) local descriptors.
            metas: N image metadata records.
            model_fingerprint: the model that produced the vectors.

        Raises:
            FeatureSpaceMismatch: another model than the pair's, or wrong dims.
            StoreError: a metadata string too long for its field, or the write failed.
            ValueError: inconsistent lengths, non-finite values, invalid ids.
        """
        meta = self._pair()
        if model_fingerprint != meta.fingerprint:
            raise FeatureSpaceMismatch(
                f"collection pair {self.name!r} holds vectors of model {meta.fingerprint!r}; "
                f"refusing to write vectors of model {model_fingerprint!r}"
            )
        keys = rows.check_ids(ids, self._pk_len)
        n = len(keys)
        if len(metas) != n:
            raise ValueError(f"got {n} ids but {len(metas)} metadata records")
        g = rows.as_matrix("f_g", f_g, n)  # (N, Dg)
        loc = rows.as_matrix("f_l", f_l, n)  # (N, Dl)
        self._check_dim("f_g", g.shape[1], meta.global_dim)
        self._check_dim("f_l", loc.shape[1], meta.local_dim)
        order = sorted({pk: i for i, pk in enumerate(keys)}.values())  # last occurrence wins
        now = int(time.time() * 1000)
        spec = self._specs["global"]
        global_rows: dict[int, dict[str, Any]] = {}
        for i in order:  # validate everything before the first write
            row = {"id": keys[i], "f_g": g[i], **rows.meta_row(metas[i])}
            row.update(model=model_fingerprint, ingested_at=now)
            rows.check_lengths(spec, row, i)
            global_rows[i] = row
        per_request = rows.write_batch_rows(meta.global_dim + meta.local_dim)
        for batch in rows.chunks(order, per_request):
            self._write_local(batch, keys, loc)
            with self._wrap(f"write {self.global_name}"):
                self._c.upsert(
                    self.global_name, [global_rows[i] for i in batch], timeout=self.timeout
                )
        # A delete of the same images running meanwhile may have removed a local row
        # after it was written and before its global row was: those images would be
        # searchable without their local descriptor. A Strong read sees every delete
        # acknowledged before it; what it misses is written again (this write wins).
        there = self._present(self.local_name, [keys[i] for i in order], "Strong")
        missing = [i for i in order if keys[i] not in there]
        if missing:
            log.warning("%d local descriptor(s) were deleted during the write: writing them "
                        "again", len(missing))
            for batch in rows.chunks(missing, per_request):
                self._write_local(batch, keys, loc)

    def _write_local(self, batch: Sequence[int], keys: list[str], loc: np.ndarray) -> None:
        with self._wrap(f"write {self.local_name}"):
            self._c.upsert(
                self.local_name, [{"id": keys[i], "f_l": loc[i]} for i in batch],
                timeout=self.timeout,
            )

    def search(
        self,
        f_g: np.ndarray,
        limit: int,
        *,
        where: Selection | None = None,
        fresh: bool = False,
        ef: int | None = None,
        with_meta: bool = True,
    ) -> list[list[Hit]]:
        """Coarse search: the ``limit`` nearest global descriptors per query.

        Args:
            f_g: (Q, Dg) query global descriptors.
            limit: hits per query, 1..16384 (HNSW ef is set to at least ``limit``).
            where: only images matching this selection (the filter runs inside
                Milvus, in the ANN search); None or an empty selection: all.
            fresh: see every write acknowledged so far (waits for a server's clock);
                by default reads may lag a server's latest writes by a few seconds.
            ef: HNSW search width (default: see :func:`search_width`, with the
                schema's ``ef_min`` and ``ef_per_hit``; never below ``limit``).
            with_meta: return each hit's metadata; False returns ids and distances
                only (empty metadata): no metadata is read or sent, which matters for
                the hundreds of coarse candidates of a C2F search.

        Returns:
            Per query, the ranked hits (Euclidean distance), nearest first.

        Raises:
            StoreError: ``limit`` above Milvus' top-k ceiling, bad filter, failure.
            FeatureSpaceMismatch: ``f_g`` has the wrong dimension.
        """
        meta = self._pair()
        expr = to_expr(where) if where is not None else ""
        if limit > MAX_TOPK:
            raise StoreError(f"search limit {limit} exceeds Milvus' top-k maximum of {MAX_TOPK}")
        if limit < 1:
            raise ValueError(f"search limit must be positive, got {limit}")
        q = rows.as_matrix("f_g", f_g, None)  # (Q, Dg)
        self._check_dim("f_g", q.shape[1], meta.global_dim)
        spec = self._specs["global"]
        search = spec.search or {}
        params = {"metric_type": search.get("metric_type", spec.index["metric_type"]), "params": {}}
        if ef is None and "ef_min" in search:
            ef = search_width(limit, int(search["ef_min"]), filtered=bool(expr),
                              per_hit=int(search.get("ef_per_hit", 1)))
        if ef is not None:
            params["params"]["ef"] = max(limit, int(ef))
        fields = list(rows.HIT_FIELDS) if with_meta else []
        per_call = max(1, min(MAX_TOPK, _HITS_PER_CALL // limit))
        out: list[list[Hit]] = []
        for start in range(0, q.shape[0], per_call):
            with self._wrap(f"search {self.global_name}"):
                res = self._c.search(
                    self.global_name,
                    data=q[start : start + per_call],
                    limit=limit,
                    anns_field=spec.vector_field,
                    filter=expr,
                    output_fields=fields,
                    search_params=params,
                    consistency_level=rows.level(fresh),
                    timeout=self.timeout,
                )
                out.extend(rows.to_hits(hits, fields) for hits in res)
        return out

    def fetch_local(self, ids: Sequence[str], *, fresh: bool = False) -> np.ndarray:
        """Local descriptors by id, in the order given.

        Args:
            ids: primary keys (repeats allowed).
            fresh: see every write acknowledged so far (default: may lag a server's
                latest writes by a few seconds).

        Returns:
            (len(ids), Dl) float32; row k is the descriptor of ``ids[k]``.

        Raises:
            StoreError: some ids have no local descriptor (the message says how many).
        """
        out, present = self.fetch_local_partial(ids, fresh=fresh)
        if not present.all():
            missing = [pk for pk, ok in zip(ids, present.tolist(), strict=True) if not ok]
            raise StoreError(
                f"{len(set(missing))} of {len(set(ids))} ids have no local descriptor in "
                f"{self.local_name} (first missing: {missing[0]}; reidctl repair removes "
                "such entries)"
            )
        return out

    def fetch_local_partial(self, ids: Sequence[str], *, fresh: bool = False,
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Local descriptors by id, in the order given, and which ids have one.

        A weaker-than-Strong read that misses ids (on a server, rows written in the
        last seconds may not be visible to it yet) is retried once with Strong
        consistency for the missing ids only, so the fast path stays fast and a
        fresh candidate is never dropped.

        Args:
            ids: primary keys (repeats allowed).
            fresh: see every write acknowledged so far (default: may lag; ids a lagging
                read misses are read again with Strong consistency).

        Returns:
            ``(f_l, present)``: (len(ids), Dl) float32 whose row k is the descriptor of
            ``ids[k]`` (zeros where it has none), and the (len(ids),) bool mask of the
            ids that have one.
        """
        meta = self._pair()
        return self._fetch_partial(ids, fresh, self.local_name, "f_l", meta.local_dim)

    def fetch_global_partial(self, ids: Sequence[str], *, fresh: bool = False,
                             ) -> tuple[np.ndarray, np.ndarray]:
        """Global descriptors by id, in the order given, and which ids have one (for the
        query-time options that need the candidates' f_g: query expansion, k-reciprocal
        re-ranking); reads like :meth:`fetch_local_partial`.

        Returns:
            ``(f_g, present)``: (len(ids), Dg) float32 (zeros where an id is not stored)
            and the (len(ids),) bool mask of the ids found.
        """
        meta = self._pair()
        spec = self._specs["global"]
        return self._fetch_partial(ids, fresh, self.global_name, spec.vector_field,
                                   meta.global_dim)

    def _fetch_partial(self, ids: Sequence[str], fresh: bool, collection: str, field: str,
                       dim: int) -> tuple[np.ndarray, np.ndarray]:
        consistency = rows.level(fresh)
        keys = rows.check_ids(ids, self._pk_len)
        uniq = list(dict.fromkeys(keys))
        found = self._fetch(uniq, collection, field, dim, consistency)
        missing = [pk for pk in uniq if pk not in found]
        if missing and consistency != "Strong":
            found.update(self._fetch(missing, collection, field, dim, "Strong"))
        out = np.zeros((len(keys), dim), dtype=np.float32)  # (N, D)
        present = np.zeros(len(keys), dtype=bool)  # (N,)
        for k, pk in enumerate(keys):
            f = found.get(pk)
            if f is not None:
                out[k] = f
                present[k] = True
        return out, present

    def _fetch(self, ids: list[str], collection: str, field: str, dim: int,
               consistency: str) -> dict[str, np.ndarray]:
        per_request = max(1, min(ID_BATCH, _FETCH_BYTES // (4 * dim)))
        found: dict[str, np.ndarray] = {}
        for batch in rows.chunks(ids, per_request):
            # strict_float32: pymilvus decodes the vectors as one float32 array, not lists
            res = self._query(
                collection,
                rows.in_expr("id", batch),
                ["id", field],
                consistency,
                strict_float32=True,
            )
            for r in res:
                found[str(r["id"])] = r[field]
        return found

    def iterate(
        self, *, with_vectors: bool = True, batch_size: int = 1000, fresh: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Stream the whole pair in batches, with bounded memory.

        Args:
            with_vectors: also return ``f_g`` and ``f_l``.
            batch_size: rows per batch, 1..16384.
            fresh: see every write acknowledged so far (the default).

        Yields:
            ``{"id": list[str], "meta": list[dict], "f_g": (b, Dg), "f_l": (b, Dl)}``,
            the vectors only when ``with_vectors``; ``meta`` holds person_id, camera,
            source, path, captured_at, model, ingested_at.

        Raises:
            CollectionNotFound: the pair does not exist (raised on the call, not lazily).
        """
        meta = self._pair()
        if not 1 <= batch_size <= MAX_TOPK:
            raise ValueError(f"batch_size must be in 1..{MAX_TOPK}, got {batch_size}")
        if fresh:
            # The query iterator does not apply the level on a 2.3 server (rows written
            # just before come back missing); one strong read first makes them visible.
            self._count(self.global_name)
        return self._iterate(meta.global_dim, with_vectors, batch_size, fresh)

    def _iterate(
        self, dim: int, with_vectors: bool, batch_size: int, fresh: bool
    ) -> Iterator[dict[str, Any]]:
        spec = self._specs["global"]
        scalars = spec.scalar_fields
        fields = ["id", *scalars, *([spec.vector_field] if with_vectors else [])]
        for page in self._pages("", fields, rows.level(fresh), batch_size):
            batch: dict[str, Any] = {
                "id": [str(r["id"]) for r in page],
                "meta": [rows.pick(r, scalars) for r in page],
            }
            if with_vectors:
                batch["f_g"] = rows.stack([r[spec.vector_field] for r in page], dim)  # (b, Dg)
                batch["f_l"] = self.fetch_local(batch["id"], fresh=fresh)  # (b, Dl)
            yield batch
