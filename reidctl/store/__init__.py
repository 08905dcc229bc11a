"""The vector store: the only code in reidctl that imports pymilvus.

A gallery is a pair of Milvus collections, ``<name>_global`` (``f_g`` under an
ANN index, plus metadata) and ``<name>_local`` (``f_l``, read by id), defined by
``schemas/global.json`` and ``schemas/local.json``.
"""

from __future__ import annotations

from reidctl.store.milvus import MilvusStore
from reidctl.store.pair import StoreInfo

__all__ = ["MilvusStore", "StoreInfo", "connect"]


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
