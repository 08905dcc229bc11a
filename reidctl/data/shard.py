"""Splitting one ingest across N independent workers (``--shard i/N``).

Each worker lists the same input tree, keeps the files whose shard number is
its own and ingests only those. No coordination is needed: the assignment is a
pure function of the file's path, so every worker, on any machine, in any
Python process, on any run, computes the same split.

Why the path and not the content:

- the shard must be decided *before* any work is done on a file. Hashing the
  content would make every worker read every file of the whole gallery just to
  find out which ones are its own (N times the I/O of the ingest itself); the
  path is already in memory from the directory listing, so it costs nothing;
- correctness does not depend on it: the primary key in Milvus is still the
  sha256 of the file's bytes, so two identical files with different paths that
  land on two workers are stored once (the second write is an upsert, or is
  skipped as already stored).

Why sha256 and not ``hash()``: Python salts ``str`` hashes per process
(``PYTHONHASHSEED``), so ``hash(path) % N`` would give every worker a different
split and some files would be ingested twice and others never. The first 8 bytes
of a sha256 digest are uniformly distributed, so shards come out balanced.

The key is the path *relative to the ingest root* (when one is given), in POSIX
form: workers that mount the same images at different places (``/data/images``
on one node, ``/mnt/gallery`` on another) still agree on the split.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

from reidctl.errors import InputError

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """Parses a ``--shard`` value of the form ``i/N``.

    Args:
        text: ``"i/N"`` with ``i`` the 0-based shard index and ``N`` the number
            of shards, ``0 <= i < N`` and ``N >= 1`` (``"0/1"`` is the whole input).

    Returns:
        ``(index, count)``.

    Raises:
        InputError: the text is not of that form or the numbers are out of range.
    """
    m = _SHARD_RE.match(text) if isinstance(text, str) else None
    if m is not None:
        index, count = int(m.group(1)), int(m.group(2))
        if count >= 1 and 0 <= index < count:
            return index, count
    raise InputError(f"--shard must look like i/N with 0 <= i < N, got {text!r}")


def _check(index: int, count: int) -> None:
    """Raises InputError unless ``0 <= index < count``."""
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard index must satisfy 0 <= i < N, got {index}/{count}")


def shard_key(path: Path | str, root: Path | str | None = None) -> str:
    """The string a file's shard is computed from.

    Args:
        path: the file, as listed.
        root: the ingest root the listing started from; ``None`` to use ``path``
            as given.

    Returns:
        ``path`` relative to ``root`` (or ``path`` itself), in POSIX form.

    Raises:
        InputError: ``path`` is not inside ``root``.
    """
    p = PurePath(path)
    if root is not None:
        try:
            p = p.relative_to(PurePath(root))
        except ValueError:
            raise InputError(f"{path} is not under the ingest root {root}") from None
    return p.as_posix()


def shard_of(key: str, count: int) -> int:
    """The shard number of a key: first 8 bytes of its sha256, big-endian, modulo ``count``.

    Args:
        key: a string from :func:`shard_key`.
        count: the number of shards, ``>= 1``.

    Returns:
        An int in ``[0, count)``; the same on every machine and in every process.
    """
    # surrogateescape: file names that are not valid UTF-8 still map to their raw bytes
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(path: Path | str, index: int, count: int, root: Path | str | None = None) -> bool:
    """Whether a file belongs to shard ``index`` of ``count``.

    Args:
        path: the file. Pass it relative to the ingest root, or pass ``root``.
        index: this worker's 0-based shard index.
        count: the number of shards.
        root: optional ingest root ``path`` is made relative to.

    Returns:
        True when the file is this worker's to ingest.

    Raises:
        InputError: ``index``/``count`` out of range, or ``path`` outside ``root``.
    """
    _check(index, count)
    if count == 1:
        return True
    return shard_of(shard_key(path, root), count) == index


def select_shard(
    files: Sequence[Path], index: int, count: int, root: Path | None = None
) -> list[Path]:
    """Keeps the files of one shard, in their input order.

    Over ``index = 0 .. count-1`` the results partition ``files``: every file is
    in exactly one shard, whatever the order of ``files``.

    Args:
        files: the full listing (for example from ``reidctl.data.images.discover``).
        index: this worker's 0-based shard index.
        count: the number of shards.
        root: the ingest root the listing started from; keys are made relative
            to it so that workers with different mount points agree.

    Returns:
        The files of shard ``index``.

    Raises:
        InputError: ``index``/``count`` out of range, or a file outside ``root``.
    """
    _check(index, count)
    if count == 1:
        return list(files)
    return [f for f in files if shard_of(shard_key(f, root), count) == index]
