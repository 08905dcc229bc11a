"""Ingest: files -> decode -> Conv-Net descriptors -> upsert (local, then global)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from reidctl.data.images import SkipImage, decode, read_bytes
from reidctl.data.names import parse_name
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor
from reidctl.pipeline.common import ProgressFn, ensure_collection, to_batch
from reidctl.store import MilvusStore
from reidctl.types import ImageMeta

MAX_EXAMPLES = 20  # skipped files listed by name in the report


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

    def skip(self, path: Path, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((str(path), reason))

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


def _read_chunk(
    paths: Sequence[Path], source: str | None, mtime: bool
) -> tuple[list[_Read], list[tuple]]:
    good: list[_Read] = []
    bad: list[tuple[Path, str]] = []
    for p in paths:
        try:
            digest, data = read_bytes(p)
            meta = parse_name(p, source)
            if mtime:
                meta = replace(meta, captured_at=int(p.stat().st_mtime * 1000))
        except SkipImage as e:
            bad.append((p, e.reason))
            continue
        except OSError as e:
            bad.append((p, f"unreadable ({e.strerror or e})"))
            continue
        good.append(_Read(p, meta, digest, data))
    return good, bad


_Chunk = tuple[list[_Read], list[tuple], dict[str, dict], dict[str, "np.ndarray | SkipImage"]]


def _chunks(
    files: Sequence[Path], size: int, source: str | None, mtime: bool, pool: ThreadPoolExecutor,
    prepare: Callable[[list[_Read]], tuple[dict[str, dict], dict]],
) -> Iterator[_Chunk]:
    """Reads and hashes chunk i+1 in the background while chunk i is processed, and runs
    ``prepare`` on its readable files (what the store holds of them, decoded pixels)."""
    def job(paths: Sequence[Path]) -> _Chunk:
        good, bad = _read_chunk(paths, source, mtime)
        return (good, bad, *prepare(good))

    starts = range(0, len(files), size)
    pending: Future | None = None
    for start in starts:
        current = pending or pool.submit(job, files[start:start + size])
        nxt = start + size
        pending = None
        if nxt < len(files):
            pending = pool.submit(job, files[nxt:nxt + size])
        yield current.result()


def _same(stored: dict, meta: ImageMeta, fingerprint: str) -> bool:
    return (
        stored.get("model") == fingerprint and stored.get("path") == meta.path
        and stored.get("person_id") == meta.person_id and stored.get("camera") == meta.camera
        and stored.get("source") == meta.source and stored.get("captured_at") == meta.captured_at
    )


def ingest(
    files: Sequence[Path], store: MilvusStore, extractor: FeatureExtractor, *,
    batch_size: int = 64, source: str | None = None, force: bool = False,
    time_from_mtime: bool = False, on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Stores the descriptors of ``files`` in the collection pair of ``store``.

    The primary key is the sha256 of the file bytes, so ingesting an image twice
    updates it instead of duplicating it; an image already stored with the same
    model and metadata is left alone (an interrupted run resumes cheaply) unless
    ``force``. Unusable files are skipped and counted by reason. With
    ``time_from_mtime`` the capture time is the file's modification time.
    Returns once a search would see every image written.

    Raises:
        InputError: no file could be used at all.
    """
    t0 = time.perf_counter()
    report = IngestReport(files=len(files))
    report.created = ensure_collection(store, extractor)
    size = extractor.input_size
    fp = extractor.fingerprint
    seen: set[str] = set()
    last: list[str] = []  # ids of the last batch written
    writing: Future | None = None  # the previous batch's upsert, running meanwhile

    def stale(r: _Read, stored: dict[str, dict]) -> bool:
        return force or not (r.digest in stored and _same(stored[r.digest], r.meta, fp))

    def prepare(reads: list[_Read]) -> tuple[dict[str, dict], dict]:
        """In the background: the stored records of a chunk, and the pixels of the files
        that need computing (decoding overlaps the forward pass of the chunk before)."""
        stored = store.existing([r.digest for r in reads]) if reads else {}
        pixels: dict[str, np.ndarray | SkipImage] = {}
        for r in reads:
            if stale(r, stored):
                try:
                    pixels[r.digest] = decode(r.data, size).pixels
                except SkipImage as e:
                    pixels[r.digest] = e
        return stored, pixels

    with ThreadPoolExecutor(max_workers=1) as io_pool, \
            ThreadPoolExecutor(max_workers=1) as writer:
        for reads, bad, stored, pixels in _chunks(files, batch_size, source, time_from_mtime,
                                                  io_pool, prepare):
            for p, reason in bad:
                report.skip(p, reason)
            fresh: list[_Read] = []
            for r in reads:
                if r.digest in seen:
                    report.skip(r.path, "duplicate content")
                else:
                    seen.add(r.digest)
                    fresh.append(r)
            todo = [r for r in fresh if stale(r, stored)]
            report.unchanged += len(fresh) - len(todo)
            ok: list[tuple[_Read, np.ndarray]] = []
            for r in todo:
                px = pixels[r.digest]
                if isinstance(px, SkipImage):
                    report.skip(r.path, px.reason)
                else:
                    ok.append((r, px))
            if ok:
                d = extractor.extract(to_batch([px for _, px in ok]))
                last = [r.digest for r, _ in ok]
                if writing is not None:
                    writing.result()  # in order, one at a time; its error surfaces here
                writing = writer.submit(store.upsert, last, d.global_, d.local,
                                        [r.meta for r, _ in ok], fp)
                for r, _ in ok:
                    if r.digest in stored:
                        report.updated += 1
                    else:
                        report.ingested += 1
            if on_progress:
                on_progress(len(reads) + len(bad))
        if writing is not None:
            writing.result()
    if report.computed:
        if store.is_lite:  # sealed segments: later searches and counts are ~3x faster on
            store.flush()  # Lite; a server seals on its own and its flush waits seconds
        store.wait_visible(last, present=True)  # batches are written in order
    report.seconds = time.perf_counter() - t0
    if report.files and report.skipped.total() == report.files:
        raise InputError(
            f"none of the {report.files} file(s) could be ingested "
            f"({', '.join(f'{n} {r}' for r, n in report.skipped.items())})"
        )
    return report
