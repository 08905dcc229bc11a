"""Milvus Lite databases: what a path must be to hold one, why opening one failed, and
the lifetime of the embedded servers this process opened.

Milvus Lite 3 keeps a database in a folder (``LOCK``, ``collections/``, ``databases/``)
and lets one process at a time open it (an advisory ``flock`` on ``LOCK``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reidctl.errors import CollectionNotFound, InputError, StoreError

# Milvus Lite runs in-process, one embedded server per database file, shared by every
# client of that file in this process; closing a client does not stop it, so the file
# stays locked against other processes. Stores count their users per file and stop the
# embedded server when the last one closes.
_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()

# pymilvus reports any failure to start Lite as "Open local milvus failed"; the cause is
# only in the traceback this logger records.
_SERVER_LOG = "milvus_lite.server_manager"
_READ_ONLY = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "operation not permitted (an immutable file or folder?)"}


def is_lite_database(path: Path) -> bool:
    """Whether ``path`` is a folder Milvus Lite made (it has a ``collections/`` folder)."""
    return (path / "collections").is_dir()


def lite_path(uri: str, *, must_exist: bool = False) -> Path:
    """The database folder a Milvus Lite URI names, checked before Lite touches it.

    Args:
        uri: a file path ending in ``.db`` (``~`` is expanded).
        must_exist: refuse a path that holds no database yet instead of letting Lite
            create one (for commands that only read).

    Raises:
        InputError: the path does not end in ``.db``, its folder does not exist, or it
            is a file or a folder that is not a Milvus Lite database (Lite would write
            its own files into the folder).
        CollectionNotFound: ``must_exist`` and there is no database at ``path``.
    """
    path = Path(uri).expanduser()
    if path.suffix != ".db":
        raise InputError(f"a Milvus Lite URI is a file path ending in .db, got {uri!r}")
    if not path.parent.is_dir():
        raise InputError(f"folder of the database file does not exist: {path.absolute().parent}")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file, not a Milvus Lite database (Milvus Lite keeps "
                         "a database in a folder): give a new path ending in .db")
    if path.is_dir() and not is_lite_database(path) and any(path.iterdir()):
        raise InputError(f"{path} is a folder that is not a Milvus Lite database (it has "
                         "no collections/ folder): give a new path ending in .db")
    if must_exist and not is_lite_database(path):
        raise CollectionNotFound(f"no Milvus Lite database at {uri} (reidctl ingest "
                                 "creates it)")
    return path


@contextmanager
def lite_open_errors(path: Path) -> Iterator[None]:
    """Run the opening of the Lite database ``path``; a StoreError raised in the block
    is replaced by one that says why Milvus Lite could not open it (in use by another
    process, read-only, ...) when Milvus Lite recorded the cause."""
    causes: list[BaseException] = []
    handler = _Causes(causes)
    logger = logging.getLogger(_SERVER_LOG)
    level, propagate = logger.level, logger.propagate
    muted = not logger.isEnabledFor(logging.ERROR)
    if muted:  # lift it to ERROR for the duration, keeping its records off stderr
        logger.setLevel(logging.ERROR)
        logger.propagate = False
    logger.addHandler(handler)
    verb = "open" if path.exists() else "create"
    try:
        yield
    except StoreError:
        if not causes:
            raise
        raise _explain(path, verb, causes[-1]) from None
    finally:
        logger.removeHandler(handler)
        if muted:
            logger.setLevel(level)
            logger.propagate = propagate


class _Causes(logging.Handler):
    """Keeps the exceptions of the records it sees."""

    def __init__(self, into: list[BaseException]) -> None:
        super().__init__(logging.ERROR)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self._into.append(record.exc_info[1])


def _explain(path: Path, verb: str, cause: BaseException) -> StoreError:
    from milvus_lite.exceptions import DataDirLockedError

    if isinstance(cause, DataDirLockedError):
        return StoreError(f"Milvus Lite database {path} is in use by another process (one "
                          "process at a time can open it: wait for it to finish, or use a "
                          "Milvus server to share a gallery)")
    what = f"cannot {verb} Milvus Lite database {path}"
    if isinstance(cause, OSError) and cause.errno in _READ_ONLY:
        why = " (Milvus Lite writes to its folder even to read)" if verb == "open" else ""
        return StoreError(f"{what}: cannot write {cause.filename or path}: "
                          f"{_READ_ONLY[cause.errno]}{why}")
    if isinstance(cause, OSError):
        return StoreError(f"{what}: {cause.strerror} ({cause.filename or path})")
    first = str(cause).splitlines()[0] if str(cause) else ""
    return StoreError(f"{what}: {type(cause).__name__}: {first}")


def hold_lite(path: str) -> str:
    """Counts one more user of the Lite database ``path``; returns the key to release."""
    key = os.path.abspath(path)
    with _LITE_LOCK:
        _LITE_USERS[key] = _LITE_USERS.get(key, 0) + 1
    return key


def release_lite(key: str) -> None:
    """One user of a Lite database is done; the last one stops its embedded server."""
    with _LITE_LOCK:
        _LITE_USERS[key] -= 1
        if _LITE_USERS[key] > 0:
            return
        del _LITE_USERS[key]
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(key)
