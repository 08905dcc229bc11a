"""Pieces shared by the pipelines: batched extraction, collection set-up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from reidctl.config import DEFAULT_BATCH
from reidctl.data.batches import decoded_batches
from reidctl.errors import StoreError
from reidctl.model import FeatureExtractor
from reidctl.store import MilvusStore

ProgressFn = Callable[[int], None]


def extract_files(
    extractor: FeatureExtractor, paths: Sequence[Path | str], batch_size: int = DEFAULT_BATCH,
    on_progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of query images; any unusable image is an error.

    Returns:
        f_g (N, Dg) and f_l (N, Dl) float32, in the order of ``paths``.

    Raises:
        InputError: a path is missing or is not a usable image.
    """
    out_g: list[np.ndarray] = []
    out_l: list[np.ndarray] = []
    for n, _, batch in decoded_batches(paths, extractor.input_size, batch_size, strict=True):
        d = extractor.extract(batch)
        out_g.append(d.global_)
        out_l.append(d.local)
        if on_progress:
            on_progress(n)
    return np.concatenate(out_g), np.concatenate(out_l)


class ForwardStreams:
    """Runs :meth:`FeatureExtractor.extract` on several batches at once, for throughput.

    On a CPU the torch threads are split between ``streams`` threads that each run whole
    batches (2 streams of 1 thread on 2 cores): a batch's many small operations then never
    wait for the other core at the end of each one, and the same descriptors come out bit
    for bit. Which way is faster depends on the batch and the allocator settings, and
    neither is ahead in every run: ``reidctl bench`` and ``scripts/forward_speed.py`` time
    both. On a GPU: one stream.
    Use as a context manager; ``submit`` returns a future of the descriptors.
    """

    def __init__(self, extractor: FeatureExtractor, streams: int | None = None) -> None:
        threads = torch.get_num_threads()
        cpu = extractor.device.type == "cpu"
        self.streams = streams or (2 if cpu and threads >= 2 else 1)
        per = max(1, threads // self.streams)
        self.extractor = extractor
        self._pool = ThreadPoolExecutor(
            self.streams, thread_name_prefix="forward",
            initializer=torch.set_num_threads if cpu else None, initargs=(per,) if cpu else ())

    def submit(self, batch: torch.Tensor) -> Future:
        return self._pool.submit(self.extractor.extract, batch)

    def __enter__(self) -> ForwardStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)


def model_record(extractor: FeatureExtractor) -> dict:
    """What the collection records about the model that made its vectors."""
    info = extractor.describe()
    info.pop("open_set", None)  # a search setting, not a property of the vectors
    return {k: (v if isinstance(v, (str, int, float)) else str(v)) for k, v in info.items()}


def ensure_collection(store: MilvusStore, extractor: FeatureExtractor) -> bool:
    """Creates the collection pair for this model, or checks it holds this model's vectors.

    Returns:
        True when the pair was created now.
    """
    if store.exists():
        store.check_model(extractor.fingerprint)
        return False
    try:
        store.create(
            global_dim=extractor.global_dim, local_dim=extractor.local_dim,
            model=model_record(extractor),
        )
    except StoreError:
        if not store.exists():  # not a race with another worker creating the same pair
            raise
        store.check_model(extractor.fingerprint)
        return False
    return True
