"""``reidctl eval``: a dataset protocol through the search path (mAP, CMC, latency)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from reidctl.cli import render
from reidctl.cli.common import (
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    TokenOpt,
    UriOpt,
    check_output_dir,
    errors_to_exit,
    fail,
    load_extractor,
    open_store,
    out,
    print_json,
    progress,
)
from reidctl.cli.eval_notes import eval_notes, model_recipe
from reidctl.cli.search_cmd import K1Opt, K2Opt, KrOpt, LambdaOpt, QeOpt, query_options
from reidctl.config import DEFAULT_URI

DatasetArg = Annotated[str, typer.Option("--dataset", "-d", help="cuhk03 or market1501.")]


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
    qe: QeOpt = 0, kreciprocal: KrOpt = False, k1: K1Opt = 10, k2: K2Opt = 3,
    lam: LambdaOpt = 0.3,
) -> None:
    """Evaluate a dataset protocol: coarse vs C2F vs linear scan (mAP, CMC, latency);
    --qe and --kreciprocal add C2F with query expansion and k-reciprocal re-ranking."""
    with errors_to_exit():
        from dataclasses import replace

        from reidctl.data.datasets import Dataset, load_protocol

        if grid is not None:
            check_output_dir(grid, "--grid")
        from reidctl.pipeline.evaluate import default_collection
        from reidctl.pipeline.evaluate import evaluate as run_eval

        if dataset not in Dataset.__members__:
            raise fail(f"unknown dataset {dataset!r}: choose cuhk03 or market1501", 2)
        options = query_options(qe, kreciprocal, k1, k2, lam)
        protocol = load_protocol(dataset, root)
        extractor, dev = load_extractor(model, device)
        name = collection or default_collection(dataset, extractor)
        store = open_store(uri, name, token, ctx)
        with progress(not quiet) as start:
            report = run_eval(protocol, store, extractor, m=m, device=dev, on_stage=start,
                              examples=grid_queries if grid else 0, threshold=threshold,
                              options=options)
        if grid is not None:
            from reidctl.viz import render_grid

            picture = render_grid(report.examples or [], grid / f"eval_{dataset}_c2f.png")
            report = replace(report, examples=None, grid=str(picture))
        if json_out:
            print_json(report.to_dict())
        else:
            render.eval_table(report)
            recipe = model_recipe(extractor.checkpoint is not None, extractor.record.extra)
            for line in eval_notes(report, recipe):
                out.print(Text(line))


def register(app: typer.Typer) -> None:
    """Adds the ``eval`` command to ``app``."""
    app.command("eval")(evaluate)
