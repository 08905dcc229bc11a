"""Milvus boolean expressions for a :class:`~reidctl.types.Selection` (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from reidctl.types import Selection


def quote(value: str) -> str:
    """A Milvus string literal: backslashes and double quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(quote(v) for v in values)}]"


def like_stem(prefix: str) -> str:
    """The part of ``prefix`` before its first ``%``, ``_`` or backslash."""
    return re.split(r"[%_\\]", prefix, maxsplit=1)[0]


def to_expr(sel: Selection) -> str:
    """The filter expression selecting ``sel`` in the global collection ("" = everything).

    A path prefix becomes a ``like`` pre-filter on its longest stem free of ``%``, ``_``
    and ``\\`` (wildcards in some Milvus versions, and the escape character of others), so
    the pre-filter never misses a path; callers that act on the result (delete) check the
    prefix exactly on the returned paths. ``sel`` itself cannot hold a blank value
    (see :class:`~reidctl.types.Selection`), so every criterion narrows.
    """
    parts: list[str] = []
    if sel.ids:
        parts.append(_in("id", sel.ids))
    if sel.path_prefix is not None:
        stem = like_stem(sel.path_prefix)
        if stem:
            parts.append(f"path like {quote(stem + '%')}")
    if sel.cameras:
        parts.append(_in("camera", sel.cameras))
    if sel.exclude_cameras:
        parts.append(f"not ({_in('camera', sel.exclude_cameras)})")
    if sel.sources:
        parts.append(_in("source", sel.sources))
    if sel.person_ids:
        parts.append(_in("person_id", sel.person_ids))
    if sel.after_ms is not None:
        parts.append(f"captured_at >= {int(sel.after_ms)}")
    if sel.before_ms is not None:
        parts.append(f"captured_at < {int(sel.before_ms)}")
        if sel.after_ms is None:
            parts.append("captured_at >= 0")  # -1 means unknown: not inside any window
    return " and ".join(f"({p})" for p in parts)
