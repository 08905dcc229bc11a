"""Deletion by id, path prefix, camera, source or person id, from both collections."""

from __future__ import annotations

from reidctl.errors import InputError
from reidctl.store import MilvusStore
from reidctl.types import Selection


def delete(store: MilvusStore, sel: Selection, *, dry_run: bool = False) -> dict:
    """Deletes the images matching ``sel`` (global first, then local).

    Returns only when a search no longer returns them.

    Returns:
        {"matched", "deleted", "examples": first paths, "dry_run"}.

    Raises:
        InputError: ``sel`` is empty (it would delete everything).
        CollectionNotFound: the pair does not exist.
    """
    if sel.empty:
        raise InputError("say what to delete: ids, --path-prefix, --camera, --source or --person")
    store.info()  # CollectionNotFound before anything else
    rows = store.select(sel)
    examples = [str(r["path"]) for r in rows[:10]]
    deleted = 0 if dry_run else store.delete([str(r["id"]) for r in rows])
    return {"matched": len(rows), "deleted": deleted, "examples": examples, "dry_run": dry_run}
