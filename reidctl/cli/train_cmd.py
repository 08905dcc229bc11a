"""``reidctl train``: train Conv-Net on a labeled folder, write a checkpoint the others load."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    Progress,
    TextColumn,
)

from reidctl.cli import render
from reidctl.cli.common import (
    VERBOSITY,
    JsonOpt,
    QuietOpt,
    bar_columns,
    check_output_file,
    err,
    errors_to_exit,
    line_progress,
    print_json,
)
from reidctl.cli.progress_lines import LineProgress, LineTask

_RECIPE = "Recipe"


class BackboneChoice(str, Enum):
    """Base networks ``train`` starts from."""

    osnet_x0_25 = "osnet_x0_25"
    omz_0286 = "omz_0286"
    omz_0277 = "omz_0277"
    googlenet = "googlenet"


class TrainProgress:
    """Renders the pipeline's callbacks: one bar over all steps (loss, accuracy, ETA) on stderr."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: Any = None

    def step(self, s: Any) -> None:
        """``on_step``: advance the bar to the step, with the epoch's running loss and accuracy."""
        if self.task is None:
            self.task = self.bar.add_task("train", total=s.total_steps,
                                          completed=s.global_step - 1, metrics="")
        self.bar.update(self.task, completed=s.global_step,
                        metrics=f"loss {s.loss:.3f} acc {s.acc:.1%}",
                        description=f"epoch {s.epoch}/{s.epochs}")

    def epoch(self, r: Any) -> None:
        """``on_epoch``: one line per finished epoch."""
        self.bar.console.print(_epoch_line(r))

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        """``on_stage``: a plain bar for the final feature pass."""
        task = self.bar.add_task(name, total=total, metrics="")
        return lambda n: self.bar.advance(task, n)


def _epoch_line(r: Any) -> str:
    """The line that reports a finished epoch."""
    part = f", part ce {r.part_ce:.4f}" if r.part_ce else ""
    return (f"epoch {r.epoch}/{r.epochs}: loss {r.loss:.4f} (ce {r.ce:.4f}{part}, triplet "
            f"{r.triplet:.4f}), train acc {r.acc:.1%}, {r.seconds:.0f} s")


class TrainLines:
    """:class:`TrainProgress`'s callbacks as plain lines, for a stderr that is not a terminal
    (a log file): a line every few seconds with step, rate and ETA, and one per epoch."""

    def __init__(self, lines: LineProgress) -> None:
        self.lines = lines
        self.task: LineTask | None = None

    def step(self, s: Any) -> None:
        if self.task is None:
            self.task = self.lines.stage("train", s.total_steps, completed=s.global_step - 1)
        self.task.update(s.global_step, f"epoch {s.epoch}/{s.epochs}, loss {s.loss:.3f} "
                                        f"acc {s.acc:.1%}")

    def epoch(self, r: Any) -> None:
        self.lines.emit(_epoch_line(r))

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        return self.lines.stage(name, total).advance


@contextlib.contextmanager
def train_progress(enabled: bool) -> Iterator[TrainProgress | TrainLines | None]:
    """A rich display on stderr when enabled and stderr is a terminal, plain lines when it
    is not (a log); None when disabled."""
    if enabled and not VERBOSITY.quiet and not err.is_terminal:
        yield TrainLines(line_progress())
        return
    if not (enabled and err.is_terminal):
        yield None
        return
    bar = Progress(*bar_columns(TextColumn("{task.fields[metrics]}", markup=False)), console=err,
                   transient=False)
    with bar:
        yield TrainProgress(bar)


