"""Wall-clock timing: a stopwatch and a timer collecting milliseconds per named stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType

import numpy as np


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """``{"ms_p50", "ms_p95"}`` of per-query milliseconds, as every report gives them."""
    return {"ms_p50": float(np.percentile(ms, 50)), "ms_p95": float(np.percentile(ms, 95))}


class Stopwatch:
    """Times one ``with`` block; ``sync`` (a CUDA synchronise) runs at both ends, so that
    queued device work is counted where it was issued."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self._t0 = 0.0
        self.seconds = 0.0

    @classmethod
    def started(cls) -> Stopwatch:
        """A stopwatch running from now, read with :meth:`elapsed` (no ``with`` block)."""
        return cls().__enter__()

    def __enter__(self) -> Stopwatch:
        if self._sync:
            self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._sync:
            self._sync()
        self.seconds = time.perf_counter() - self._t0

    @property
    def ms(self) -> float:
        """The block's milliseconds (0 until it has ended)."""
        return self.seconds * 1e3

    def elapsed(self) -> float:
        """Seconds since the block started, read while it runs."""
        return time.perf_counter() - self._t0


class Timer:
    """Milliseconds per named stage, one entry per timed call (per query, usually)."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self.stages: dict[str, list[float]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times the ``with`` block and appends its milliseconds to ``name``."""
        with Stopwatch(self._sync) as sw:
            yield
        self.add(name, sw.ms)

    def add(self, name: str, ms: float) -> None:
        """Appends a measurement taken elsewhere."""
        self.stages.setdefault(name, []).append(ms)

    def ms(self, name: str) -> list[float]:
        """Every measurement of ``name``, in order (empty if never timed)."""
        return self.stages.get(name, [])

    def p50(self, *names: str) -> dict[str, float]:
        """The median milliseconds of each of ``names``."""
        return {n: float(np.percentile(self.ms(n), 50)) for n in names}
