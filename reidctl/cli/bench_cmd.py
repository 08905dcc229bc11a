"""``reidctl bench``: the Person-520K-style scale benchmark (gallery + N distractors)."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reidctl.cli import render
from reidctl.cli.common import (
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    TokenOpt,
    check_output_file,
    errors_to_exit,
    load_extractor,
    open_store,
    print_json,
    progress,
)
from reidctl.config import is_lite_uri

if TYPE_CHECKING:  # reidctl --help must not import the pipeline (and torch)
    from reidctl.pipeline.reports import BenchReport

DEFAULT_LITE_URI = "runs/bench.db"  # not ./reidctl.db: 520K rows do not belong in a gallery file
DEFAULT_SERVER_URI = "http://127.0.0.1:19530"
DEFAULT_ROOT = Path("../shared/datasets/cuhk03-labeled-pair1")
_TUNING = "Benchmark tuning"


class Backend(str, Enum):
    """Which Milvus the benchmark runs on."""

    lite = "milvus-lite"
    server = "milvus-server"


def resolve_uri(backend: Backend | None, uri: str | None) -> tuple[Backend, str]:
    """The backend and URI from what was given: either may imply the other.

    Raises:
        InputError: a Lite file with ``--backend milvus-server`` or a server URI with
            ``--backend milvus-lite``.
    """
    from reidctl.errors import InputError

    if uri is None:
        backend = backend or Backend.lite
        uri = DEFAULT_SERVER_URI if backend is Backend.server else DEFAULT_LITE_URI
        if backend is Backend.lite:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        return backend, uri
    implied = Backend.lite if is_lite_uri(uri) else Backend.server
    if backend is not None and backend is not implied:
        raise InputError(f"--backend {backend.value} does not fit --uri {uri!r} "
                         f"(that is a {implied.value} URI)")
    return implied, uri


def bench(
    ctx: typer.Context,
    n: Annotated[list[int] | None, typer.Option(
        "--n", min=0, help="Distractor count N, repeatable (default 0, 10000, 100000, "
        "520000); each N has its own collection pair, kept for reruns.",
        show_default=False)] = None,
    backend: Annotated[Backend | None, typer.Option(
        help="milvus-lite or milvus-server (default: what --uri is).", show_default=False)] = None,
    uri: Annotated[str | None, typer.Option(
        "--uri", envvar="REIDCTL_URI", show_default=False,
        help=f"Milvus Lite file or server URI (default {DEFAULT_LITE_URI}, or "
             f"{DEFAULT_SERVER_URI} with --backend milvus-server).")] = None,
    token: TokenOpt = None,
    root: Annotated[Path, typer.Option(
        "--root", envvar="REIDCTL_CUHK03",
        help="CUHK03 root: val/ (queries camera A, gallery camera B) and train/.")
    ] = DEFAULT_ROOT,
    train: Annotated[Path | None, typer.Option(
        help="Images the distractors are made from (default ROOT/train).",
        show_default=False)] = None,
    m: Annotated[int, typer.Option("--m", min=1, max=16384,
                                   help="Coarse candidates re-ranked by local features.")] = 500,
    cache: Annotated[Path, typer.Option(
        help="Cache of distractor descriptors; the model's fingerprint is a subfolder.")
    ] = Path("runs/bench_cache"),
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the distractor set.")] = 0,
    plot: Annotated[Path | None, typer.Option(
        help="Draw latency and mAP against gallery size into this PNG.",
        show_default=False)] = None,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
    queries: Annotated[int | None, typer.Option(
        min=1, hidden=True, help="Use this many queries, spread evenly (tests).",
        rich_help_panel=_TUNING)] = None,
    chunk_size: Annotated[int, typer.Option(
        min=1, hidden=True, help="Distractors per cache file.", rich_help_panel=_TUNING)] = 2048,
    ingest_sample: Annotated[int, typer.Option(
        min=0, hidden=True, help="Train images for the ingest throughput (0: skip).",
        rich_help_panel=_TUNING)] = 512,
    prepare_only: Annotated[bool, typer.Option(
        "--prepare", help="Only extract the distractors up to the largest --n into the cache "
        "(resumable; no database).")] = False,
) -> None:
    """Scale benchmark: CUHK03 val + N synthetic distractors; coarse vs C2F vs linear scan.

    Cached and resumable; docs/benchmarks.md says how distractors are made.
    """
    with errors_to_exit():
        from reidctl.data.datasets import cuhk03
        from reidctl.data.distractors import train_pool
        from reidctl.errors import InputError
        from reidctl.pipeline.bench import DEFAULT_SIZES, prepare, run_bench

        if plot is not None:
            check_output_file(plot, "--plot")
        if not (root / "val").is_dir():
            raise InputError(f"no CUHK03 val folder under {root} (set --root or REIDCTL_CUHK03)")
        chosen, target = resolve_uri(backend, uri)
        protocol = cuhk03(root, "val")
        train_files = train_pool(train or root / "train")
        extractor, dev = load_extractor(model, device)
        if prepare_only:
            top = max(n or DEFAULT_SIZES)
            with progress(not quiet) as start:
                r = prepare(protocol, train_files, extractor, cache_dir=cache /
                            extractor.fingerprint, n=top, seed=seed, chunk_size=chunk_size,
                            on_progress=start(f"distractors to N={top}", top))
            if json_out:
                print_json(r.to_dict())
            else:
                render.prepare_summary(r)
            return
        with progress(not quiet) as start:
            report = run_bench(
                protocol, train_files, extractor,
                lambda name: open_store(target, name, token, ctx),
                cache_dir=cache / extractor.fingerprint, backend=chosen.value, device=dev,
                sizes=n or DEFAULT_SIZES, m=m, seed=seed, chunk_size=chunk_size,
                max_queries=queries, ingest_sample=ingest_sample, on_stage=start)
        if plot is not None:
            report = replace(report, plot=str(draw_plot(report, plot)))
        if json_out:
            print_json(report.to_dict())
        else:
            render.bench_tables(report)


def backend_label(uri: str) -> str:
    """Which Milvus a URI names, for the plot's title: ``"Milvus Lite, bench.db"`` (the
    file's name) or ``"Milvus server, http://host:19530"`` (scheme, host and port only:
    never credentials, a path or a query)."""
    if is_lite_uri(uri):
        return f"Milvus Lite, {Path(uri).name}"
    from urllib.parse import urlsplit

    from reidctl.cli.masking import mask

    parts = urlsplit(uri)  # a unix: socket has no host: shown whole, user info masked
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else uri
    return mask(f"Milvus server, {where}")


def draw_plot(r: BenchReport, path: Path) -> Path:
    """Latency p50 and mAP of each method against gallery size, into ``path``, titled
    with the backend, M and the model."""
    from reidctl.viz_bench import render_bench_plot

    methods = ("coarse", "c2f", "linear")
    lat = {k: [run.methods[k].ms_p50 for run in r.runs] for k in methods}
    refs = [run.inprocess_c2f for run in r.runs]
    if all(refs):  # one point per gallery size, or no series
        lat["c2f in numpy"] = [ref.ms_p50 for ref in refs if ref]
    acc = {k: [run.methods[k].mAP for run in r.runs] for k in methods}
    return render_bench_plot([run.gallery_size for run in r.runs], lat, acc, path,
                             backend=backend_label(r.uri), detail=f"M = {r.M}, model {r.model}")


def register(app: typer.Typer) -> None:
    """Adds the ``bench`` command to ``app``."""
    app.command("bench")(bench)
