"""One open Milvus database: a Milvus Lite file (``*.db``) or a server
(``http://host:19530``, 2.3.5 or later), reached through one ``MilvusClient``.

What every collection needs whatever it holds: connecting (credentials, database name,
TLS; for Lite, the checks on the path and the per-process hold on the file), running
calls under the per-call timeout with failures turned into reidctl errors, closing.
:class:`~reidctl.store.pair.CollectionPair` builds a gallery's two collections on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from pymilvus import MilvusClient

from reidctl.config import Connection, redact
from reidctl.errors import StoreError
from reidctl.store._lite import hold_lite, lite_open_errors, lite_path, release_lite
from reidctl.store._wrap import wrapped

log = logging.getLogger(__name__)

# pymilvus installs its own stderr handler and logs every failed call at ERROR with a
# traceback (and a warning per query_iterator on Lite). The store raises a one-line
# reidctl error for each failure and logs it at DEBUG, so pymilvus' copies are muted;
# re-enable with logging.getLogger("pymilvus").setLevel(...) after importing reidctl.store.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)  # logs tracebacks of its own

_D = TypeVar("_D", bound="Database")


class Database:
    """A connection to one Milvus database (Lite or server).

    Attributes:
        uri: the URI without credentials.
        timeout: seconds allowed per Milvus call (loading a collection gets at
            least 300 s).
    """

    def __init__(
        self, uri: str | Connection, *, token: str | None = None, timeout: float | None = None,
        must_exist: bool = False,
    ) -> None:
        """Connect.

        Args:
            uri: a Milvus Lite file path ending in ``.db`` (its directory must exist)
                or a server URI such as ``http://127.0.0.1:19530``; or a
                :class:`~reidctl.config.Connection` with credentials, database and TLS.
            token: ``"user:password"`` or an API key; never stored or echoed
                (overrides the Connection's).
            timeout: seconds allowed per call, connecting included (overrides the
                Connection's; 30 s by default).
            must_exist: never create a Lite database: a path that holds none is an
                error (for callers that only read).

        Raises:
            InputError: the timeout is not a finite positive number; the URI is
                malformed (unknown scheme, bad port) or the Lite path cannot hold a
                database (not ``.db``, missing folder, a file or a foreign folder).
            CollectionNotFound: ``must_exist`` and there is no Lite database at the path.
            StoreError: the server is unreachable within ``timeout``, or the Lite
                database cannot be opened (in use by another process, read-only,
                damaged).
        """
        conn = uri if isinstance(uri, Connection) else Connection(uri)
        if token is not None:
            conn = replace(conn, token=token)
        if timeout is not None:
            conn = replace(conn, timeout=timeout)
        conn = conn.validated()  # before anything parses or connects
        self.uri = redact(conn.uri)
        self.timeout = float(conn.timeout)
        self._load_timeout = max(self.timeout, 300.0)
        password = None if conn.is_lite else urlparse(conn.uri).password
        self._secrets = conn.secrets + ((password,) if password else ())
        self._lite_path: str | None = None
        self._client: MilvusClient | None = self._connect(conn, must_exist)

    def _connect(self, conn: Connection, must_exist: bool) -> MilvusClient:
        uri, token = conn.uri, conn.token
        if conn.is_lite:
            path = lite_path(uri, must_exist=must_exist)
            with lite_open_errors(path), self._wrap("open Milvus Lite"):
                client = MilvusClient(uri=str(path), token=token or "", timeout=self.timeout)
            self._lite_path = hold_lite(str(path))
        else:
            extra: dict[str, object] = {}
            if conn.user:
                extra.update(user=conn.user, password=conn.password or "")
            if conn.db_name:
                extra["db_name"] = conn.db_name
            if conn.secure:
                extra["secure"] = True
                if conn.client_cert:  # mutual TLS
                    extra.update(client_pem_path=conn.client_cert,
                                 client_key_path=conn.client_key or "",
                                 ca_pem_path=conn.ca_file or "")
                elif conn.ca_file:
                    extra["server_pem_path"] = conn.ca_file
                if conn.server_name:
                    extra["server_name"] = conn.server_name
            for f in (conn.ca_file, conn.client_cert, conn.client_key):
                if f and not Path(f).is_file():
                    raise StoreError(f"TLS file does not exist: {f}")
            with self._wrap("connect"):
                client = MilvusClient(uri=uri, token=token or "", timeout=self.timeout, **extra)
        log.debug("connected to %s", self.uri)
        return client

    # -- plumbing ---------------------------------------------------------------

    def _wrap(self, action: str) -> AbstractContextManager[None]:
        return wrapped(action, self.uri, self._secrets, self.timeout)

    @property
    def _c(self) -> MilvusClient:
        if self._client is None:
            raise StoreError(f"the store for {self.uri} is closed")
        return self._client

    def _has(self, collection: str) -> bool:
        with self._wrap(f"look up {collection}"):
            return bool(self._c.has_collection(collection, timeout=self.timeout))

    def _query(
        self, collection: str, expr: str, fields: Sequence[str], consistency: str, **kw: Any
    ) -> list:
        with self._wrap(f"query {collection}"):
            return self._c.query(
                collection,
                filter=expr,
                output_fields=list(fields),
                consistency_level=consistency,
                timeout=self.timeout,
                **kw,
            )

    def _count(self, collection: str) -> int:
        res = self._query(collection, "", ["count(*)"], "Strong")
        return int(res[0]["count(*)"]) if res else 0

    # -- the database -----------------------------------------------------------

    @property
    def is_lite(self) -> bool:
        """Whether this is an embedded Milvus Lite database (not a server)."""
        return self._lite_path is not None

    def disk_bytes(self) -> int | None:
        """Bytes a Milvus Lite database takes on disk; None for a server (not visible)."""
        if self._lite_path is None:
            return None
        root = Path(self._lite_path)
        if root.is_file():
            return root.stat().st_size
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())

    def close(self) -> None:
        """Release the connection; the store cannot be used afterwards."""
        if self._client is not None:
            client, self._client = self._client, None
            with self._wrap("close"):
                client.close()
            if self._lite_path is not None:
                release_lite(self._lite_path)

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r})"
