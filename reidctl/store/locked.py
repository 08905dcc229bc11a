"""A store whose calls run one at a time, for a process that searches and writes from
several threads (the Python API under a web server).

Milvus Lite runs in this process, and its engine is single-writer per collection and
not made for concurrent calls (``milvus_lite.adapter.grpc.server``: "concurrent writes
against the same Collection are not" safe); a server is. :class:`LockedStore` wraps a
:class:`~reidctl.store.MilvusStore` so that each of its methods holds one lock while it
runs: a search waits for an ingest's current write, never for the whole ingest.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from reidctl.store.milvus import MilvusStore


class LockedStore:
    """Every method of ``store`` called under one re-entrant lock; attributes and
    properties read as they are. Anything that takes a :class:`MilvusStore` takes it.

    Args:
        store: the store to wrap (closed with this wrapper).
        lock: the lock to hold (default: a new one).

    Attributes:
        store: the wrapped store; lock: the lock.
    """

    def __init__(self, store: MilvusStore, lock: threading.RLock | None = None) -> None:
        self.store = store
        self.lock = lock or threading.RLock()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the store has
        value = getattr(self.store, name)
        if not callable(value):
            return value
        return self._locked(value)

    def _locked(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            with self.lock:
                return method(*args, **kwargs)
        return call

    def __enter__(self) -> LockedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LockedStore({self.store!r})"
