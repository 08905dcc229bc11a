"""``reidctl bench``: the Person-520K-style scale benchmark (gallery + N distractors)."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

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
    out,
    print_json,
    progress,
)

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
    implied = Backend.lite if "://" not in uri else Backend.server
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
                print_json(r)
            else:
                out.print(f"cache {r['cache']}: {r['chunks']} chunks for N = {r['n']:,} "
                          f"({r['chunks_computed']} computed now in {r['seconds']} s)")
            return
        with progress(not quiet) as start:
            report = run_bench(
                protocol, train_files, extractor,
                lambda name: open_store(target, name, token, ctx),
                cache_dir=cache / extractor.fingerprint, backend=chosen.value, device=dev,
                sizes=n or DEFAULT_SIZES, m=m, seed=seed, chunk_size=chunk_size,
                max_queries=queries, ingest_sample=ingest_sample, on_stage=start)
        if plot is not None:
            report["plot"] = str(draw_plot(report, plot))
        if json_out:
            print_json(report)
        else:
            render_bench(report)


def render_bench(r: dict) -> None:
    """Prints the results as tables, like the paper's Table 6 per gallery size."""
    from rich.table import Table
    from rich.text import Text

    out.print(Text.assemble(
        (r["protocol"], "bold"), f" + N distractors ({r['distractors']['recipe']}, seed "
        f"{r['distractors']['seed']}); model {r['model']}, M = {r['M']}, fine distance "
        f"{r['fine_distance']}; collections {r['collections']} at {r['uri']}"))
    table = Table(title_justify="left")
    for c in ("N", "gallery", "method", "mAP", "rank-1", "ms p50", "ms p95"):
        table.add_column(c, justify="left" if c == "method" else "right")
    for run in r["runs"]:
        for name, s in run["methods"].items():
            table.add_row(f"{run['n_distractors']:,}", f"{run['gallery_size']:,}", name,
                          f"{s['mAP']:.2f}", f"{s['rank1']:.2f}", f"{s['ms_p50']:.1f}",
                          f"{s['ms_p95']:.1f}")
        table.add_row("", "", "c2f in numpy", f"{run['inprocess_c2f_mAP']:.2f}", "",
                      f"{run['inprocess_c2f_ms_p50']:.1f}", f"{run['inprocess_c2f_ms_p95']:.1f}",
                      end_section=True)
    out.print(table)
    stages = Table(title="C2F stages (p50 ms per query), throughput, memory", title_justify="left")
    for c in ("N", "extract", "coarse", "fetch f_l", "re-rank", "queries/s (batched)",
              "peak RSS MiB", "inserted"):
        stages.add_column(c, justify="right")
    for run in r["runs"]:
        st = run["stages_ms_p50"]
        stages.add_row(f"{run['n_distractors']:,}", *(f"{st[k]:.1f}" for k in
                       ("extract", "coarse", "fetch", "rerank")),
                       f"{run['queries_per_s']:.1f}", f"{run['peak_rss_mb']:.0f}",
                       f"{run['inserted']:,}")
    out.print(stages)
    ing = r["ingest"]
    if ing.get("images_per_s"):
        out.print(f"ingest: {ing['images_per_s']:.1f} images/s through reidctl ingest, "
                  f"{ing['forward_images_per_s']:.1f} images/s for the forward pass alone "
                  f"({ing['images_per_s'] / ing['forward_images_per_s']:.0%}; forward one batch "
                  f"at a time {max(ing['forward_one_batch_images_per_s_rounds']):.1f}, in "
                  f"{ing['forward_streams']} streams "
                  f"{max(ing['forward_streams_images_per_s_rounds']):.1f}; best of "
                  f"{ing['rounds']} rounds, {ing['images']} train images, batches of "
                  f"{ing['batch_size']})")
    c = r["cache"]
    out.print(f"cache {c['dir']}: {len(c['chunks_computed'])} chunk(s) of {c['chunk_size']} "
              f"computed now; f_l stored as {c['f_l_dtype']} (max abs error "
              f"{c['f_l_max_abs_err']:.1e})")
    if "plot" in r:
        out.print(f"plot: {r['plot']}")


