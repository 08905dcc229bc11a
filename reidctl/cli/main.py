"""reidctl: person re-identification as image retrieval, on Milvus."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from reidctl import allocator
from reidctl.cli import render
from reidctl.cli.bench_cmd import register as register_bench
from reidctl.cli.calibrate_cmd import register as register_calibrate
from reidctl.cli.common import (
    AppState,
    CollectionOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    OneLineGroup,
    QuietOpt,
    TokenOpt,
    UriOpt,
    check_output_dir,
    check_output_file,
    errors_to_exit,
    fail,
    load_extractor,
    note,
    open_store,
    out,
    parse_time,
    print_json,
    progress,
    set_verbosity,
)
from reidctl.cli.inspect_cmd import register as register_inspect
from reidctl.cli.repair_cmd import register as register_repair
from reidctl.cli.train_cmd import register as register_train
from reidctl.cli.viz_cmd import register as register_viz
from reidctl.config import DEFAULT_BATCH, DEFAULT_URI

app = typer.Typer(
    name="reidctl", no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineGroup,
    help="Person re-identification as image retrieval: Conv-Net descriptors, "
         "coarse-to-fine search on Milvus.",
)

class TimeFrom(str, Enum):
    """Where ingest takes an image's capture time from."""

    none = "none"
    mtime = "mtime"


_FILTERS = "Filters"
DatasetArg = Annotated[str, typer.Option("--dataset", "-d", help="cuhk03 or market1501.")]
_CONN = "Connection (server)"


