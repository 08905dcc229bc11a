"""Reads by id and selection, deletes, and repairs of a gallery collection pair: what
keeps the two collections consistent with each other (see :mod:`reidctl.store.milvus`).

Deletes go global first, then local; a delete re-reads the global rows it removed and
removes again any that a concurrent ingest wrote back, so no image stays searchable
without its local descriptor once the delete returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from reidctl.errors import StoreError
from reidctl.store import _rows as rows
from reidctl.store.filters import to_expr
from reidctl.store.pair import CollectionPair
from reidctl.types import Selection

log = logging.getLogger(__name__)

ID_BATCH = 500  # ids per "id in [...]" expression


class PairUpkeep(CollectionPair):
    """Selection, deletion and repair on a collection pair (the base of
    :class:`~reidctl.store.milvus.MilvusStore`)."""

    @property
    def _pk_len(self) -> int:
        return self._specs["global"].field("id").max_length or 64

    def _present(self, collection: str, ids: Sequence[str], consistency: str) -> set[str]:
        """Which of ``ids`` (already checked) have a row in ``collection``."""
        found: set[str] = set()
        for batch in rows.chunks(ids, ID_BATCH):
            res = self._query(collection, rows.in_expr("id", batch), ["id"], consistency)
            found.update(str(r["id"]) for r in res)
        return found

    def _pages(
        self, expr: str, fields: list[str], consistency: str, batch_size: int,
        collection: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of the rows matching ``expr`` (a query iterator, always closed) of
        ``collection`` (default: the global one)."""
        collection = collection or self.global_name
        with self._wrap(f"iterate {collection}"):
            it = self._c.query_iterator(
                collection, batch_size=batch_size, filter=expr, output_fields=fields,
                consistency_level=consistency, timeout=self.timeout)
        try:
            while True:
                with self._wrap(f"iterate {collection}"):
                    page = it.next()
                if not page:
                    return
                yield page
        finally:
            with self._wrap(f"iterate {collection}"):
                it.close()

    def select(self, sel: Selection, *, batch_size: int = 1000) -> list[dict[str, Any]]:
        """Every stored image matching ``sel`` (read with Strong consistency).

        Returns:
            One dict per image: id, path, camera, source, person_id.
        """
        self._pair()
        fields = ["id", "path", "camera", "source", "person_id"]
        self._count(self.global_name)  # strong barrier: the iterator ignores the level on 2.3
        out = [{f: r[f] for f in fields}
               for page in self._pages(to_expr(sel), fields, "Strong", batch_size) for r in page]
        if sel.path_prefix is not None:  # the ``like`` is a pre-filter: check exactly
            prefix = sel.path_prefix
            out = [r for r in out if str(r["path"]).startswith(prefix)]
        return out

    def wait_visible(
        self, ids: Sequence[str], *, present: bool, timeout: float = 30.0,
    ) -> bool:
        """Waits until default (not ``fresh``) reads see ``ids`` (present) or no longer
        see them.

        A server makes writes and deletes visible to Bounded reads only after its
        time tick has passed them; commands wait here so that a search started right
        after they return sees their effect. Milvus Lite returns at once.

        Returns:
            False when ``timeout`` passed first.
        """
        sample = list(dict.fromkeys(ids))[:ID_BATCH]
        if not sample:
            return True
        deadline = time.monotonic() + timeout
        expr = rows.in_expr("id", sample)
        if present:  # a Strong read returns as soon as the server's clock has passed them
            self._query(self.global_name, expr, ["id"], "Strong")
        while True:
            seen = len(self._query(self.global_name, expr, ["id"], rows.level(False)))
            if (seen == len(sample)) if present else seen == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def delete(self, ids: Sequence[str], *, rounds: int = 10) -> int:
        """Delete images: global rows first, then local descriptors.

        Returns only once a Bounded-consistency search no longer returns them.

        An ingest of the same images running meanwhile can write a global row after
        this delete removed it and the local descriptor: the image would be searchable
        without its local descriptor. So after each round the global rows are read back
        (Strong) and any that reappeared are deleted again, until a round finds none.

        Args:
            ids: primary keys; absent ones are ignored.
            rounds: at most this many delete rounds.

        Returns:
            How many of the (distinct) ids were in the global collection.

        Raises:
            StoreError: a concurrent writer kept re-adding them for ``rounds`` rounds.
        """
        self._pair()
        uniq = list(dict.fromkeys(rows.check_ids(ids, self._pk_len)))
        deleted = len(self._present(self.global_name, uniq, "Strong"))
        todo = uniq
        for _ in range(rounds):
            for collection in (self.global_name, self.local_name):  # global first
                self._delete_ids(collection, todo)
            todo = sorted(self._present(self.global_name, todo, "Strong"))
            if not todo:
                break
            log.warning("%d image(s) were written again during the delete: deleting them "
                        "again", len(todo))
        if todo:
            raise StoreError(f"{len(todo)} image(s) were written again by another process "
                             f"after {rounds} delete rounds (run reidctl repair when it stops)")
        if uniq and not self.wait_visible(uniq, present=False, timeout=self.timeout):
            raise StoreError(f"deleted {deleted} image(s) but reads still returned them after "
                             f"{self.timeout:g}s")
        return deleted

    def ids(self, role: str, *, batch_size: int = 4096) -> Iterator[list[str]]:
        """Every primary key of one collection of the pair, in pages (Strong reads).

        Args:
            role: ``"global"`` or ``"local"``.
        """
        self._pair()
        collection = self._collection(role)
        self._count(collection)  # strong barrier: the iterator ignores the level on 2.3
        for page in self._pages("", ["id"], "Strong", batch_size, collection):
            yield [str(r["id"]) for r in page]

    def orphans(self) -> tuple[list[str], list[str]]:
        """Images stored in one collection only, each confirmed by a second Strong read.

        Returns:
            ``(global_only, local_only)`` ids: searchable entries without a local
            descriptor (a race, or a failure between two writes), and local descriptors
            without an entry (harmless to search; also the normal state of an ingest's
            batch between its two writes, so confirm before acting).
        """
        g = {pk for page in self.ids("global") for pk in page}
        loc = {pk for page in self.ids("local") for pk in page}
        global_only = sorted(g - loc)
        local_only = sorted(loc - g)
        # the scan takes time: keep only what a second, targeted read confirms
        global_only = sorted(set(global_only) - self._present(self.local_name, global_only,
                                                              "Strong"))
        global_only = sorted(self._present(self.global_name, global_only, "Strong"))
        local_only = sorted(set(local_only) - self._present(self.global_name, local_only,
                                                            "Strong"))
        return global_only, local_only

    def delete_rows(self, role: str, ids: Sequence[str]) -> None:
        """Delete rows from one collection of the pair only (repairs; see :meth:`orphans`)."""
        self._pair()
        self._delete_ids(self._collection(role),
                         list(dict.fromkeys(rows.check_ids(ids, self._pk_len))))

    def _delete_ids(self, collection: str, ids: Sequence[str]) -> None:
        """Delete the rows of ``ids`` (already checked) from ``collection``."""
        for batch in rows.chunks(ids, ID_BATCH):
            with self._wrap(f"delete from {collection}"):
                self._c.delete(collection, filter=rows.in_expr("id", batch),
                               timeout=self.timeout)
