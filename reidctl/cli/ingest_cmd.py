"""``reidctl ingest``: extract descriptors of image files and store them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from reidctl.cli import render
from reidctl.cli.common import (
    CollectionOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    TokenOpt,
    UriOpt,
    errors_to_exit,
    load_extractor,
    open_store,
    print_json,
    progress,
)
from reidctl.config import DEFAULT_BATCH, DEFAULT_URI


class TimeFrom(str, Enum):
    """Where ingest takes an image's capture time from."""

    none = "none"
    mtime = "mtime"


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
        from reidctl.data.inputs import ingest_files
        from reidctl.pipeline.ingest import ingest as run_ingest

        files = ingest_files(paths, shard)
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


def register(app: typer.Typer) -> None:
    """Adds the ``ingest`` command to ``app``."""
    app.command("ingest")(ingest)