@app.callback()
def main(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(
        envvar="REIDCTL_USER", help="Server user name.", rich_help_panel=_CONN)] = None,
    password: Annotated[str | None, typer.Option(
        envvar="REIDCTL_PASSWORD", help="Server password (prefer the environment variable).",
        rich_help_panel=_CONN, show_default=False)] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="REIDCTL_DB", help="Milvus database name.", rich_help_panel=_CONN)] = None,
    tls: Annotated[bool, typer.Option(
        envvar="REIDCTL_TLS", help="Use TLS (implied by https:// or a CA file).",
        rich_help_panel=_CONN)] = False,
    tls_ca: Annotated[Path | None, typer.Option(
        envvar="REIDCTL_TLS_CA", help="CA or server certificate (PEM) to verify the server.",
        rich_help_panel=_CONN)] = None,
    tls_server_name: Annotated[str | None, typer.Option(
        envvar="REIDCTL_TLS_SERVER_NAME", help="Name in the server certificate.",
        rich_help_panel=_CONN)] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        envvar="REIDCTL_TLS_CERT", help="Client certificate (PEM) for mutual TLS.",
        rich_help_panel=_CONN)] = None,
    tls_key: Annotated[Path | None, typer.Option(
        envvar="REIDCTL_TLS_KEY", help="Client key (PEM) for mutual TLS.",
        rich_help_panel=_CONN)] = None,
    timeout: Annotated[float, typer.Option(
        envvar="REIDCTL_TIMEOUT", min=0.1, help="Seconds allowed per database call.",
        rich_help_panel=_CONN)] = 30.0,
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="REIDCTL_CONFIG", show_default=False,
        help="Settings file (default: ./reidctl.toml when it exists). Precedence: option > "
             "REIDCTL_* environment variable > this file > default.")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bars or notes; results and errors only.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log each step on stderr; full tracebacks of unexpected errors.")
    ] = False,
) -> None:
    """Person re-identification as image retrieval on Milvus."""
    from reidctl.cli.settings import default_map, find_config, load_config
    from reidctl.config import Connection

    set_verbosity(quiet=quiet, verbose=verbose)
    with errors_to_exit():
        path, _ = find_config(config)
        cfg = load_config(path, ctx.command)
    ctx.default_map = default_map(cfg, ctx.command)
    given = dict(ctx.params)
    for name, value in cfg.common.items():  # the file fills what option/env left unset
        src = ctx.get_parameter_source(name)
        if name in given and (src is None or src.name == "DEFAULT"):
            given[name] = value
    path_or_none = lambda v: str(v) if v else None  # noqa: E731
    with errors_to_exit():  # a bad --timeout fails every command, not only those that connect
        conn = Connection(
            user=given["user"], password=given["password"], db_name=given["db"],
            tls=bool(given["tls"]), ca_file=path_or_none(given["tls_ca"]),
            server_name=given["tls_server_name"], client_cert=path_or_none(given["tls_cert"]),
            client_key=path_or_none(given["tls_key"]), timeout=float(given["timeout"]),
        ).validated()
    if given["quiet"] or given["verbose"]:
        set_verbosity(quiet=bool(given["quiet"]), verbose=bool(given["verbose"]))
    ctx.obj = AppState(connection=conn, config=cfg, root=given)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None, collection: CollectionOpt = "gallery",
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(min=1, max=1024,
                                            help="Images per batch.")] = DEFAULT_BATCH,
    source: Annotated[str | None, typer.Option(help="Source name stored with each image.")] = None,
    force: Annotated[bool, typer.Option(help="Recompute images already stored.")] = False,
    time_from: Annotated[TimeFrom, typer.Option(
        help="Capture time: none, or the file modification time.")] = TimeFrom.none,
    shard: Annotated[str | None, typer.Option(
        help="Ingest only shard i of N (i/N, 0-based): N workers split the files by path.",
        show_default=False)] = None,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Extract Conv-Net descriptors of images and upsert them (local, then global)."""
    with errors_to_exit():
        from reidctl.data.images import discover
        from reidctl.data.shard import parse_shard, select_shard
        from reidctl.pipeline.ingest import ingest as run_ingest

        files = discover(paths)
        if shard is not None:
            index, count = parse_shard(shard)
            root = Path(paths[0]).expanduser().resolve() if len(paths) == 1 else None
            files = select_shard(files, index, count, root=root if root and root.is_dir() else None)
        store = open_store(uri, collection, token, ctx)
        extractor, _ = load_extractor(model, device)
        with progress(not quiet) as start:
            report = run_ingest(files, store, extractor, batch_size=batch_size, source=source,
                                force=force, time_from_mtime=time_from is TimeFrom.mtime,
                                on_progress=start("ingest", len(files)))
        r = report.to_dict() | {"collection": collection, "model": extractor.fingerprint}
        if json_out:
            print_json(r)
        else:
            render.ingest_summary(r)


@app.command()
def search(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Query image(s).")],
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
    grid: Annotated[Path | None, typer.Option(
        help="Also draw the ranked lists into this PNG (query, then the top-k).",
        show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        min=0.0, help="Answer 'no match' beyond this distance (default: the model's "
        "calibrated threshold, see reidctl calibrate).", show_default=False)] = None,
) -> None:
    """Find the gallery images most like each query (coarse ANN, then local re-rank)."""
    with errors_to_exit():
        from reidctl.pipeline.search import search as run_search
        from reidctl.types import Selection

        if grid is not None:
            check_output_file(grid, "--grid")
        where = Selection(cameras=tuple(camera or ()), exclude_cameras=tuple(exclude_camera or ()),
                          sources=tuple(source or ()), after_ms=parse_time(after, "--after"),
                          before_ms=parse_time(before, "--before"))
        store = open_store(uri, collection, token, ctx, must_exist=True)
        extractor, dev = load_extractor(model, device)
        results = run_search(images, store, extractor, top_k=top_k, m=m, device=dev,
                             where=None if where.empty else where, threshold=threshold)
        rows = [r.to_dict() for r in results]
        for r in rows:
            for warning in r["warnings"]:
                note(f"warning: {r['query']}: {warning}")
        if grid is not None:
            from reidctl.data.names import parse_name
            from reidctl.viz import render_grid

            render_grid([r | {"query_person": parse_name(r["query"]).person_id or None}
                         for r in rows], grid)
        if json_out:
            print_json({"collection": collection, "model": extractor.fingerprint, "results": rows}
                       | ({"grid": str(grid)} if grid else {}))
        else:
            render.search_results(rows)


@app.command()
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
        import sys

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


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    dataset: DatasetArg,
    root: Annotated[Path, typer.Option("--root", help="Dataset folder.")],
    m: Annotated[int, typer.Option("--m", min=1, max=16384)] = 500,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None,
    collection: Annotated[str | None, typer.Option(
        "--collection", "-c", help="Collection pair for the gallery "
        "(default eval_<dataset>_<model fingerprint>).", show_default=False)] = None,
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    grid: Annotated[Path | None, typer.Option(
        help="Folder for a picture of C2F ranked lists of sample queries.",
        show_default=False)] = None,
    grid_queries: Annotated[int, typer.Option(min=1, max=64,
                                              help="Queries in the --grid picture.")] = 8,
    threshold: Annotated[float | None, typer.Option(
        min=0.0, help="Open-set threshold to report TMR/FMR at (default: the model's).",
        show_default=False)] = None,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Evaluate a dataset protocol: coarse vs C2F vs linear scan (mAP, CMC, latency)."""
    with errors_to_exit():
        from reidctl.data.datasets import Dataset, load_protocol

        if grid is not None:
            check_output_dir(grid, "--grid")
        from reidctl.pipeline.evaluate import default_collection
        from reidctl.pipeline.evaluate import evaluate as run_eval

        if dataset not in Dataset.__members__:
            raise fail(f"unknown dataset {dataset!r}: choose cuhk03 or market1501", 2)
        protocol = load_protocol(dataset, root)
        extractor, dev = load_extractor(model, device)
        name = collection or default_collection(dataset, extractor)
        store = open_store(uri, name, token, ctx)
        with progress(not quiet) as start:
            report = run_eval(protocol, store, extractor, m=m, device=dev, on_stage=start,
                              examples=grid_queries if grid else 0, threshold=threshold)
        if grid is not None:
            from reidctl.viz import render_grid

            report["grid"] = str(render_grid(report.pop("examples"),
                                             grid / f"eval_{dataset}_c2f.png"))
        if json_out:
            print_json(report)
        else:
            render.eval_table(report)