_COLOURS = {"coarse": (90, 90, 90), "c2f": (31, 119, 180), "linear": (214, 39, 40),
            "c2f in numpy": (44, 160, 44)}


def _log_range(values: list[float]) -> tuple[float, float]:
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def draw_plot(r: dict, path: Path) -> Path:
    """Two panels against gallery size (log x): latency p50 (log y) and mAP. Pillow only."""
    from PIL import Image, ImageDraw, ImageFont

    runs = r["runs"]
    xs = [run["gallery_size"] for run in runs]
    lat = {k: [run["methods"][k]["ms_p50"] for run in runs] for k in ("coarse", "c2f", "linear")}
    lat["c2f in numpy"] = [run["inprocess_c2f_ms_p50"] for run in runs]
    acc = {k: [run["methods"][k]["mAP"] for run in runs] for k in ("coarse", "c2f", "linear")}
    pw, ph, ml, mt, mr, mb = 480, 360, 64, 48, 16, 48  # panel size and margins
    img = Image.new("RGB", (2 * pw, ph), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x_lo, x_hi = _log_range(xs)
    all_ms = [max(v, 1e-3) for vs in lat.values() for v in vs]
    ms_lo, ms_hi = _log_range(all_ms)
    all_map = [v for vs in acc.values() for v in vs]
    map_lo = max(0.0, 10 * math.floor(min(all_map) / 10 - 0.5))
    map_hi = min(100.0, 10 * math.ceil(max(all_map) / 10 + 0.5))

    def panel(ox: int, title: str, series: dict, y_lo: float, y_hi: float, log_y: bool,
              y_ticks: list[tuple[float, str]]) -> None:
        def at(x: float, y: float) -> tuple[float, float]:
            fx = (math.log10(x) - x_lo) / (x_hi - x_lo)
            fy = ((math.log10(max(y, 1e-3)) if log_y else y) - y_lo) / (y_hi - y_lo)
            return ox + ml + fx * (pw - ml - mr), mt + (1 - fy) * (ph - mt - mb)

        x0, y0, x1, y1 = ox + ml, mt, ox + pw - mr, ph - mb
        draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
        draw.text((x0, 10), title, fill=(0, 0, 0), font=font)
        draw.text(((x0 + x1) // 2 - 50, ph - 20), "gallery size (log)", fill=(0, 0, 0),
                  font=font)
        for e in range(math.ceil(x_lo), math.floor(x_hi) + 1):
            px, _ = at(10.0**e, y_lo if not log_y else 10.0**y_lo)
            draw.line((px, y1, px, y1 + 4), fill=(0, 0, 0))
            draw.text((px - 10, y1 + 6), _si(10**e), fill=(0, 0, 0), font=font)
        for value, label in y_ticks:
            _, py = at(10.0**x_lo, value)
            draw.line((x0 - 4, py, x0, py), fill=(0, 0, 0))
            draw.text((x0 - 8 - 6 * len(label), py - 5), label, fill=(0, 0, 0), font=font)
        lx = x0
        for name, ys in series.items():
            colour = _COLOURS[name]
            pts = [at(x, y) for x, y in zip(xs, ys, strict=True)]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for px, py in pts:
                draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
            draw.line((lx, 31, lx + 14, 31), fill=colour, width=2)  # legend, above the frame
            draw.text((lx + 18, 25), name, fill=colour, font=font)
            lx += 30 + 6 * len(name)

    ms_ticks = [(10.0**e, _si(10**e)) for e in range(math.ceil(ms_lo), math.floor(ms_hi) + 1)]
    panel(0, "latency per query, p50 (ms, log)", lat, ms_lo, ms_hi, True, ms_ticks)
    step = 10 if map_hi - map_lo > 20 else 5
    map_ticks = [(float(v), f"{v:g}") for v in range(int(map_lo), int(map_hi) + 1, step)]
    panel(pw, "mAP (%)", acc, map_lo, map_hi, False, map_ticks)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _si(v: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def register(app: typer.Typer) -> None:
    """Adds the ``bench`` command to ``app``."""
    app.command("bench")(bench)
