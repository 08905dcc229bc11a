"""``reidctl delete``: remove selected images from both collections of the pair."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from reidctl.cli.common import (
    CollectionOpt,
    JsonOpt,
    TokenOpt,
    UriOpt,
    errors_to_exit,
    fail,
    open_store,
    out,
    print_json,
)
from reidctl.config import DEFAULT_URI


def delete(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(
        help="Image ids (sha256 of the file bytes).", show_default=False)] = None,
    path_prefix: Annotated[str | None, typer.Option(help="Paths starting with this.")] = None,
    camera: Annotated[list[str] | None, typer.Option(help="Camera id (repeatable).")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Source (repeatable).")] = None,
    person: Annotated[list[str] | None, typer.Option(help="Person id (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be deleted.")] = False,
    all_: Annotated[bool, typer.Option(
        "--all", help="Allow deleting every image of the pair (alone: delete them all).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None, collection: CollectionOpt = "gallery",
    json_out: JsonOpt = False,
) -> None:
    """Delete images (all criteria AND-ed) from both collections."""
    with errors_to_exit():
        from reidctl.pipeline.delete import delete as run_delete
        from reidctl.pipeline.delete import whole_pair_error
        from reidctl.types import Selection

        sel = Selection(ids=tuple(ids or ()), path_prefix=path_prefix,
                        cameras=tuple(camera or ()), sources=tuple(source or ()),
                        person_ids=tuple(person or ()))
        store = open_store(uri, collection, token, ctx, must_exist=True)
        if not (dry_run or yes):
            preview = run_delete(store, sel, dry_run=True, everything=all_)
            if preview.whole and not all_:
                raise whole_pair_error(preview.matched, collection)
            if preview.matched and not sys.stdin.isatty():
                raise fail(f"refusing to delete {preview.matched} image(s) without --yes", 2)
            if preview.matched and not typer.confirm(
                    f"delete {preview.matched} image(s) from {collection}?"):
                raise fail("nothing deleted", 1)
        r = run_delete(store, sel, dry_run=dry_run, everything=all_)
        if json_out:
            print_json(r.to_dict())
        else:
            verb = "would delete" if dry_run else "deleted"
            whole = (" (every image: the delete needs --all)" if dry_run and r.whole
                     and not all_ else "")
            out.print(f"{verb} {r.matched if dry_run else r.deleted} image(s) "
                      f"from {collection}{whole}")


def register(app: typer.Typer) -> None:
    """Adds the ``delete`` command to ``app``."""
    app.command("delete")(delete)
