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
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Image files or folders (recursive). Person id and camera are read from CUHK03 "
             "and Market-1501 file names; give those of other images with --camera or "
             "--manifest.", show_default=False)] = None,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None, collection: CollectionOpt = "gallery",
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(min=1, max=1024,
                                            help="Images per batch.")] = DEFAULT_BATCH,
    source: Annotated[str | None, typer.Option(help="Source name stored with each image.")] = None,
    camera: Annotated[str | None, typer.Option(
        help="Camera id stored with each image (instead of the one its name gives).",
        show_default=False)] = None,
    manifest: Annotated[Path | None, typer.Option(
        help="CSV listing images, with columns path (absolute or relative to the CSV's "
             "folder) and any of camera, person, time (ISO 8601), source; its values win "
             "over the options and the file names.", show_default=False)] = None,
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
        from reidctl.data.manifest import read_manifest
        from reidctl.errors import InputError
        from reidctl.pipeline.ingest import ingest as run_ingest
        from reidctl.pipeline.ingest import value_problem
        from reidctl.types import check_label

        if camera is not None and (problem := value_problem("camera", check_label(
                camera, "--camera"))):
            raise InputError(f"--camera {camera!r:.80} cannot be stored: {problem}")
        listed = read_manifest(manifest, value_problem) if manifest is not None else None
        files = ingest_files(paths or [], shard, listed)
        store = open_store(uri, collection, token, ctx)
        extractor, _ = load_extractor(model, device)
        with progress(not quiet) as start:
            report = run_ingest(files, store, extractor, batch_size=batch_size, source=source,
                                force=force, time_from_mtime=time_from is TimeFrom.mtime,
                                on_progress=start("ingest", len(files)), camera=camera,
                                labels=listed.labels if listed is not None else None)
        r = report.to_dict() | {"collection": collection, "model": extractor.fingerprint}
        if json_out:
            print_json(r)
        else:
            render.ingest_summary(r)


def register(app: typer.Typer) -> None:
    """Adds the ``ingest`` command to ``app``."""
    app.command("ingest")(ingest)