def train(
    data: Annotated[Path, typer.Option(
        "--data", help="Labeled image folder: identity = person id of the file name.")],
    out_path: Annotated[Path, typer.Option(
        "--out", "-o", help="Checkpoint to write; training state goes to <out>.state.")],
    backbone: Annotated[BackboneChoice, typer.Option(
        help="osnet_x0_25 (from its ONNX weights, 256x128), omz_0286 / omz_0277 (from their "
             "OpenVINO IR weights, 256x128) or googlenet (from scratch, 512x256).")
    ] = BackboneChoice.osnet_x0_25,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs (the LR schedule spans all).",
                                        rich_help_panel=_RECIPE)] = 12,
    batch_p: Annotated[int, typer.Option(min=2, help="Identities per batch.",
                                         rich_help_panel=_RECIPE)] = 16,
    batch_k: Annotated[int, typer.Option(min=1, help="Images per identity in a batch.",
                                         rich_help_panel=_RECIPE)] = 4,
    lr: Annotated[float, typer.Option(min=0.0, help="AdamW learning rate of the backbone "
                                      "(10x for the classifier block).",
                                      rich_help_panel=_RECIPE)] = 3e-4,
    triplet_weight: Annotated[float, typer.Option(
        min=0.0, help="Weight of the batch-hard triplet term (0: cross-entropy only).",
        rich_help_panel=_RECIPE)] = 1.0,
    max_identities: Annotated[int | None, typer.Option(
        min=2, help="Train on the first N identities only (quick runs).", show_default=False,
        rich_help_panel=_RECIPE)] = None,
    seed: Annotated[int, typer.Option(help="Seeds every random draw: same seed, same run.",
                                      rich_help_panel=_RECIPE)] = 0,
    part_weight: Annotated[float, typer.Option(
        min=0.0, help="Weight of the mean cross-entropy of one classifier block per horizontal "
                      "stripe (part supervision; 0: none). Used in training only: the checkpoint "
                      "has no part classifiers.", rich_help_panel=_RECIPE)] = 0.0,
    local_triplet: Annotated[float, typer.Option(
        min=0.0, help="Weight of a batch-hard triplet term on f_l itself (the stripes as the "
                      "fine stage compares them; 0: none).", rich_help_panel=_RECIPE)] = 0.0,
    freeze: Annotated[str | None, typer.Option(
        help="Freeze the backbone up to this graph tensor and train only the rest, on its "
             "outputs cached once in <out>.cache/ (flip and erasing only, no pad-and-crop). "
             "omz_0286: 941 (start of conv4); osnet_x0_25: "
             "/conv3/conv3.2/conv3.2.1/AveragePool_output_0.", show_default=False,
        rich_help_panel=_RECIPE)] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Initial backbone weights (ONNX for OSNet, IR .xml for omz_*, state_dict for "
             "GoogLeNet).",
        show_default=False, rich_help_panel=_RECIPE)] = None,
    device: Annotated[str, typer.Option(  # the other commands' --device, and its default
        "--device", envvar="REIDCTL_DEVICE",
        help="auto (CUDA when present), cpu or cuda; CUDA trains in mixed precision.")
    ] = "auto",
    workers: Annotated[int, typer.Option(min=0, max=16,
                                         help="Processes decoding images ahead.")] = 1,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Torch CPU threads (default: torch's choice).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        help="Require <out>.state and continue from it (done anyway when it exists and "
             "matches).")] = False,
    restart: Annotated[bool, typer.Option(help="Discard <out>.state and start over.")] = False,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Train Conv-Net (identity classification), fit the PCA and whitening, write a checkpoint."""
    with errors_to_exit():
        import torch

        from reidctl.errors import InputError
        from reidctl.pipeline.train import TrainSettings
        from reidctl.pipeline.train import train as run_train

        if resume and restart:
            raise InputError("--resume and --restart exclude each other")
        check_output_file(out_path, "--out")
        if threads:
            torch.set_num_threads(threads)
        settings = TrainSettings(
            backbone=backbone.value, epochs=epochs, batch_p=batch_p, batch_k=batch_k, lr=lr,
            triplet_weight=triplet_weight, seed=seed, max_identities=max_identities,
            weights=str(weights) if weights else None, part_weight=part_weight, freeze=freeze,
            local_triplet_weight=local_triplet)
        with train_progress(not quiet) as show:
            r = run_train(data, out_path, settings, device=device, workers=workers,
                          resume=resume, restart=restart,
                          on_step=show.step if show else None,
                          on_epoch=show.epoch if show else None,
                          on_stage=show.stage if show else None)
        if json_out:
            print_json(r.to_dict())
        else:
            render.train_summary(r)


def register(app: typer.Typer) -> None:
    """Adds the ``train`` command to ``app``."""
    app.command("train")(train)
