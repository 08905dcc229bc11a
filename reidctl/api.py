"""The Python API: open a gallery once, then search, ingest and delete without paying
for imports, the model and the database connection on every call.

Example::

    import reidctl.api as reid

    reid.tune_allocator()  # first thing in a CPU process: a 1.7x faster forward pass on Linux
    with reid.Gallery("reidctl.db", "cuhk03_val", model="runs/omz_0286_cuhk03.pt") as g:
        print(g.info().images, "images")
        for r in g.search(["query.jpg"], k=5, filters=reid.where(camera="B")):
            print(r.query, "no match" if r.no_match else "", f"{r.ms.total:.0f} ms")
            for h in r.hits:
                print(h.rank, f"{h.distance:.3f}", h.person, h.camera, h.time, h.path)
        more = g.search_id(r.hits[0].id, k=5)          # from a stored image
        g.ingest(["new_crops/"], source="gate-3")       # add images
        g.delete(source="gate-3")                       # and remove them again

Queries may be file paths, the bytes of an image file, PIL images or ``(H, W, 3)`` uint8
RGB numpy arrays. Errors are :mod:`reidctl.errors` exceptions with one-line messages.
A :class:`Gallery` may be shared by threads: queries run the model one batch at a time,
ingests and deletes one at a time, and on Milvus Lite every store call runs alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidctl.api_types import (
    GalleryInfo,
    ImageNotFound,
    ImageRecord,
    SearchHit,
    SearchResult,
    StageTimes,
    check_image_id,
    env_settings,
    query_options,
    result_from,
    where,
)
from reidctl.config import DEFAULT_BATCH, DEFAULT_URI, Connection
from reidctl.errors import InputError

if TYPE_CHECKING:  # torch and pymilvus load when a Gallery opens, not on import
    import numpy as np

    from reidctl.data.query_images import QueryImage
    from reidctl.model import FeatureExtractor
    from reidctl.pipeline.delete import DeleteReport
    from reidctl.pipeline.ingest import IngestReport
    from reidctl.types import Selection

__all__ = ["DEFAULT_MODEL", "Gallery", "GalleryInfo", "ImageNotFound", "ImageRecord",
           "SearchHit", "SearchResult", "StageTimes", "tune_allocator", "where"]

DEFAULT_MODEL = "osnet_x0_25"  # what the command line uses without --model


def tune_allocator() -> bool:
    """Sets glibc's allocator as the command line does (:mod:`reidctl.allocator`): one
    arena that keeps what it frees, so the CPU forward pass takes no page faults (1.7-1.8x
    faster). Call it first, before torch is imported or threads start.
    ``REIDCTL_ALLOCATOR=system`` turns it off.

    Returns:
        True when applied (Linux with glibc, not turned off).
    """
    from reidctl import allocator

    return allocator.tune()


class Gallery:
    """One collection pair and one model, opened once.

    Args:
        uri: a Milvus Lite file (``./reidctl.db``) or a server URI, or a
            :class:`~reidctl.config.Connection` with credentials, database and TLS.
        collection: the collection-pair name.
        model: a backbone name (``osnet_x0_25``, ``omz_0286``, ...), a checkpoint path,
            or a loaded :class:`~reidctl.model.FeatureExtractor`.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        token: server token or ``user:password`` (overrides the Connection's).
        timeout: seconds allowed per database call (overrides the Connection's).
        create: create the database and the collection pair for this model when missing
            (otherwise a missing one is an error at once, as for ``reidctl search``).
        serialize_store: run store calls one at a time (default: on Milvus Lite only).

    Raises:
        InputError, ModelError: bad settings or model.
        CollectionNotFound: no such database or collection pair (without ``create``).
        FeatureSpaceMismatch: the pair holds another model's vectors.
        StoreError: the database cannot be reached or opened.
    """

    def __init__(
        self, uri: str | os.PathLike[str] | Connection = DEFAULT_URI,
        collection: str = "gallery", *, model: str | os.PathLike[str] | FeatureExtractor =
        DEFAULT_MODEL, device: str = "auto", token: str | None = None,
        timeout: float | None = None, create: bool = False,
        serialize_store: bool | None = None,
    ) -> None:
        from reidctl.config import resolve_device
        from reidctl.model import FeatureExtractor, load_model
        from reidctl.pipeline.common import ensure_collection
        from reidctl.store import MilvusStore
        from reidctl.store.locked import LockedStore

        conn = uri if isinstance(uri, Connection) else Connection(os.fspath(uri))
        if token is not None:
            conn = replace(conn, token=token)
        if timeout is not None:
            conn = replace(conn, timeout=float(timeout))
        self.collection = collection
        self._query_lock = threading.Lock()  # one query batch in the model at a time
        self._write_lock = threading.Lock()  # one ingest or delete at a time
        if isinstance(model, FeatureExtractor):
            self.model, self.device = model, model.device
        else:
            self.device = resolve_device(device)
            self.model = load_model(os.fspath(model), device=self.device)
        raw = MilvusStore(conn.validated(), collection, must_exist=not create)
        try:
            if serialize_store is None:
                serialize_store = raw.is_lite
            self.store: Any = LockedStore(raw) if serialize_store else raw
            if create:
                ensure_collection(self.store, self.model)
            else:
                self.store.check_model(self.model.fingerprint)
        except BaseException:
            raw.close()
            raise

    @classmethod
    def from_env(cls, **overrides: Any) -> Gallery:  # noqa: ANN401
        """A gallery with the settings the command line reads from the environment:
        ``REIDCTL_URI``, ``REIDCTL_COLLECTION``, ``REIDCTL_MODEL``, ``REIDCTL_DEVICE``,
        ``REIDCTL_TOKEN``, ``REIDCTL_USER``, ``REIDCTL_PASSWORD``, ``REIDCTL_DB``,
        ``REIDCTL_TLS_CA`` / ``_SERVER_NAME`` / ``_CERT`` / ``_KEY`` and
        ``REIDCTL_TIMEOUT``; keyword arguments (as for the constructor) win.
        ``reidctl.toml`` is read by the command line only.
        """
        conn, settings = env_settings()
        uri = overrides.pop("uri", None)
        if uri is not None and not isinstance(uri, Connection):
            uri = conn.with_uri(os.fspath(uri))
        return cls(uri or conn, **(settings | overrides))

    # -- searching --------------------------------------------------------------

    def search(
        self, queries: QueryImage | Sequence[QueryImage], k: int = 10, *, m: int = 500,
        filters: Selection | None = None, threshold: float | None = None, qe: int = 0,
        kreciprocal: bool = False, k1: int = 10, k2: int = 3, lam: float = 0.3,
    ) -> list[SearchResult]:
        """Coarse-to-fine search of each query, as ``reidctl search`` does.

        Args:
            queries: one query or a list: file paths, image file bytes, PIL images or
                ``(H, W, 3)`` uint8 RGB arrays.
            k: hits returned per query (1..1000).
            m: coarse candidates re-ranked with the local descriptors (>= k).
            filters: restrict the gallery (see :func:`where`); None: all of it.
            threshold: "no match" beyond this distance (default: the model's calibrated
                one; None without one).
            qe: query expansion with the top ``qe`` hits, then a second search (0: off).
            kreciprocal: k-reciprocal re-ranking of the M candidates (``k1``, ``k2``,
                ``lam`` are its settings).

        Returns:
            One :class:`SearchResult` per query, in order.

        Raises:
            InputError: a missing or unusable query image, or a bad setting.
            CollectionNotFound, StoreError: the store failed.
        """
        from reidctl.data.batches import chunks, to_batch
        from reidctl.data.query_images import as_list, decode_query, describe
        from reidctl.timing import Stopwatch

        items = as_list(queries)
        if not items:
            raise InputError("no query given")
        options = query_options(k, m, qe, kreciprocal, k1, k2, lam)
        size = self.model.input_size
        out: list[SearchResult] = []
        for start, chunk in zip(range(0, len(items), DEFAULT_BATCH),
                                chunks(items, DEFAULT_BATCH), strict=True):
            with Stopwatch() as dec:
                pixels = [decode_query(q, size, start + i) for i, q in enumerate(chunk)]
            with self._query_lock, Stopwatch() as ext:
                d = self.model.extract(to_batch(pixels))  # (B, Dg), (B, Dl)
            share = (dec.ms / len(chunk), ext.ms / len(chunk))
            for i, q in enumerate(chunk):
                out.append(self._rank(describe(q, start + i), d.global_[i], d.local[i], k, m,
                                      filters, threshold, options, share))
        return out

    def search_id(
        self, image_id: str, k: int = 10, *, m: int = 500, filters: Selection | None = None,
        threshold: float | None = None, qe: int = 0, kreciprocal: bool = False,
        exclude_self: bool = False,
    ) -> SearchResult:
        """Search with a stored image as the query: its stored descriptors, or, when they
        are incomplete, its file read again from the stored path (which must still hold
        the same bytes).

        Args:
            image_id: the stored image's id.
            exclude_self: leave the image itself out of the hits (and of the "no match"
                decision, then made on the best other image).
            k, m, filters, threshold, qe, kreciprocal: as for :meth:`search`.

        Raises:
            ImageNotFound: the id is not stored.
            InputError: not an image id, or the stored file is needed and is gone or
                changed.
        """
        from reidctl.timing import Stopwatch

        pk = check_image_id(image_id)
        options = query_options(k, m, qe, kreciprocal)
        with Stopwatch() as sw:
            f_g, got_g = self.store.fetch_global_partial([pk])  # (1, Dg), (1,)
            f_l, got_l = self.store.fetch_local_partial([pk])  # (1, Dl), (1,)
        share = (0.0, 0.0)
        if not (got_g[0] and got_l[0]):
            f_g, f_l, share = self._extract_stored(pk)
        r = self._rank(f"id:{pk}", f_g[0], f_l[0], k + exclude_self, m, filters, threshold,
                       options, share, fetch_ms=sw.ms)
        if not exclude_self:
            return r
        hits = [h for h in r.hits if h.id != pk][:k]  # the decision is on the best other
        best = hits[0].distance if hits else None
        no_match = None if r.threshold is None else best is None or best > r.threshold
        return replace(r, hits=[replace(h, rank=n + 1) for n, h in enumerate(hits)],
                       best_distance=best, no_match=no_match)

    def _extract_stored(self, pk: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """The descriptors of a stored image computed again from its file."""
        from reidctl.data.batches import to_batch
        from reidctl.data.images import SkipImage, read_bytes
        from reidctl.data.query_images import decode_bytes
        from reidctl.timing import Stopwatch

        rec = self.get(pk)
        with Stopwatch() as dec:
            try:
                digest, data = read_bytes(rec.path)
            except SkipImage as e:
                raise InputError(f"image {pk[:12]}... has no stored descriptors and its file "
                                 f"cannot be read ({e}): {rec.path}") from None
            if digest != pk:
                raise InputError(f"image {pk[:12]}... has no stored descriptors and its file "
                                 f"has changed since it was ingested: {rec.path}")
            pixels = decode_bytes(data, self.model.input_size, f"stored image {rec.path}")
        with self._query_lock, Stopwatch() as ext:
            d = self.model.extract(to_batch([pixels]))
        return d.global_, d.local, (dec.ms, ext.ms)

    def _rank(
        self, query: str, q_g: np.ndarray, q_l: np.ndarray, k: int, m: int,
        filters: Selection | None, threshold: float | None, options: Any,  # noqa: ANN401
        share: tuple[float, float], fetch_ms: float = 0.0,
    ) -> SearchResult:
        """One query's C2F ranking, as :func:`reidctl.pipeline.search.search` ranks each
        of its queries (the top-k's metadata read for them alone)."""
        from reidctl.pipeline.search import rank_query

        threshold = self.model.threshold if threshold is None else threshold
        r = rank_query(self.store, query, q_g, q_l, k, max(m, k), self.device, options,
                       fine_weight=self.model.fine_weight, where=filters, threshold=threshold)
        r.timings.fetch += fetch_ms
        return result_from(r, share)

    # -- reading ----------------------------------------------------------------

    def get(self, image_id: str) -> ImageRecord:
        """What is stored about one image (its path, labels, capture time, model).

        Raises:
            ImageNotFound: the id is not stored.
            InputError: not an image id.
        """
        pk = check_image_id(image_id)
        found = self.store.existing([pk], fresh=True, complete=False)
        if pk not in found:
            raise ImageNotFound(f"image {pk} is not in collection pair {self.collection!r}")
        return ImageRecord.from_store(pk, found[pk])

    def info(self) -> GalleryInfo:
        """Counts, model and index of the gallery."""
        i = self.store.info()
        model = {k: v for k, v in self.model.describe().items() if k != "open_set"}
        return GalleryInfo(uri=i.uri, collection=i.name,
                           backend="milvus-lite" if self.store.is_lite else "milvus-server",
                           images=i.global_count, local_images=i.local_count, model=model,
                           threshold=self.model.threshold, index=dict(i.index))

    def count(self) -> int:
        """Images stored (a cheap check that the store answers)."""
        return int(self.store.count())

    # -- writing ----------------------------------------------------------------

    def ingest(
        self, paths: Iterable[str | os.PathLike[str]], *, source: str | None = None,
        camera: str | None = None, time_from_mtime: bool = False, force: bool = False,
        labels: dict[Path, Any] | None = None, batch_size: int = DEFAULT_BATCH,
        on_progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Adds image files and folders (recursive), as ``reidctl ingest`` does: an image
        already stored with the same model and metadata is skipped, unusable files are
        counted by reason. Searches keep running meanwhile.

        Args:
            paths: files and folders.
            source: source name stored with each image; camera: camera id of each.
            time_from_mtime: capture time from the file's modification time.
            force: recompute images already stored.
            labels: per file (absolute, resolved path) ``reidctl.data.names.Labels``
                that win over the options and the file names.
            on_progress: called with the number of files done after each batch.

        Returns:
            The report (``ingested``, ``updated``, ``unchanged``, ``skipped``, ...).

        Raises:
            InputError: no path, a missing path, nothing usable, a label that cannot be
                stored.
        """
        from reidctl.data.inputs import ingest_files
        from reidctl.pipeline.ingest import ingest as run_ingest
        from reidctl.types import check_label

        if camera is not None:
            check_label(camera, "camera")
        files = ingest_files([Path(p) for p in paths])
        with self._write_lock:
            return run_ingest(files, self.store, self.model, batch_size=batch_size,
                              source=source, force=force, time_from_mtime=time_from_mtime,
                              on_progress=on_progress, camera=camera, labels=labels)

    def delete(
        self, ids: Iterable[str] = (), *, path_prefix: str | None = None,
        camera: str | Iterable[str] | None = None, source: str | Iterable[str] | None = None,
        person: str | Iterable[str] | None = None, everything: bool = False,
        dry_run: bool = False,
    ) -> DeleteReport:
        """Deletes the selected images (all criteria AND-ed) from both collections, as
        ``reidctl delete --yes`` does, with its safety rules: a blank value is an error,
        never "everything"; no criterion, or a selection that matches every image, needs
        ``everything=True``.

        Returns:
            The report (``matched``, ``deleted``, ``total``, ``examples``, ...).

        Raises:
            InputError: the selection is blank, empty or whole without ``everything``.
        """
        from reidctl.api_types import as_strings
        from reidctl.pipeline.delete import delete as run_delete
        from reidctl.types import Selection

        if isinstance(ids, str):
            ids = (ids,)
        sel = Selection(ids=tuple(ids), path_prefix=path_prefix, cameras=as_strings(camera),
                        sources=as_strings(source), person_ids=as_strings(person))
        with self._write_lock:
            return run_delete(self.store, sel, dry_run=dry_run, everything=everything)

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Releases the database connection (the model is freed with the object)."""
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Gallery(uri={self.store.uri!r}, collection={self.collection!r}, "
                f"model={self.model.fingerprint!r}, device={str(self.device)!r})")
