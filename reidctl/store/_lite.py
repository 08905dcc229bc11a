"""Lifetime of the embedded Milvus Lite servers this process opened."""

from __future__ import annotations

import os
import threading

# Milvus Lite runs in-process, one embedded server per database file, shared by every
# client of that file in this process; closing a client does not stop it, so the file
# stays locked against other processes. Stores count their users per file and stop the
# embedded server when the last one closes.
_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def hold_lite(path: str) -> str:
    key = os.path.abspath(path)
    with _LITE_LOCK:
        _LITE_USERS[key] = _LITE_USERS.get(key, 0) + 1
    return key


def release_lite(key: str) -> None:
    with _LITE_LOCK:
        _LITE_USERS[key] -= 1
        if _LITE_USERS[key] > 0:
            return
        del _LITE_USERS[key]
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(key)
