"""``reidctl repair``: remove images stored in one collection of the pair only."""

from __future__ import annotations

import typer

from reidctl.cli.common import (
    CollectionOpt,
    JsonOpt,
    TokenOpt,
    UriOpt,
    errors_to_exit,
    open_store,
    out,
    print_json,
)
from reidctl.config import DEFAULT_URI


def repair(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count the orphans."),
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None, collection: CollectionOpt = "gallery",
    json_out: JsonOpt = False,
) -> None:
    """Find entries without a local descriptor (a crash or a race between an ingest and
    a delete) and local descriptors without an entry; remove both."""
    with errors_to_exit():
        from reidctl.pipeline.repair import repair as run_repair

        store = open_store(uri, collection, token, ctx, must_exist=True)
        r = run_repair(store, dry_run=dry_run)
        if json_out:
            print_json(r.to_dict() | {"collection": collection})
            return
        verb = "found" if dry_run else "removed"
        out.print(f"{verb} {r.global_only} entr{'y' if r.global_only == 1 else 'ies'} "
                  f"without a local descriptor and {r.local_only} local descriptor(s) "
                  f"without an entry in {collection}")
        if r.examples:
            out.print("ingest these again to make them searchable:")
            for path in r.examples:
                out.print(f"  {path}")


def register(app: typer.Typer) -> None:
    """Adds ``repair`` to ``app``."""
    app.command("repair")(repair)
