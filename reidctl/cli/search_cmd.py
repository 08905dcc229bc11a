"""``reidctl search``: the gallery images most like each query image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reidctl.cli import render
from reidctl.cli.common import (
    CollectionOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    TokenOpt,
    UriOpt,
    check_output_file,
    errors_to_exit,
    load_extractor,
    note,
    open_store,
    parse_time,
    print_json,
)
from reidctl.config import DEFAULT_URI

if TYPE_CHECKING:  # reidctl --help must not import torch
    from reidctl.query_opts import QueryOptions

_FILTERS = "Filters"
_OPTIONS = "Query options"

# the query-time options, shared with ``reidctl eval`` (see reidctl.query_opts)
QeOpt = Annotated[int, typer.Option(
    "--qe", min=0, max=100, rich_help_panel=_OPTIONS,
    help="Query expansion with the top N hits, then a second search (0: off).")]
KrOpt = Annotated[bool, typer.Option(
    "--kreciprocal/--no-kreciprocal", rich_help_panel=_OPTIONS,
    help="k-reciprocal re-ranking of the M candidates.")]
K1Opt = Annotated[int, typer.Option("--k1", min=1, max=1000, rich_help_panel=_OPTIONS,
                                    help="k-reciprocal neighbours.")]
K2Opt = Annotated[int, typer.Option("--k2", min=1, max=1000, rich_help_panel=_OPTIONS,
                                    help="Neighbours of the local query expansion.")]
LambdaOpt = Annotated[float, typer.Option(
    "--lambda", min=0.0, max=1.0, rich_help_panel=_OPTIONS,
    help="Weight of the original distance in the k-reciprocal one.")]


def query_options(qe: int, kreciprocal: bool, k1: int, k2: int, lam: float) -> QueryOptions:
    """The options as the search path takes them (raises InputError on bad values)."""
    from reidctl.query_opts import QueryOptions

    return QueryOptions(qe=qe, kreciprocal=kreciprocal, k1=k1, k2=k2, lam=lam)


def filter_text(camera: list[str], exclude_camera: list[str], source: list[str],
                after: str | None, before: str | None) -> str:
    """The filter options in words, e.g. ``camera == 7 and source in (a, b)`` ("" for
    none)."""
    def one(name: str, values: list[str], negated: bool = False) -> str:
        if len(values) == 1:
            return f"{name} {'!=' if negated else '=='} {values[0]}"
        return f"{name} {'not in' if negated else 'in'} ({', '.join(values)})"

    parts = [one(name, values, negated) for name, values, negated in (
        ("camera", camera, False), ("camera", exclude_camera, True), ("source", source, False))
        if values]
    parts += [f"captured at or after {after}"] if after is not None else []
    parts += [f"captured before {before}"] if before is not None else []
    return " and ".join(parts)


def no_hits_text(stored: int, filtered: str, timed: bool) -> str:
    """What a query without hits says: the collection is empty, or no image passes the
    filter (and which)."""
    if stored == 0:
        return "(the collection is empty)"
    if not filtered:
        return f"(no hit among the {stored} stored images)"
    untimed = ("; images without a capture time never pass a time filter" if timed else "")
    return f"no stored image passes the filter {filtered} ({stored} stored{untimed})"


def search(
    ctx: typer.Context,
    images: Annotated[list[Path] | None, typer.Argument(
        help="Query images, or folders of them (recursive).", show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=1000)] = 10,
    m: Annotated[int, typer.Option("--m", min=1, max=16384,
                                   help="Coarse candidates re-ranked by local features.")] = 500,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None, collection: CollectionOpt = "gallery",
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto", json_out: JsonOpt = False,
    camera: Annotated[list[str] | None, typer.Option(
        help="Only these cameras (repeatable).", rich_help_panel=_FILTERS)] = None,
    exclude_camera: Annotated[list[str] | None, typer.Option(
        help="Not these cameras (repeatable).", rich_help_panel=_FILTERS)] = None,
    source: Annotated[list[str] | None, typer.Option(
        help="Only these sources (repeatable).", rich_help_panel=_FILTERS)] = None,
    after: Annotated[str | None, typer.Option(
        help="Captured at or after (ISO 8601, UTC by default).", rich_help_panel=_FILTERS)] = None,
    before: Annotated[str | None, typer.Option(
        help="Captured before (ISO 8601).", rich_help_panel=_FILTERS)] = None,
    manifest: Annotated[Path | None, typer.Option(
        help="CSV whose path column lists query images (as for ingest --manifest).",
        show_default=False)] = None,
    grid: Annotated[Path | None, typer.Option(
        help="Also draw the ranked lists into this PNG (query, then the top-k).",
        show_default=False)] = None,
    csv_out: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the hits into this CSV: one row per query and hit (query, "
        "rank, distance, id, path, camera, person, time, source).", show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        min=0.0, help="Answer 'no match' beyond this distance (default: the model's "
        "calibrated threshold, see reidctl calibrate).", show_default=False)] = None,
    qe: QeOpt = 0, kreciprocal: KrOpt = False, k1: K1Opt = 10, k2: K2Opt = 3,
    lam: LambdaOpt = 0.3,
) -> None:
    """Find the gallery images most like each query (coarse ANN, then local re-rank;
    optionally query expansion and k-reciprocal re-ranking)."""
    with errors_to_exit():
        from reidctl.data.inputs import query_files
        from reidctl.data.manifest import read_manifest
        from reidctl.pipeline.ingest import value_problem
        from reidctl.pipeline.search import search as run_search
        from reidctl.types import Selection

        if grid is not None:
            check_output_file(grid, "--grid")
        if csv_out is not None:
            check_output_file(csv_out, "--csv")
        listed = read_manifest(manifest, value_problem) if manifest is not None else None
        queries = query_files(images or [], listed)
        options = query_options(qe, kreciprocal, k1, k2, lam)
        where = Selection(cameras=tuple(camera or ()), exclude_cameras=tuple(exclude_camera or ()),
                          sources=tuple(source or ()), after_ms=parse_time(after, "--after"),
                          before_ms=parse_time(before, "--before"))
        store = open_store(uri, collection, token, ctx, must_exist=True)
        extractor, dev = load_extractor(model, device)
        results = run_search(queries, store, extractor, top_k=top_k, m=m, device=dev,
                             where=None if where.empty else where, threshold=threshold,
                             options=options)
        rows = [r.to_dict() for r in results]
        for r in rows:
            for warning in r["warnings"]:
                note(f"warning: {r['query']}: {warning}")
        if grid is not None:
            from reidctl.pipeline.grids import search_grid

            search_grid(rows, grid)
            note(f"grid written to {grid}")
        if csv_out is not None:
            render.search_csv(rows, csv_out)
            note(f"csv written to {csv_out}")
        filtered = filter_text(camera or [], exclude_camera or [], source or [], after, before)
        if json_out:
            print_json({"collection": collection, "model": extractor.fingerprint,
                        "method": options.name, "query_options": options.describe(),
                        "results": rows}
                       | ({"filter": filtered} if filtered else {})
                       | ({"grid": str(grid)} if grid else {})
                       | ({"csv": str(csv_out)} if csv_out else {}))
        else:
            no_hits = ""
            if any(not r["hits"] for r in rows):
                no_hits = no_hits_text(store.count(), filtered,
                                       after is not None or before is not None)
            render.search_results(rows, no_hits)


def register(app: typer.Typer) -> None:
    """Adds the ``search`` command to ``app``."""
    app.command("search")(search)
