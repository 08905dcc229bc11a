"""The scale benchmark's data: cached distractor descriptors (resumable chunk files)
and the collection pairs grown from them (see :mod:`reidctl.pipeline.bench`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reidctl.data import distractors as dx
from reidctl.data.batches import to_batch
from reidctl.data.images import SkipImage, content_id, load
from reidctl.errors import InputError, StoreError
from reidctl.model import FeatureExtractor
from reidctl.pipeline.common import (
    DEFAULT_BATCH,
    ProgressFn,
    ensure_collection,
    extract_files,
)
from reidctl.store import MilvusStore
from reidctl.timing import Stopwatch
from reidctl.types import ImageMeta

CACHE_FORMAT = "reidctl.bench_cache/1"
DEFAULT_CHUNK = 2048  # distractors per cache file
F_L_DTYPE = "float16"  # cached f_l: half the disk, max abs error ~1e-4 (recorded per chunk)


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Features:
    """Gallery or query images with their descriptors (f_g, f_l float32, row-aligned)."""

    metas: list[ImageMeta]
    ids: list[str]
    f_g: np.ndarray  # (n, Dg)
    f_l: np.ndarray  # (n, Dl)
    extract_ms: list[float] = field(default_factory=list)  # per image, queries only


class DistractorCache:
    """Descriptors of distractors ``[0, n)`` in chunk files under ``folder``.

    ``chunk_%06d.npz`` holds distractors ``[k C, (k + 1) C)``: ``f_g`` float32 (C, Dg),
    ``f_l`` float16 (C, Dl; float32 max abs error in ``f_l_err``), ``ids`` (C,). Each
    file is written to a temporary name and renamed, so a file that exists is complete.
    ``manifest.json`` records the recipe; a folder made with other settings is refused.
    """

    def __init__(self, folder: Path, extractor: FeatureExtractor, train_files: Sequence[Path],
                 seed: int, chunk_size: int = DEFAULT_CHUNK,
                 batch_size: int = DEFAULT_BATCH) -> None:
        if chunk_size < 1:
            raise InputError(f"chunk size must be positive, got {chunk_size}")
        self.folder = Path(folder)
        self.extractor, self.files, self.seed = extractor, list(train_files), int(seed)
        self.chunk_size, self.batch_size = int(chunk_size), int(batch_size)
        self.key = dx.recipe_key(self.files, self.seed)
        self.manifest = {
            "format": CACHE_FORMAT, "recipe": dx.RECIPE_VERSION, "recipe_key": self.key,
            "seed": self.seed, "chunk_size": self.chunk_size, "train_images": len(self.files),
            "model_fingerprint": extractor.fingerprint, "f_l_dtype": F_L_DTYPE,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "manifest.json"
        if path.exists():
            stored = json.loads(path.read_text())
            if stored != self.manifest:
                diff = sorted(k for k in self.manifest if stored.get(k) != self.manifest[k])
                raise InputError(f"bench cache {self.folder} was made with other settings "
                                 f"({', '.join(diff)}): use another --cache folder")
        else:
            tmp = path.with_name("manifest.json.tmp")
            tmp.write_text(json.dumps(self.manifest, indent=2) + "\n")
            os.replace(tmp, path)

    def chunk_path(self, k: int) -> Path:
        return self.folder / f"chunk_{k:06d}.npz"

    def chunks(self, n: int) -> range:
        """Indices of the chunks that hold distractors ``[0, n)``."""
        return range(-(-n // self.chunk_size))

    def missing(self, n: int) -> list[int]:
        return [k for k in self.chunks(n) if not self.chunk_path(k).exists()]

    def ids(self, start: int, stop: int) -> list[str]:
        return [dx.distractor_id(self.key, i) for i in range(start, stop)]

    def ensure(self, n: int, on_progress: ProgressFn | None = None) -> list[int]:
        """Computes the missing chunks of distractors ``[0, n)``; returns their indices."""
        todo = self.missing(n)
        for k in todo:
            self._compute(k, on_progress)
        return todo

    def _compute(self, k: int, on_progress: ProgressFn | None) -> None:
        start, size, bs = k * self.chunk_size, self.extractor.input_size, self.batch_size
        index = list(range(start, start + self.chunk_size))

        def make(i: int) -> np.ndarray:
            return dx.to_pixels(dx.make_distractor(i, self.files, self.seed), size)

        gs: list[np.ndarray] = []
        ls: list[np.ndarray] = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            def submit(b: int) -> list[Future]:
                return [pool.submit(make, i) for i in index[b:b + bs]]

            pending = submit(0)  # images of batch b + 1 are drawn while batch b runs
            for b in range(0, len(index), bs):
                batch = [f.result() for f in pending]
                pending = submit(b + bs)
                d = self.extractor.extract(to_batch(batch))
                gs.append(d.global_)
                ls.append(d.local)
                if on_progress:
                    on_progress(len(batch))
        f_l = np.concatenate(ls)
        f_l16 = f_l.astype(np.float16)
        err = float(np.abs(f_l16.astype(np.float32) - f_l).max())
        _atomic_save(self.chunk_path(k), f_g=np.concatenate(gs), f_l=f_l16,
                     ids=np.array(self.ids(start, start + self.chunk_size)),
                     f_l_err=np.float32(err))

    def load(self, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Chunk ``k``: f_g (C, Dg) float32, f_l (C, Dl) float16, f_l's float16 error."""
        path = self.chunk_path(k)
        try:
            with np.load(path, allow_pickle=False) as z:
                f_g, f_l, ids, err = z["f_g"], z["f_l"], z["ids"], float(z["f_l_err"])
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"unreadable bench cache file {path} ({e}): delete it") from None
        first = k * self.chunk_size
        if len(ids) != self.chunk_size or ids[0] != dx.distractor_id(self.key, first):
            raise InputError(f"bench cache file {path} does not hold the expected distractors: "
                             "delete it")
        return f_g, f_l, err

    def blocks(self, n: int, rows: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Distractors ``[0, n)`` in blocks of about ``rows``: (start, f_g, f_l float16)."""
        gs: list[np.ndarray] = []
        ls: list[np.ndarray] = []
        start = filled = 0
        for k in self.chunks(n):
            g, loc, _ = self.load(k)
            take = min(self.chunk_size, n - k * self.chunk_size)
            gs.append(g[:take])
            ls.append(loc[:take])
            filled += take
            if filled >= rows or k == self.chunks(n)[-1]:
                yield start, np.concatenate(gs), np.concatenate(ls)
                start += filled
                gs, ls, filled = [], [], 0

    def max_error(self, n: int) -> float:
        """Largest float16 error of f_l over the chunks of ``[0, n)`` (reads only that)."""
        worst = 0.0
        for k in self.chunks(n):
            with np.load(self.chunk_path(k), allow_pickle=False) as z:
                worst = max(worst, float(z["f_l_err"]))
        return worst


def gallery_features(cache: DistractorCache, metas: Sequence[ImageMeta],
                     on_progress: ProgressFn | None = None) -> Features:
    """The protocol gallery's descriptors, cached beside the chunks (``gallery.npz``).

    Ids are the sha256 of the file bytes, as ingest makes them; repeated content is
    kept once.
    """
    path = cache.folder / "gallery.npz"
    paths = [m.path for m in metas]
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if z["paths"].tolist() == paths:
                ids, f_g, f_l = z["ids"].tolist(), z["f_g"], z["f_l"]
                return _unique(Features(list(metas), ids, f_g, f_l))
    ids = [content_id(Path(p)) for p in paths]
    f_g, f_l = extract_files(cache.extractor, paths, cache.batch_size, on_progress=on_progress)
    _atomic_save(path, paths=np.array(paths), ids=np.array(ids), f_g=f_g, f_l=f_l)
    return _unique(Features(list(metas), ids, f_g, f_l))


def _unique(f: Features) -> Features:
    keep = sorted({pk: i for i, pk in reversed(list(enumerate(f.ids)))}.values())
    return Features([f.metas[i] for i in keep], [f.ids[i] for i in keep], f.f_g[keep],
                    f.f_l[keep])


def extract_queries(extractor: FeatureExtractor, metas: Sequence[ImageMeta],
                    on_progress: ProgressFn | None = None) -> Features:
    """Query descriptors, one image at a time (read, decode, forward) and timed."""
    gs, ls, ms = [], [], []
    for q in metas:
        with Stopwatch() as sw:
            try:
                px = load(q.path, extractor.input_size).pixels
            except SkipImage as e:
                raise InputError(f"cannot use query image {q.path}: {e}") from None
            d = extractor.extract(to_batch([px]))
        ms.append(sw.ms)
        gs.append(d.global_)
        ls.append(d.local)
        if on_progress:
            on_progress(1)
    return Features(list(metas), [], np.concatenate(gs), np.concatenate(ls), ms)


@dataclass
class GrowReport:
    inserted: int = 0
    seconds: float = 0.0


def _present(store: MilvusStore, cache: DistractorCache, n_gallery: int) -> int | None:
    """Distractors stored, when they are the prefix ``[0, p)``; None otherwise."""
    p = store.count() - n_gallery
    if p < 0:
        return None
    probe = cache.ids(max(p - 1, 0), p + 1)
    found = store.existing(probe, complete=False)
    ok = (p == 0 or probe[0] in found) and probe[-1] not in found
    return p if ok else None


def _fill(store: MilvusStore, cache: DistractorCache, n: int, p: int | None, fp: str,
          on_progress: ProgressFn | None) -> list[str]:
    """Upserts the distractors of ``[0, n)`` not stored: those from ``p`` on when the
    stored ones are the prefix ``[0, p)``, else the ones ``existing`` does not find."""
    written: list[str] = []
    for k in cache.chunks(n):
        lo, hi = k * cache.chunk_size, min((k + 1) * cache.chunk_size, n)
        if on_progress:
            on_progress(hi - lo)
        if p is not None and hi <= p:
            continue
        ids = cache.ids(lo, hi)
        if p is None:
            found = store.existing(ids, complete=False)
            rows = [j for j, pk in enumerate(ids) if pk not in found]
        else:
            rows = list(range(max(p, lo) - lo, hi - lo))
        if rows:
            f_g, f_l, _ = cache.load(k)
            batch = [ids[j] for j in rows]
            store.upsert(batch, f_g[rows], f_l[rows].astype(np.float32),
                         [dx.distractor_meta(cache.key, lo + j) for j in rows], fp)
            written += batch
    return written


def grow(store: MilvusStore, extractor: FeatureExtractor, cache: DistractorCache,
         gallery: Features, n: int, on_progress: ProgressFn | None = None) -> GrowReport:
    """Makes the pair hold exactly the gallery plus distractors ``[0, n)``.

    Resumable: rows already stored are skipped. Distractors are written in index
    order, so the stored ones are normally the prefix ``[0, p)`` given by the row
    count (checked at its end); when they are not, or the count still disagrees
    afterwards, every chunk is checked id by id.

    Raises:
        StoreError: the pair holds rows that are neither (it was written by hand).
    """
    clock = Stopwatch.started()
    rep = GrowReport()
    ensure_collection(store, extractor)
    fp = extractor.fingerprint
    have = store.existing(gallery.ids, complete=False)
    todo = [i for i, pk in enumerate(gallery.ids) if pk not in have]
    written = [gallery.ids[i] for i in todo]
    if todo:
        store.upsert(written, gallery.f_g[todo], gallery.f_l[todo],
                     [gallery.metas[i] for i in todo], fp)
    ng = len(gallery.ids)
    p = _present(store, cache, ng)
    written += _fill(store, cache, n, p, fp, on_progress)
    if p is not None and store.count() != ng + n:  # a hole below the count: check each id
        written += _fill(store, cache, n, None, fp, None)
    if written:
        store.flush()
        store.wait_visible(written[-1:], present=True)
    count = store.count()
    if count != ng + n:
        raise StoreError(f"collection pair {store.name!r} holds {count} images, expected "
                         f"{ng} gallery + {n} distractors: drop it and run again")
    rep.inserted = len(set(written))
    rep.seconds = clock.elapsed()
    return rep
