"""Ingest: files -> decode -> Conv-Net descriptors -> upsert (local, then global)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from reidctl.data.batches import chunks, hwc_batch, prefetch
from reidctl.data.images import SkipImage, decode_hwc, read_bytes
from reidctl.data.names import Labels, parse_name
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor
from reidctl.pipeline.common import DEFAULT_BATCH, ForwardStreams, ProgressFn, ensure_collection
from reidctl.store import MilvusStore, meta_row, row_problem, varchar_problem
from reidctl.store.schema import load_spec
from reidctl.timing import Stopwatch
from reidctl.types import ImageMeta

MAX_EXAMPLES = 20  # skipped files listed by name in the report
PREFETCH_CHUNKS = 6  # chunks (of one batch) read, looked up and decoded ahead of the model
# Batches per write: fewer, larger upserts cost a server less CPU per image, CPU the forward
# pass would otherwise get; a run that stops loses at most this much work (recomputed).
WRITE_BATCHES = 8


@dataclass
class IngestReport:
    """What an ingest run did.

    Attributes:
        files: files considered.
        ingested: new images stored.
        updated: images already stored whose entry was rewritten (new path or metadata).
        unchanged: images already stored with the same model and metadata (not recomputed).
        skipped: reason -> count of files that could not be used.
        examples: (path, reason) of the first skipped files.
        seconds: wall time.
        created: whether the collection pair was created by this run.
    """

    files: int = 0
    ingested: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    created: bool = False

    @property
    def computed(self) -> int:
        """Images run through the model."""
        return self.ingested + self.updated

    def skip(self, path: Path, reason: str, detail: str = "") -> None:
        """Counts one unusable file under ``reason``; ``detail`` (the numbers, the system's
        words) goes with it into the examples only, so the counts stay by kind."""
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((str(path), f"{reason}: {detail}" if detail else reason))

    def to_dict(self) -> dict:
        return {
            "files": self.files, "ingested": self.ingested, "updated": self.updated,
            "unchanged": self.unchanged, "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(self.skipped),
            "skipped_examples": [{"path": p, "reason": r} for p, r in self.examples],
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.computed / self.seconds, 2) if self.seconds else 0.0,
            "created_collection": self.created,
        }


@dataclass
class _Read:
    path: Path
    meta: ImageMeta
    digest: str
    data: bytes


def value_problem(field: str, value: str) -> str | None:
    """Why the global collection cannot store ``value`` in its text field ``field`` (too
    many UTF-8 bytes, or no UTF-8 form), or None when it can."""
    problem = varchar_problem(load_spec("global"), field, value)
    return f"{problem.label}: {problem.detail}" if problem else None


def check_source(source: str | None) -> None:
    """Refuses a source name the global collection cannot store (too many UTF-8 bytes,
    or no UTF-8 form), so a run fails before it creates or writes anything.

    Raises:
        InputError: the name does not fit.
    """
    if source is None:
        return
    problem = varchar_problem(load_spec("global"), "source", source)
    if problem:
        raise InputError(f"source name {source!r:.80} cannot be stored: {problem}")


def _meta(path: Path, source: str | None, labels: Labels | None) -> ImageMeta:
    """The metadata of one file, checked against the store's fields before the file is read
    (person id and camera come from the name, so every string is checked, not only the path).
    ``labels`` (from ``--camera`` and a manifest) replace what the name gives.

    Raises:
        SkipImage: a value the store cannot hold (``"path too long"``, ...).
    """
    meta = parse_name(path, source)
    if labels is not None:
        meta = labels.apply(meta)
    problem = row_problem(load_spec("global"), meta_row(meta))
    if problem:
        raise SkipImage(f"{problem.field} {problem.label}", problem.detail)
    return meta


def _read_chunk(
    paths: Sequence[Path], source: str | None, mtime: bool, labels: Callable[[Path], Labels]
) -> tuple[list[_Read], list[tuple[Path, SkipImage]]]:
    good: list[_Read] = []
    bad: list[tuple[Path, SkipImage]] = []
    for p in paths:
        try:
            meta = _meta(p, source, labels(p))
            digest, data = read_bytes(p)
            if mtime and meta.captured_at < 0:  # a time given in a manifest wins
                meta = replace(meta, captured_at=int(p.stat().st_mtime * 1000))
        except SkipImage as e:
            bad.append((p, e))
            continue
        except OSError as e:  # gone or replaced right after it was read
            bad.append((p, SkipImage("unreadable", e.strerror or str(e))))
            continue
        good.append(_Read(p, meta, digest, data))
    return good, bad


@dataclass
class _Prepared:
    """What the background job hands over for one chunk of files."""

    reads: list[_Read]
    bad: list[tuple[Path, SkipImage]]
    stored: dict[str, dict]  # digest -> the store's record, for files already there
    rows: dict[str, int]  # digest -> its row of ``batch`` (files to compute)
    failed: dict[str, SkipImage]  # digest -> why it could not be decoded
    batch: torch.Tensor | None  # (len(rows), 3, H, W) model input, channels-last


def _chunks(
    files: Sequence[Path], size: int, source: str | None, mtime: bool,
    labels: Callable[[Path], Labels], pool: ThreadPoolExecutor,
    prepare: Callable[[list[_Read], list[tuple[Path, SkipImage]]], _Prepared], ahead: int,
) -> Iterator[_Prepared]:
    """Reads and hashes the next ``ahead`` chunks in the background while one is processed,
    and runs ``prepare`` on each (what the store holds of its files, their model input).

    Several in flight because a server's strongly consistent lookup mostly waits (for the
    server's clock, which ticks every 200 ms by default, to pass the read's timestamp);
    the waits overlap instead of adding up.
    """
    def job(paths: Sequence[Path]) -> _Prepared:
        return prepare(*_read_chunk(paths, source, mtime, labels))

    return prefetch(chunks(files, size), job, pool, ahead)


class _Writer:
    """Upserts extracted batches in order on one background thread, gathered into writes
    of at least ``rows`` rows; a write's error surfaces at the next ``add`` or ``finish``.
    Rows not yet written when the run stops are recomputed by the next run."""

    def __init__(self, store: MilvusStore, fingerprint: str, rows: int,
                 pool: ThreadPoolExecutor) -> None:
        self.store, self.fp, self.rows, self.pool = store, fingerprint, rows, pool
        self.buf: list[tuple[list[str], np.ndarray, np.ndarray, list[ImageMeta]]] = []
        self.buffered = 0  # rows in ``buf``
        self.writing: Future | None = None
        self.last: list[str] = []  # ids of the last write

    def add(self, ids: list[str], f_g: np.ndarray, f_l: np.ndarray,
            metas: list[ImageMeta]) -> None:
        self.buf.append((ids, f_g, f_l, metas))
        self.buffered += len(ids)
        if self.buffered >= self.rows:
            self._submit()

    def _submit(self) -> None:
        if not self.buf:
            return
        ids = [i for b in self.buf for i in b[0]]
        f_g = np.concatenate([b[1] for b in self.buf])
        f_l = np.concatenate([b[2] for b in self.buf])
        metas = [m for b in self.buf for m in b[3]]
        self.buf, self.buffered = [], 0
        if self.writing is not None:
            self.writing.result()  # in order, one at a time
        self.writing = self.pool.submit(self.store.upsert, ids, f_g, f_l, metas, self.fp)
        self.last = ids

    def finish(self) -> list[str]:
        """Writes what is buffered, waits; returns the ids of the last write."""
        self._submit()
        if self.writing is not None:
            self.writing.result()
        return self.last


def _same(stored: dict, meta: ImageMeta, fingerprint: str) -> bool:
    return (
        stored.get("model") == fingerprint and stored.get("path") == meta.path
        and stored.get("person_id") == meta.person_id and stored.get("camera") == meta.camera
        and stored.get("source") == meta.source and stored.get("captured_at") == meta.captured_at
    )


def ingest(
    files: Sequence[Path], store: MilvusStore, extractor: FeatureExtractor, *,
    batch_size: int = DEFAULT_BATCH, source: str | None = None, force: bool = False,
    time_from_mtime: bool = False, on_progress: ProgressFn | None = None,
    camera: str | None = None, labels: Mapping[Path, Labels] | None = None,
) -> IngestReport:
    """Stores the descriptors of ``files`` in the collection pair of ``store``.

    The primary key is the sha256 of the file bytes, so ingesting an image twice
    updates it instead of duplicating it; an image already stored with the same
    model and metadata is left alone (an interrupted run resumes cheaply) unless
    ``force``. Unusable files are skipped and counted by reason. With
    ``time_from_mtime`` the capture time is the file's modification time (unless
    ``labels`` give one). ``camera`` is the camera of every file, and ``labels`` (a
    manifest's, by file) replace what the options and the file names give.
    Returns once a search would see every image written.

    Raises:
        InputError: ``source`` or ``camera`` cannot be stored (checked before anything is
            written), or no file could be used at all.
    """
    clock = Stopwatch.started()
    check_source(source)
    common = Labels(camera=camera)
    if camera is not None and (problem := value_problem("camera", camera)):
        raise InputError(f"camera {camera!r:.80} cannot be stored: {problem}")
    by_file = labels or {}

    def labels_of(path: Path) -> Labels:
        return by_file[path].over(common) if path in by_file else common

    report = IngestReport(files=len(files))
    report.created = ensure_collection(store, extractor)
    size = extractor.input_size
    fp = extractor.fingerprint
    seen: set[str] = set()

    def stale(r: _Read, stored: dict[str, dict]) -> bool:
        return force or not (r.digest in stored and _same(stored[r.digest], r.meta, fp))

    def prepare(reads: list[_Read], bad: list[tuple[Path, SkipImage]]) -> _Prepared:
        """In the background: the stored records of a chunk, and the model input of the
        files that need computing (overlaps the forward pass of the chunk before)."""
        # a pair this run created holds nothing it needs to look up (another worker writing
        # the same images at once only means some are computed twice: writes are upserts)
        stored = store.existing([r.digest for r in reads]) if reads and not report.created else {}
        rows: dict[str, int] = {}
        failed: dict[str, SkipImage] = {}
        images: list[np.ndarray] = []
        for r in reads:
            if r.digest in rows or r.digest in failed or not stale(r, stored):
                continue
            try:
                images.append(decode_hwc(r.data, size))
                rows[r.digest] = len(images) - 1
            except SkipImage as e:
                failed[r.digest] = e
        batch = hwc_batch(images) if images else None
        return _Prepared(reads, bad, stored, rows, failed, batch)

    with ThreadPoolExecutor(max_workers=PREFETCH_CHUNKS) as io_pool, \
            ThreadPoolExecutor(max_workers=1) as write_pool, \
            ForwardStreams(extractor) as forward:
        writer = _Writer(store, fp, WRITE_BATCHES * batch_size, write_pool)
        running: deque[tuple[Future, list[_Read]]] = deque()  # batches in the model

        def store_oldest() -> None:
            done, ok = running.popleft()
            d = done.result()
            writer.add([r.digest for r in ok], d.global_, d.local, [r.meta for r in ok])

        for ch in _chunks(files, batch_size, source, time_from_mtime, labels_of, io_pool,
                          prepare, PREFETCH_CHUNKS):
            for p, e in ch.bad:
                report.skip(p, e.reason, e.detail)
            fresh: list[_Read] = []
            for r in ch.reads:
                if r.digest in seen:
                    report.skip(r.path, "duplicate content")
                else:
                    seen.add(r.digest)
                    fresh.append(r)
            todo = [r for r in fresh if stale(r, ch.stored)]
            report.unchanged += len(fresh) - len(todo)
            ok: list[_Read] = []
            for r in todo:
                if r.digest in ch.failed:
                    e = ch.failed[r.digest]
                    report.skip(r.path, e.reason, e.detail)
                else:
                    ok.append(r)
            if ok:
                assert ch.batch is not None
                rows = [ch.rows[r.digest] for r in ok]
                batch = ch.batch if rows == list(range(len(ch.batch))) else ch.batch[rows]
                running.append((forward.submit(batch), ok))
                for r in ok:
                    if r.digest in ch.stored:
                        report.updated += 1
                    else:
                        report.ingested += 1
                while len(running) > forward.streams:  # every stream busy, one batch queued
                    store_oldest()
            if on_progress:
                on_progress(len(ch.reads) + len(ch.bad))
        while running:
            store_oldest()
        last = writer.finish()
    if report.computed:
        if store.is_lite:  # sealed segments make later searches and counts faster on Lite;
            store.flush()  # a server seals on its own, and its flush would only wait
        store.wait_visible(last, present=True)  # batches are written in order
    report.seconds = clock.elapsed()
    if report.files and report.skipped.total() == report.files:
        raise InputError(
            f"none of the {report.files} file(s) could be ingested "
            f"({', '.join(f'{n} {r}' for r, n in report.skipped.items())})"
        )
    return report