@app.command("fit-pca")
def fit_pca(
    data: Annotated[list[Path], typer.Argument(help="Training images (files or folders).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write.")],
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    dim: Annotated[int, typer.Option(min=8, max=2048, help="Dimension of f_g.")] = 128,
    shrinkage: Annotated[float, typer.Option(min=0.0, help="Whitening shrinkage.")] = 2.0,
    fine_weight: Annotated[float | None, typer.Option(
        min=0.0, max=100.0,
        help="Weight of the local distance in the fine stage (default: the model's).",
        show_default=False)] = None,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Fit the f_g PCA and the f_l stripe whitening on training images; write a checkpoint."""
    with errors_to_exit():
        from reidctl.data.images import discover
        from reidctl.pipeline.fit import fit_model

        check_output_file(out_path, "--out")

        files = discover(data)
        extractor, _ = load_extractor(model, device)
        with progress(not quiet) as start:
            r = fit_model(extractor, files, out_path, dim=dim, shrinkage=shrinkage,
                          fine_weight=fine_weight, on_progress=start("fit", len(files)))
        if json_out:
            print_json(r)
        else:
            out.print(f"wrote {r['out']} (fingerprint {r['fingerprint']}): {r['pca']}; "
                      f"stripes: {r['stripe_whitening']}; fitted on {r['images']} images "
                      f"({sum(r['skipped'].values())} skipped) in {r['seconds']} s")


register_train(app)
register_inspect(app)
register_repair(app)
register_calibrate(app)
register_bench(app)
register_viz(app)


def run() -> None:
    """Console-script entry point."""
    allocator.tune()  # before torch starts its threads
    app()


if __name__ == "__main__":
    run()
