"""``reidctl calibrate``: the open-set "no match" threshold for a target false-match rate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidctl.cli import render
from reidctl.cli.common import (
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    check_output_file,
    errors_to_exit,
    load_extractor,
    print_json,
    progress,
)


def calibrate(
    data: Annotated[Path, typer.Argument(
        help="Labeled folder (not the evaluation data): CUHK03 names (camera A queries "
             "camera B) or Market-1501 names (each image against all others).",
        show_default=False)],
    out_path: Annotated[Path, typer.Option(
        "--out", "-o", help="Checkpoint to write: the model plus its open-set threshold.")],
    fmr: Annotated[float, typer.Option(
        "--fmr", min=0.0, max=0.5,
        help="Target false-match rate: fraction of absent persons answered with a match.")] = 0.01,
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Calibrate the distance beyond which search answers "no match", for a target FMR."""
    with errors_to_exit():
        from reidctl.pipeline.calibrate import calibrate_model, folder_protocol

        check_output_file(out_path, "--out")
        protocol = folder_protocol(data)
        extractor, dev = load_extractor(model, device)
        with progress(not quiet) as start:
            r = calibrate_model(extractor, protocol, fmr, out_path, device=dev, on_stage=start)
        if json_out:
            print_json(r.to_dict())
        else:
            render.calibrate_summary(r)


def register(app: typer.Typer) -> None:
    """Adds the ``calibrate`` command to ``app``."""
    app.command("calibrate")(calibrate)
