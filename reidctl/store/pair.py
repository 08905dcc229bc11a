"""The gallery as a pair of Milvus collections, ``<name>_global`` and ``<name>_local``, in
one database (:mod:`reidctl.store.database`): creation, the pair's record, dropping. Reads
and writes are in :mod:`reidctl.store.milvus`.

``global`` holds the ANN-indexed global descriptor ``f_g`` and the metadata users
filter on; ``local`` holds the local descriptor ``f_l`` under the same primary key
and is only read by id. Writes go local first, then global, so an entry visible to
coarse search always has its local descriptor; deletes go the other way.

Works with Milvus Lite (a local ``*.db`` file path) and a Milvus server
(``http://host:19530``, 2.3.5 or later) through the same ``MilvusClient`` calls.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from pymilvus.client.types import LoadState

from reidctl.config import Connection
from reidctl.errors import CollectionNotFound, FeatureSpaceMismatch, InputError
from reidctl.store.database import Database
from reidctl.store.schema import META_KEY, ROLES, PairMeta, build_schema, load_spec, parse_record

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,190}")


@dataclass(frozen=True)
class StoreInfo:
    """What :meth:`MilvusStore.info` reports about a collection pair.

    Attributes:
        uri: the store URI without credentials.
        name: the pair name; the collections are ``<name>_global`` / ``<name>_local``.
        global_count: rows in the global collection (strong consistency).
        local_count: rows in the local collection.
        global_dim: dimension of ``f_g``.
        local_dim: dimension of ``f_l``.
        model: the model record given to :meth:`MilvusStore.create` (has ``"fingerprint"``).
        index: the global ANN index: ``{"type", "metric", "params"}``.
        schemas: schema tag per role, e.g. ``{"global": "reidctl.global/1", ...}``.
    """

    uri: str
    name: str
    global_count: int
    local_count: int
    global_dim: int
    local_dim: int
    model: dict[str, Any]
    index: dict[str, Any]
    schemas: dict[str, str]


class CollectionPair(Database):
    """A gallery collection pair in Milvus (Lite or server): lifecycle and record.

    Attributes:
        uri: the URI without credentials.
        name: the pair name (default ``"gallery"``).
        global_name: ``<name>_global``.
        local_name: ``<name>_local``.
        timeout: seconds allowed per Milvus call (loading a collection gets at
            least 300 s).
    """

    def __init__(
        self, uri: str | Connection, name: str = "gallery", *, token: str | None = None,
        timeout: float | None = None, must_exist: bool = False,
    ) -> None:
        """Connect (see :class:`~reidctl.store.database.Database` for ``uri``, ``token``,
        ``timeout`` and ``must_exist``); the pair need not exist yet.

        Args:
            name: the collection-pair name: letters, digits, underscores.

        Raises:
            InputError: ``name`` is not a valid collection name; or as for
                :class:`~reidctl.store.database.Database`.
            CollectionNotFound: ``must_exist`` and there is no Lite database at the path.
            StoreError: the database cannot be reached or opened.
        """
        if not _NAME.fullmatch(name):
            raise InputError(f"collection-pair name {name!r}: use letters, digits and '_' "
                             "(starting with a letter or '_')")
        self.name = name
        self._specs = {role: load_spec(role) for role in ROLES}
        self.global_name = name + self._specs["global"].suffix
        self.local_name = name + self._specs["local"].suffix
        self._meta: PairMeta | None = None
        super().__init__(uri, token=token, timeout=timeout, must_exist=must_exist)

    # -- plumbing ---------------------------------------------------------------

    def _stored_meta(self, role: str) -> PairMeta:
        collection = self._collection(role)
        with self._wrap(f"describe {collection}"):
            desc = self._c.describe_collection(collection, timeout=self.timeout)
        return parse_record(collection, role, desc)

    def _collection(self, role: str) -> str:
        return self.global_name if role == "global" else self.local_name

    def _pair(self) -> PairMeta:
        """The pair's record, checked and cached; loads the collections if needed."""
        if self._meta is not None:
            return self._meta
        missing = [self._collection(r) for r in ROLES if not self._has(self._collection(r))]
        if missing:
            raise CollectionNotFound(
                f"collection pair {self.name!r} not found at {self.uri} "
                f"(missing {', '.join(missing)})"
            )
        g, loc = self._stored_meta("global"), self._stored_meta("local")
        if g.space != loc.space:
            raise FeatureSpaceMismatch(
                f"{self.global_name} (model {g.fingerprint!r}) and {self.local_name} "
                f"(model {loc.fingerprint!r}) were created for different models"
            )
        for role in ROLES:
            collection = self._collection(role)
            self._ensure_index(role)  # a creation killed before its index leaves none
            with self._wrap(f"load {collection}"):
                state = self._c.get_load_state(collection, timeout=self.timeout).get("state")
                if state != LoadState.Loaded:
                    log.info("loading %s", collection)
                    self._c.load_collection(collection, timeout=self._load_timeout)
        self._meta = g
        return g

    def _check_dim(self, what: str, got: int, want: int) -> None:
        if got != want:
            raise FeatureSpaceMismatch(
                f"{what} is {got}-D but collection pair {self.name!r} holds {want}-D vectors"
            )

    # -- lifecycle --------------------------------------------------------------

    def pair_names(self) -> list[str]:
        """Names of every collection pair in this database (both collections present)."""
        g, loc = self._specs["global"].suffix, self._specs["local"].suffix
        with self._wrap("list collections"):
            names = set(self._c.list_collections(timeout=self.timeout))
        return sorted(n[: -len(g)] for n in names if n.endswith(g) and n[: -len(g)] + loc in names)

    def exists(self) -> bool:
        """Whether both collections of the pair are present."""
        return all(self._has(self._collection(r)) for r in ROLES)

    def create(self, *, global_dim: int, local_dim: int, model: dict[str, Any]) -> None:
        """Create both collections from ``schemas/*.json``, build their indexes, load them.

        Idempotent when the pair exists for the same model fingerprint and dims; a
        half-created pair is completed.

        Args:
            global_dim: dimension of ``f_g`` (128 for the paper's PCA).
            local_dim: dimension of ``f_l`` (stripes * K).
            model: JSON-serialisable model record with at least ``"fingerprint"``
                (1..32 chars); stored with the collections.

        Raises:
            FeatureSpaceMismatch: the pair exists for another fingerprint or dims
                (the message names both fingerprints), or a same-named collection
                was not created by reidctl.
            StoreError: Milvus refused or failed.
        """
        fingerprint = str(model.get("fingerprint", ""))
        max_fp = self._specs["global"].field("model").max_length or 0
        if not 0 < len(fingerprint) <= max_fp:
            raise ValueError(
                f"model fingerprint must have 1..{max_fp} characters, got {fingerprint!r}"
            )
        if min(int(global_dim), int(local_dim)) < 1:
            raise ValueError(f"dims must be positive, got {global_dim}/{local_dim}")
        json.dumps(model)  # fail early (TypeError) on a record that cannot be stored
        wanted = PairMeta(
            global_dim=int(global_dim),
            local_dim=int(local_dim),
            model=dict(model),
            tags={r: self._specs[r].tag for r in ROLES},
            created_at=int(time.time() * 1000),
        )
        present = {r: self._has(self._collection(r)) for r in ROLES}
        for role in ROLES:
            if present[role]:
                stored = self._stored_meta(role)
                if stored.space != wanted.space:
                    raise FeatureSpaceMismatch(
                        f"collection pair {self.name!r} holds model {stored.fingerprint!r} "
                        f"({stored.global_dim}/{stored.local_dim}-D); refusing model "
                        f"{wanted.fingerprint!r} ({wanted.global_dim}/{wanted.local_dim}-D)"
                    )
        for role in ("local", "global"):  # the write order
            if not present[role]:
                self._create_one(role, wanted)
        self._meta = None
        self._pair()

    def _create_one(self, role: str, meta: PairMeta) -> None:
        spec, collection = self._specs[role], self._collection(role)
        dims = {"model.global_dim": meta.global_dim, "model.local_dim": meta.local_dim}
        record = meta.record(role)
        schema = build_schema(spec, dims, description=record)
        log.info("creating %s (%s)", collection, spec.tag)
        with self._wrap(f"create {collection}"):
            self._c.create_collection(
                collection,
                schema=schema,
                consistency_level="Bounded",
                properties={META_KEY: record},
                timeout=self.timeout,
            )
        self._ensure_index(role)
        with self._wrap(f"load {collection}"):
            self._c.load_collection(collection, timeout=self._load_timeout)

    def _ensure_index(self, role: str) -> None:
        """Builds the vector index of ``role``'s collection unless it has one."""
        spec, collection = self._specs[role], self._collection(role)
        with self._wrap(f"index {collection}"):
            if self._c.list_indexes(collection, timeout=self.timeout):
                return
            index = self._c.prepare_index_params()
            index.add_index(
                field_name=spec.vector_field,
                index_name=spec.vector_field,
                index_type=spec.index["index_type"],
                metric_type=spec.index["metric_type"],
                params=dict(spec.index.get("params") or {}),
            )
            # sync=False: the collection is empty, so there is nothing to build, and
            # pymilvus' wait for a synchronous index sleeps 0.5 s before its first poll.
            self._c.create_index(collection, index, timeout=self.timeout, sync=False)

    def drop(self) -> None:
        """Drop both collections (global first); missing ones are skipped."""
        for role in ROLES:
            collection = self._collection(role)
            if self._has(collection):
                with self._wrap(f"drop {collection}"):
                    self._c.drop_collection(collection, timeout=self.timeout)
        self._meta = None

    def flush(self) -> None:
        """Seal buffered writes of both collections to storage."""
        self._pair()
        for role in ROLES:
            collection = self._collection(role)
            with self._wrap(f"flush {collection}"):
                self._c.flush(collection, timeout=self._load_timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r}, name={self.name!r})"

    # -- reading the record -----------------------------------------------------

    def info(self) -> StoreInfo:
        """Counts, dims, model and index of the pair.

        Raises:
            CollectionNotFound: the pair does not exist.
            FeatureSpaceMismatch: it was not created by reidctl.
        """
        meta = self._pair()
        spec = self._specs["global"]
        with self._wrap(f"describe index of {self.global_name}"):
            described = self._c.describe_index(
                self.global_name, index_name=spec.vector_field, timeout=self.timeout
            )
        described = described or {}
        params = {
            k: int(described[k]) if str(described.get(k, "")).isdigit() else described.get(k, v)
            for k, v in (spec.index.get("params") or {}).items()
        }
        return StoreInfo(
            uri=self.uri,
            name=self.name,
            global_count=self._count(self.global_name),
            local_count=self._count(self.local_name),
            global_dim=meta.global_dim,
            local_dim=meta.local_dim,
            model=dict(meta.model),
            index={
                "type": described.get("index_type", spec.index["index_type"]),
                "metric": described.get("metric_type", spec.index["metric_type"]),
                "params": params,
            },
            schemas=dict(meta.tags),
        )

    def check_model(self, fingerprint: str) -> None:
        """Refuse a model other than the one the pair was created for.

        Raises:
            CollectionNotFound: the pair does not exist.
            FeatureSpaceMismatch: naming the stored and the given fingerprint.
        """
        meta = self._pair()
        stored = meta.fingerprint
        if fingerprint != stored:
            model = dict(meta.model)
            made_by = ", ".join(str(model[k]) for k in ("backbone", "source") if model.get(k))
            raise FeatureSpaceMismatch(
                f"collection pair {self.name!r} holds vectors of model {stored!r}"
                f"{f' ({made_by})' if made_by else ''}, not {fingerprint!r}: pass the --model "
                "it was built with, or use another --collection"
            )

    def count(self) -> int:
        """Rows in the global collection (strong consistency)."""
        self._pair()
        return self._count(self.global_name)
