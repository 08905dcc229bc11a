"""Deletion by id, path prefix, camera, source or person id, from both collections;
repair of images stored in one collection only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from reidctl.errors import InputError
from reidctl.store import MilvusStore
from reidctl.types import Selection

MAX_EXAMPLES = 10


@dataclass(frozen=True)
class DeleteReport:
    """What a delete did (or would do, on a dry run).

    Attributes:
        matched: images the selection matched.
        deleted: images removed (0 on a dry run).
        total: images in the pair before the delete.
        examples: paths of the first matched images.
        dry_run: nothing was removed.
    """

    matched: int
    deleted: int
    total: int
    examples: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def whole(self) -> bool:
        """The selection matched every image of the pair."""
        return 0 < self.total <= self.matched

    def to_dict(self) -> dict:
        return {"matched": self.matched, "deleted": self.deleted, "total": self.total,
                "examples": list(self.examples), "dry_run": self.dry_run, "whole_pair": self.whole}


def resolve_prefix(prefix: str) -> str:
    """A relative ``--path-prefix`` made absolute the way ingest stores paths (resolved
    against the working directory, ``~`` expanded), keeping a trailing separator;
    absolute prefixes are kept as given."""
    expanded = os.path.expanduser(prefix)
    if os.path.isabs(expanded):
        return expanded
    resolved = str(Path(expanded).resolve())
    return resolved + os.sep if expanded.endswith(os.sep) and resolved != os.sep else resolved


def whole_pair_error(matched: int, name: str) -> InputError:
    """The refusal of a delete that would empty the pair without ``--all``."""
    return InputError(f"this selection matches all {matched} image(s) of collection pair "
                      f"{name!r}: add --all to delete every image")


def delete(store: MilvusStore, sel: Selection, *, dry_run: bool = False,
           everything: bool = False) -> DeleteReport:
    """Deletes the images matching ``sel`` (global first, then local).

    Returns only when a search no longer returns them. A selection that matches every
    image of the pair is refused unless ``everything`` is set, so that a criterion that
    turned out to select all (a prefix of every path, every camera) cannot empty a
    gallery by accident.

    Args:
        sel: what to delete (all criteria AND-ed); empty only with ``everything``.
        dry_run: only count.
        everything: allow deleting every image of the pair.

    Raises:
        InputError: ``sel`` is empty without ``everything``, or matches the whole pair
            without ``everything`` (not on a dry run, which reports it).
        CollectionNotFound: the pair does not exist.
    """
    if sel.path_prefix is not None:
        sel = replace(sel, path_prefix=resolve_prefix(sel.path_prefix))
    if sel.empty and not everything:
        raise InputError("say what to delete: ids, --path-prefix, --camera, --source or "
                         "--person (or --all for every image)")
    store.info()  # CollectionNotFound before anything else
    total = store.count()
    rows = store.select(sel)
    whole = bool(rows) and len(rows) >= total
    if whole and not everything and not dry_run:
        raise whole_pair_error(len(rows), store.name)
    examples = [str(r["path"]) for r in rows[:MAX_EXAMPLES]]
    deleted = 0 if dry_run else store.delete([str(r["id"]) for r in rows])
    return DeleteReport(len(rows), deleted, total, examples, dry_run)
