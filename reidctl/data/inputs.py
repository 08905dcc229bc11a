"""The files an ingest takes: the given files and folders, then this worker's shard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reidctl.data.images import discover
from reidctl.data.shard import parse_shard, select_shard


def ingest_files(paths: Sequence[Path], shard: str | None = None) -> list[Path]:
    """Lists the image files of ``paths`` and keeps those of one shard.

    Args:
        paths: files and folders (folders are walked recursively, see
            :func:`~reidctl.data.images.discover`).
        shard: ``"i/N"`` to keep only shard ``i`` of ``N``, or None for every file.
            With a single folder given, shard keys are paths relative to it, so that
            workers that mount the images at different places agree on the split.

    Returns:
        The files, sorted (a shard keeps their order).

    Raises:
        InputError: a path does not exist, nothing was found, or ``shard`` is not
            of the form ``i/N`` with ``0 <= i < N``.
    """
    files = discover(paths)
    if shard is None:
        return files
    index, count = parse_shard(shard)
    root = Path(paths[0]).expanduser().resolve() if len(paths) == 1 else None
    return select_shard(files, index, count, root=root if root and root.is_dir() else None)
