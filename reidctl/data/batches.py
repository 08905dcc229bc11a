"""From image files to model input: decode and resize, stack into batches, prefetch.

The one path every command takes from pictures to ``(B, 3, H, W)`` float tensors in
``[0, 1]``; the model normalises them (:func:`reidctl.model.normalize`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from reidctl.data.images import SkipImage, load, load_given

T = TypeVar("T")
R = TypeVar("R")

DECODE_THREADS = 2  # chunks decoded at once, ahead of the one the model is on
_END = object()


def to_batch(pixels: Sequence[np.ndarray]) -> torch.Tensor:
    """Stacks (3, H, W) uint8 arrays into a (B, 3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.stack(pixels)).float().div_(255.0)  # (B, 3, H, W)


def hwc_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stacks (H, W, 3) uint8 arrays into a (B, 3, H, W) float tensor in [0, 1] whose memory
    is channels-last, the layout the CPU convolutions want (so the model makes no copy).

    Same values as :func:`to_batch` of the transposed arrays. Built with numpy alone, so a
    background thread can run it without starting a second pool of torch threads.
    """
    arr = np.stack(images).astype(np.float32)  # (B, H, W, 3)
    arr /= np.float32(255.0)
    return torch.from_numpy(arr).permute(0, 3, 1, 2)  # (B, 3, H, W) view, NHWC memory


def prefetch(items: Iterable[T], job: Callable[[T], R], pool: Executor, ahead: int,
             ) -> Iterator[R]:
    """``job(item)`` for each item, in order, with up to ``ahead`` jobs running on ``pool``
    while the caller works on the result before them.

    A job's exception is raised when its result is reached.
    """
    todo = iter(items)
    pending: deque[Future[R]] = deque()

    def submit() -> None:
        item = next(todo, _END)
        if item is not _END:
            pending.append(pool.submit(job, item))

    for _ in range(ahead):
        submit()
    while pending:
        current = pending.popleft()
        submit()
        yield current.result()


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``size`` items (the last one shorter)."""
    return (items[start:start + size] for start in range(0, len(items), size))


def decoded_batches(
    paths: Sequence[Path | str], size: tuple[int, int], batch_size: int, *, strict: bool,
    on_skip: Callable[[Path | str, str], None] | None = None,
) -> Iterator[tuple[int, list[Path | str], torch.Tensor]]:
    """Decodes images batch by batch, the next ones in background threads.

    Args:
        paths: image files.
        size: ``(H, W)`` every image is resized to.
        batch_size: files per batch.
        strict: a missing or unusable image raises InputError; otherwise it is
            passed to ``on_skip(path, reason)`` and left out.
        on_skip: see ``strict``; called in the caller's thread, in file order.

    Yields:
        (paths read, paths kept in the batch, (B, 3, H, W) float tensor in [0, 1]).
    """
    def _load(p: Path | str) -> np.ndarray | str:
        # no is_file() check first: reading says what is wrong (missing, a pipe, too large,
        # a name too long for the system) without opening anything that could block
        if strict:
            return load_given(p, size, "query image").pixels
        try:
            return load(p, size).pixels
        except SkipImage as e:
            return e.reason

    def _chunk(chunk: Sequence[Path | str]) -> list[tuple[Path | str, np.ndarray | str]]:
        return [(p, _load(p)) for p in chunk]

    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for loaded in prefetch(chunks(paths, batch_size), _chunk, pool, DECODE_THREADS):
            kept: list[Path | str] = []
            pixels: list[np.ndarray] = []
            for p, px in loaded:
                if isinstance(px, str):
                    if on_skip:
                        on_skip(p, px)
                else:
                    kept.append(p)
                    pixels.append(px)
            yield len(loaded), kept, (to_batch(pixels) if pixels else torch.zeros(0, 3, *size))
