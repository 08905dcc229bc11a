"""Pure helpers between reidctl values and Milvus rows / expressions (no I/O)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reidctl.errors import StoreError
from reidctl.store.schema import CollectionSpec
from reidctl.types import Hit, ImageMeta

# Metadata returned with each search hit, and by existing().
HIT_FIELDS = ("person_id", "camera", "source", "path")
EXISTING_FIELDS = ("path", "model", "person_id", "camera", "source", "captured_at")

_SAFE_ID = re.compile(r"[^\"'\\\x00-\x1f]+")


def check_ids(ids: Sequence[str], max_length: int) -> list[str]:
    """Validate primary keys before they go into an expression.

    Args:
        ids: primary keys (sha256 hex in practice).
        max_length: the VARCHAR length of the key field, in UTF-8 bytes.

    Raises:
        ValueError: an id is not a non-empty string of at most ``max_length``
            UTF-8 bytes free of quotes, backslashes and control characters.
    """
    out = list(ids)
    for pk in out:
        size = utf8_size(pk) if isinstance(pk, str) else None
        if size is None or size > max_length or not _SAFE_ID.fullmatch(pk):
            raise ValueError(
                f"invalid id {pk!r}: need 1..{max_length} UTF-8 bytes without quotes "
                "or backslashes"
            )
    return out


def in_expr(field: str, ids: Sequence[str]) -> str:
    """``field in ["a","b"]`` for ids already passed through :func:`check_ids`."""
    return f"{field} in [" + ",".join(f'"{pk}"' for pk in ids) + "]"


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_matrix(name: str, x: np.ndarray, rows: int | None) -> np.ndarray:
    """``x`` as a C-contiguous float32 (rows, D) matrix; the caller checks D.

    Raises:
        ValueError: not 2-D, another row count, or non-finite values.
    """
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2 or (rows is not None and a.shape[0] != rows):
        want = f"({rows if rows is not None else 'Q'}, D)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def meta_row(meta: ImageMeta) -> dict[str, Any]:
    """The global collection's metadata columns for one image."""
    return {
        "person_id": meta.person_id,
        "camera": meta.camera,
        "source": meta.source,
        "path": meta.path,
        "captured_at": int(meta.captured_at),
    }


def utf8_size(text: str) -> int | None:
    """Bytes of ``text`` in UTF-8, the unit of a VARCHAR's ``max_length`` (a Milvus server
    counts bytes; Milvus Lite does not check at all), or None when ``text`` has no UTF-8
    form (lone surrogates: how Python spells file names whose bytes are not UTF-8)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


@dataclass(frozen=True)
class FieldProblem:
    """Why a value cannot be stored in a VARCHAR field.

    Attributes:
        field: the field's name.
        label: ``"too long"`` or ``"not valid UTF-8"`` (with ``field``, a reason to count by).
        detail: the numbers, e.g. ``"80 bytes in UTF-8 (40 characters), the global
            collection allows 64 bytes"``.
    """

    field: str
    label: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field} {self.label}: {self.detail}"


def varchar_problem(spec: CollectionSpec, name: str, value: object) -> FieldProblem | None:
    """Why ``value`` cannot be stored in the VARCHAR field ``name`` of ``spec``, or None."""
    limit = spec.field(name).max_length or 0
    if not isinstance(value, str):
        return FieldProblem(name, "not text", f"a {type(value).__name__} value")
    size = utf8_size(value)
    if size is None:
        return FieldProblem(name, "not valid UTF-8",
                            f"{value!r:.80} holds characters that have no UTF-8 form")
    if size > limit:
        return FieldProblem(name, "too long", f"{size:,} bytes in UTF-8 ({len(value):,} "
                            f"characters), the {spec.role} collection allows {limit:,} bytes")
    return None


def row_problem(spec: CollectionSpec, row: dict[str, Any]) -> FieldProblem | None:
    """The first VARCHAR value of ``row`` that ``spec`` cannot store, or None."""
    for f in spec.fields:
        if f.type == "VARCHAR" and f.name in row:
            problem = varchar_problem(spec, f.name, row[f.name])
            if problem:
                return problem
    return None


def check_lengths(spec: CollectionSpec, row: dict[str, Any], index: int) -> None:
    """Raise StoreError when a VARCHAR value does not fit its field (UTF-8 bytes) or is
    not valid UTF-8 text."""
    problem = row_problem(spec, row)
    if problem:
        raise StoreError(f"row {index}: {problem}")


def pick(row: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The subset ``fields`` of a returned row, as plain Python values."""
    return {k: row.get(k) for k in fields}


def stack(vectors: Sequence[Any], dim: int) -> np.ndarray:
    """Returned vectors (lists or float32 arrays) as an (n, dim) float32 matrix."""
    if not vectors:
        return np.empty((0, dim), dtype=np.float32)
    return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)


def to_hits(hits: Sequence[Any], fields: Sequence[str] = HIT_FIELDS) -> list[Hit]:
    """One query's Milvus hits as ranked :class:`~reidctl.types.Hit`, nearest first, with
    the metadata ``fields`` that were asked for (the others left empty)."""

    # Milvus reports L2 as the *squared* distance: square-rooted here, after clipping
    # float round-off below zero
    found = []
    for h in hits:
        entity = h.get("entity") or {}
        d2 = max(float(h["distance"]), 0.0)
        found.append((str(h["id"]), math.sqrt(d2), entity))
    found.sort(key=lambda t: t[1])
    return [Hit(rank=r + 1, id=pk, distance=d,
                **{f: str(entity.get(f) or "") if f in fields else "" for f in HIT_FIELDS})
            for r, (pk, d, entity) in enumerate(found)]


def level(fresh: bool) -> str:
    """The Milvus consistency level of a read: Strong sees every write acknowledged so
    far; Bounded may lag a server's writes by up to a few seconds, and does not wait."""
    return "Strong" if fresh else "Bounded"


def write_batch_rows(dims: int, budget_bytes: int = 8 << 20, cap: int = 2000) -> int:
    """Rows per write request so one request stays near ``budget_bytes``.

    Args:
        dims: total float dimensions written per row (Dg + Dl).
    """
    per_row = 4 * dims + 2600  # vectors + worst-case metadata strings
    return max(1, min(cap, budget_bytes // per_row))
