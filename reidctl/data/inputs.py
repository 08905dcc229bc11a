"""The files a command takes: the given files and folders, a manifest's images, and for
an ingest this worker's shard."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from reidctl.data.images import discover
from reidctl.data.manifest import Manifest
from reidctl.data.shard import parse_shard, select_shard
from reidctl.errors import InputError


def ingest_files(paths: Sequence[Path], shard: str | None = None,
                 manifest: Manifest | None = None) -> list[Path]:
    """Lists the image files of ``paths`` and ``manifest`` and keeps those of one shard.

    Args:
        paths: files and folders (folders are walked recursively, see
            :func:`~reidctl.data.images.discover`); may be empty with a manifest.
        shard: ``"i/N"`` to keep only shard ``i`` of ``N``, or None for every file.
            With a single folder given (or only a manifest, whose images lie below its
            folder), shard keys are paths relative to it, so that workers that mount the
            images at different places agree on the split.
        manifest: a manifest whose images are added to those of ``paths``.

    Returns:
        The files, sorted and each once (a shard keeps their order).

    Raises:
        InputError: no path and no manifest, a path does not exist, nothing was found,
            or ``shard`` is not of the form ``i/N`` with ``0 <= i < N``.
    """
    if not paths and manifest is None:
        raise InputError("Missing argument 'paths': give image files or folders, "
                         "or --manifest FILE")
    files = set(discover(paths)) if paths else set()
    files.update(manifest.files if manifest is not None else ())
    listed = sorted(files)
    if shard is None:
        return listed
    index, count = parse_shard(shard)
    return select_shard(listed, index, count, root=_shard_root(paths, manifest, listed))


def _shard_root(paths: Sequence[Path], manifest: Manifest | None,
                files: Sequence[Path]) -> Path | None:
    """The folder shard keys are relative to: the one folder given, or the folder of a
    manifest given alone when every image lies below it; else None (absolute keys)."""
    if len(paths) == 1 and manifest is None:
        root = Path(paths[0]).expanduser().resolve()
        return root if root.is_dir() else None
    if not paths and manifest is not None:
        root = manifest.folder.resolve()
        return root if all(f.is_relative_to(root) for f in files) else None
    return None


def query_files(paths: Sequence[Path], manifest: Manifest | None = None) -> list[Path]:
    """The query images of ``paths`` and ``manifest``, in the order given.

    A folder stands for its image files (recursively, sorted, see
    :func:`~reidctl.data.images.discover`); a file is kept as given, so that reading it
    says what is wrong with it. The manifest's images follow.

    Raises:
        InputError: no path and no manifest, or a folder without image files.
    """
    if not paths and manifest is None:
        raise InputError("Missing argument 'images': give query images or folders, "
                         "or --manifest FILE")
    out: list[Path] = []
    for p in paths:
        out.extend(discover([p]) if _is_dir(Path(p).expanduser()) else [Path(p)])
    return out + (manifest.files if manifest is not None else [])


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; False for anything that cannot be looked at (a name
    too long for the system), which reading it then reports."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return False
