"""Repair: find and remove images stored in one collection of the pair only."""

from __future__ import annotations

from dataclasses import dataclass, field

from reidctl.store import MilvusStore

MAX_EXAMPLES = 20


@dataclass(frozen=True)
class RepairReport:
    """What a repair found and did.

    Attributes:
        global_only: searchable entries that had no local descriptor (removed: the
            next ingest of their files stores them whole again).
        local_only: local descriptors without an entry (removed: invisible to search,
            they only take space).
        examples: paths of the first removed entries, to ingest again.
        dry_run: nothing was removed.
    """

    global_only: int
    local_only: int
    examples: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {"global_only": self.global_only, "local_only": self.local_only,
                "examples": list(self.examples), "dry_run": self.dry_run}


def repair(store: MilvusStore, *, dry_run: bool = False) -> RepairReport:
    """Finds both kinds of orphan (see :meth:`MilvusStore.orphans`) and removes them.

    An entry without its local descriptor cannot be re-ranked, and its descriptor cannot
    be recomputed without the image, so it is removed from the global collection; its
    path is reported so that ``reidctl ingest`` can store it whole again. Safe to run
    while ingests and deletes run: every orphan is confirmed by a second read, and an
    ingest rewrites a local descriptor it finds missing after its write.

    Raises:
        CollectionNotFound: the pair does not exist.
    """
    global_only, local_only = store.orphans()
    examples = [str(rec.get("path", "")) for rec in
                store.existing(global_only[:MAX_EXAMPLES], complete=False).values()]
    if not dry_run:
        store.delete_rows("global", global_only)
        store.delete_rows("local", local_only)
        store.wait_visible(global_only, present=False)
    return RepairReport(len(global_only), len(local_only), examples, dry_run)
