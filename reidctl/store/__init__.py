"""The vector store: the only code in reidctl that imports pymilvus.

A gallery is a pair of Milvus collections, ``<name>_global`` (``f_g`` under an
ANN index, plus metadata) and ``<name>_local`` (``f_l``, read by id), defined by
``schemas/global.json`` and ``schemas/local.json``.
"""

from __future__ import annotations

import logging
import os
import sys

GRPC_VERBOSITY = "GRPC_VERBOSITY"


def quiet_grpc() -> bool:
    """Silences gRPC's C core log for this process, unless debugging.

    Milvus Lite runs a server that gRPC reaches in this process; its C core writes
    lines such as ``Received a GOAWAY with error code ENHANCE_YOUR_CALM ...
    "too_many_pings"`` straight to stderr during long searches (the client's keepalive
    pings outpace the server's policy; the channel reconnects by itself). The core reads
    ``GRPC_VERBOSITY`` once, when grpc is first imported, so this runs before that.
    ``reidctl -v``, ``REIDCTL_DEBUG`` or a ``GRPC_VERBOSITY`` of the user's own leave
    gRPC's default (errors shown).

    Returns:
        True when the log was silenced here.
    """
    debug = (os.environ.get("REIDCTL_DEBUG")
             or logging.getLogger("reidctl").isEnabledFor(logging.DEBUG))
    if debug or GRPC_VERBOSITY in os.environ or "grpc" in sys.modules:
        return False
    os.environ[GRPC_VERBOSITY] = "NONE"
    return True


quiet_grpc()

from reidctl.store._rows import meta_row, row_problem, varchar_problem  # noqa: E402
from reidctl.store.milvus import MAX_TOPK, MilvusStore  # noqa: E402 - after quiet_grpc
from reidctl.store.pair import StoreInfo  # noqa: E402

__all__ = ["MAX_TOPK", "MilvusStore", "StoreInfo", "connect", "meta_row", "quiet_grpc",
           "row_problem", "varchar_problem"]


def connect(
    uri: str, name: str = "gallery", *, token: str | None = None, timeout: float = 30.0
) -> MilvusStore:
    """Open a gallery collection pair (it need not exist yet; see :meth:`MilvusStore.create`).

    Args:
        uri: Milvus Lite file path ending in ``.db`` or a server URI (``http://host:19530``).
        name: the collection-pair name.
        token: ``"user:password"`` or an API key, never echoed in errors.
        timeout: seconds allowed per call, connecting included.

    Raises:
        StoreError: unreachable server or unopenable Lite file.
    """
    return MilvusStore(uri, name, token=token, timeout=timeout)
