"""``reidctl fit-pca``: fit the descriptor projections on training images (no training)."""

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
            print_json(r.to_dict())
        else:
            render.fit_summary(r)


def register(app: typer.Typer) -> None:
    """Adds the ``fit-pca`` command to ``app``."""
    app.command("fit-pca")(fit_pca)
