"""Human-readable rendering of results (rich tables)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from rich.cells import cell_len, get_character_cell_size
from rich.table import Table
from rich.text import Text

from reidctl.cli.common import out

if TYPE_CHECKING:  # reidctl --help must not import the pipeline (and torch)
    from reidctl.pipeline.doctor import Check
    from reidctl.pipeline.reports import BenchReport, EvalReport, PrepareReport
    from reidctl.pipeline.results import CalibrateReport, FitReport, InfoReport, TrainReport

_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def ingest_summary(r: dict) -> None:
    """Prints an ingest report."""
    out.print(
        f"ingested {r['ingested']}, updated {r['updated']}, unchanged {r['unchanged']}, "
        f"skipped {r['skipped']} of {r['files']} file(s) in {r['seconds']:.1f} s "
        f"({r['images_per_s']:.1f} images/s)"
    )
    for reason, n in sorted(r["skipped_by_reason"].items()):
        out.print(f"  skipped {n}: {reason}")
    for ex in r["skipped_examples"]:
        out.print(f"    {ex['path']}: {ex['reason']}")


def _short(path: str) -> str:
    """The path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def left_truncated(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` terminal cells, an ellipsis in front
    (the end of a path, its file name, stays whole)."""
    if cell_len(text) <= width:
        return text
    kept, used = len(text), 1  # the ellipsis takes one cell
    while kept > 0 and used + get_character_cell_size(text[kept - 1]) <= width:
        kept -= 1
        used += get_character_cell_size(text[kept])
    return "…" + text[kept:]


_SEARCH_COLUMNS = ("rank", "distance", "person", "camera", "path")
_MIN_PATH = 10  # cells: the table may grow wider than the terminal rather than show less


def _path_width(cells: list[tuple[str, ...]]) -> int:
    """The cells the path column may take so that the table fits the terminal: the width
    less the other columns (at their widest cell), their padding and the borders."""
    others = sum(max([cell_len(c)] + [cell_len(row[i]) for row in cells])
                 for i, c in enumerate(_SEARCH_COLUMNS[:-1]))
    n = len(_SEARCH_COLUMNS)
    return max(_MIN_PATH, out.width - others - 2 * n - (n + 1))


def search_results(results: list[dict], no_hits: str = "(the collection is empty)") -> None:
    """Prints one table of ranked hits per query; paths are kept on one line, cut from the
    left when the terminal is too narrow.

    Args:
        results: the queries' results (``QueryResult.to_dict()``).
        no_hits: what a query without hits says instead of a table.
    """
    for res in results:
        ms = res["ms"]
        how = "" if res["method"] == "c2f" else f"{res['method']}: "
        title = Text(f"{res['query']}  ({how}coarse {ms['coarse']:.1f} ms, "
                     f"fetch {ms['fetch']:.1f} ms, re-rank {ms['rerank']:.1f} ms)")
        if res.get("no_match"):
            best = res["hits"][0]["distance"] if res["hits"] else float("nan")
            title.append("\nno match", style="bold red")
            title.append(f": the best hit ({best:.4f}) is beyond the threshold "
                         f"{res['threshold']:.4f}; the closest images follow")
        elif res.get("no_match") is False:
            title.append("\nmatch", style="bold green")
            title.append(f" (threshold {res['threshold']:.4f})")
        if not res["hits"]:
            out.print(title)
            out.print(Text(f"  {no_hits}"))
            continue
        rows = [(str(h["rank"]), f"{h['distance']:.4f}", h["person_id"] or "?",
                 h["camera"] or "?", _short(h["path"])) for h in res["hits"]]
        width = _path_width(rows)
        table = Table(title=title, title_justify="left")
        for col in _SEARCH_COLUMNS[:-1]:
            number = col in ("rank", "distance")  # never cut
            table.add_column(col, justify="right" if number else "left", no_wrap=number,
                             min_width=max(len(r[_SEARCH_COLUMNS.index(col)]) for r in rows)
                             if number else None)
        table.add_column("path", no_wrap=True, overflow="ellipsis", min_width=_MIN_PATH)
        for row in rows:
            table.add_row(*row[:-1], left_truncated(row[-1], width))
        out.print(table)


CSV_COLUMNS = ("query", "rank", "distance", "id", "path", "camera", "person", "time", "source")


def search_csv(results: list[dict], path: Path) -> None:
    """Writes one CSV row per query and hit (:data:`CSV_COLUMNS`; unknown values empty,
    times in ISO 8601 UTC); creates the file's missing folders."""
    from reidctl.data.manifest import format_time

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for res in results:
            for h in res["hits"]:
                w.writerow([res["query"], h["rank"], f"{h['distance']:.6f}", h["id"], h["path"],
                            h["camera"], h["person_id"], format_time(h.get("captured_at", -1)),
                            h["source"]])


def eval_table(r: EvalReport) -> None:
    """Prints the methods' table (coarse, C2F, the query-time options asked for, linear),
    side by side like the paper's Table 6."""
    model = r.model
    out.print(Text(r.protocol, style="bold"))
    out.print(
        f"gallery {r.gallery_size} images, {r.num_queries} queries, M = {r.M}, "
        f"model {model.get('backbone')} {model.get('fingerprint')} "
        f"(f_g: {model.get('pca_detail') or model.get('pca')})"
    )
    table = Table(title_justify="left")
    cols = ["method", "mAP", "mAP (trapz)", "rank-1", "rank-5", "rank-10", "ms p50", "ms p95"]
    for c in cols:
        table.add_column(c, justify="left" if c == "method" else "right")
    for name, m in r.methods.items():
        table.add_row(name, *(f"{v:.2f}" for v in
                              (m.mAP, m.mAP_trapz, m.rank1, m.rank5, m.rank10, m.ms_p50,
                               m.ms_p95)))
    out.print(table)
    shots = {name: m.single_shot for name, m in r.methods.items() if m.single_shot}
    if shots:
        ss = ", ".join(f"{name} {s['rank1']:.1f}/{s['rank5']:.1f}/{s['rank10']:.1f}"
                       for name, s in shots.items())
        out.print(f"single-shot CMC rank-1/5/10 (20 draws): {ss}")
    st = r.c2f_stages_ms_p50
    out.print(f"c2f stages (p50): coarse {st['coarse']:.1f} ms, fetch f_l {st['fetch']:.1f} ms, "
              f"re-rank {st['rerank']:.1f} ms; fine distance {r.fine_distance}")
    if r.query_options:
        out.print(f"query options: {r.query_options} (the +qe / +kr rows)")
    if r.open_set is not None:
        o = r.open_set
        target = f" (calibrated for FMR {o['target_fmr']:.2%})" if o.get("target_fmr") else ""
        out.print(f"open set at threshold {o['threshold']:.4f}{target}: true-match rate "
                  f"{o['tmr']:.2%} of {o['queries_genuine']} queries, false-match rate "
                  f"{o['fmr']:.2%} of {o['queries_impostor']} (each query's own person removed)")
    out.print(f"query feature extraction: {r.extract_ms_per_query:.1f} ms per query (not in the "
              "retrieval times); AP counts relevant images the coarse stage cut off as misses")


def prepare_summary(r: PrepareReport) -> None:
    """Prints what ``bench --prepare`` left in the cache."""
    out.print(f"cache {r.cache}: {r.chunks} chunks for N = {r.n:,} "
              f"({r.chunks_computed} computed now in {r.seconds} s)")


def bench_tables(r: BenchReport) -> None:
    """Prints the benchmark as tables, like the paper's Table 6 per gallery size."""
    d = r.distractors
    out.print(Text.assemble(
        (r.protocol, "bold"), f" + N distractors ({d['recipe']}, seed {d['seed']}); model "
        f"{r.model}, M = {r.M}, fine distance {r.fine_distance}; collections "
        f"{r.collections} at {r.uri}"))
    table = Table(title_justify="left")
    for c in ("N", "gallery", "method", "mAP", "rank-1", "ms p50", "ms p95"):
        table.add_column(c, justify="left" if c == "method" else "right")
    for run in r.runs:
        for name, s in run.methods.items():
            table.add_row(f"{run.n_distractors:,}", f"{run.gallery_size:,}", name,
                          f"{s.mAP:.2f}", f"{s.rank1:.2f}", f"{s.ms_p50:.1f}", f"{s.ms_p95:.1f}")
        ref = run.inprocess_c2f
        table.add_row("", "", "c2f in numpy", f"{ref.mAP:.2f}" if ref else "", "",
                      f"{ref.ms_p50:.1f}" if ref else "", f"{ref.ms_p95:.1f}" if ref else "",
                      end_section=True)
    out.print(table)
    stages = Table(title="C2F stages (p50 ms per query), throughput, memory", title_justify="left")
    for c in ("N", "extract", "coarse", "fetch f_l", "re-rank", "queries/s (batched)",
              "peak RSS MiB", "inserted"):
        stages.add_column(c, justify="right")
    for run in r.runs:
        st = run.stages_ms_p50
        stages.add_row(f"{run.n_distractors:,}", *(f"{st[k]:.1f}" for k in
                       ("extract", "coarse", "fetch", "rerank")),
                       f"{run.queries_per_s:.1f}", f"{run.peak_rss_mb:.0f}", f"{run.inserted:,}")
    out.print(stages)
    ing = r.ingest
    if ing.get("images_per_s"):
        out.print(f"ingest: {ing['images_per_s']:.1f} images/s through reidctl ingest, "
                  f"{ing['forward_images_per_s']:.1f} images/s for the forward pass alone "
                  f"({ing['images_per_s'] / ing['forward_images_per_s']:.0%}; forward one batch "
                  f"at a time {max(ing['forward_one_batch_images_per_s_rounds']):.1f}, in "
                  f"{ing['forward_streams']} streams "
                  f"{max(ing['forward_streams_images_per_s_rounds']):.1f}; best of "
                  f"{ing['rounds']} rounds, {ing['images']} train images, batches of "
                  f"{ing['batch_size']})")
    c = r.cache
    out.print(f"cache {c['dir']}: {len(c['chunks_computed'])} chunk(s) of {c['chunk_size']} "
              f"computed now; f_l stored as {c['f_l_dtype']} (max abs error "
              f"{c['f_l_max_abs_err']:.1e})")
    if r.plot is not None:
        out.print(f"plot: {r.plot}")


def fit_summary(r: FitReport) -> None:
    """Prints what ``fit-pca`` wrote."""
    out.print(f"wrote {r.out} (fingerprint {r.fingerprint}): {r.pca}; "
              f"stripes: {r.stripe_whitening}; fitted on {r.images} images "
              f"({r.skipped_total} skipped) in {r.seconds} s")


def calibrate_summary(r: CalibrateReport) -> None:
    """Prints the calibrated threshold and its operating point."""
    out.print(
        f"wrote {r.out} (fingerprint {r.fingerprint}): no match beyond distance "
        f"{r.threshold:.4f}; on {r.images} images of {r.identities} identities: "
        f"FMR {r.fmr:.2%} (target {r.target_fmr:.2%}) over "
        f"{r.queries_impostor} impostor queries, TMR {r.tmr:.2%} over "
        f"{r.queries_genuine} genuine queries")


def train_summary(r: TrainReport) -> None:
    """Prints what ``train`` wrote and how the last epoch ended."""
    loss = "n/a" if r.final_loss is None else f"{r.final_loss:.4f}"
    acc = "n/a" if r.final_acc is None else f"{r.final_acc:.1%}"
    resumed = f" (resumed after epoch {r.resumed_from_epoch})" if r.resumed_from_epoch else ""
    freeze, part_weight = r.settings.freeze, r.settings.part_weight
    recipe = (f" frozen up to {freeze!r}," if freeze else "") + (
        f" part weight {part_weight:g}," if part_weight else "")
    out.print(
        f"wrote {r.out} (fingerprint {r.fingerprint}): {r.backbone} "
        f"{r.input_size}, {r.images} images of {r.identities} identities,{recipe} "
        f"{r.epochs} epochs{resumed}, final loss {loss}, train acc {acc}, "
        f"{r.seconds_per_epoch} s/epoch; {r.pca}")


def info_tables(r: InfoReport) -> None:
    """Prints the database, its collection pairs and the settings in force."""
    disk = (f"{r.disk_bytes / 2**20:.1f} MiB on disk" if r.disk_bytes is not None
            else "disk size: n/a")
    out.print(Text.assemble((r.uri, "bold"), f" ({r.backend}, {disk})"))
    out.print(f"config file: {r.config_file or 'none'}")
    t = Table(title="collection pairs", title_justify="left")
    for c in ("name", "images", "f_g", "index", "f_l", "model"):
        t.add_column(c, overflow="fold")
    for p in r.collections:
        idx = p.index
        params = ", ".join(f"{k}={v}" for k, v in idx["params"].items())
        images = (str(p.global_count) if p.global_count == p.local_count
                  else f"{p.global_count} (local {p.local_count})")
        t.add_row(p.name, images, f"{p.global_dim}-D",
                  f"{idx['type']} {idx['metric']} {params}", f"{p.local_dim}-D", p.model)
    if not r.collections:
        t.add_row("(none)", "", "", "", "", "")
    out.print(t)
    s = Table(title="settings (option > environment > config file > default)",
              title_justify="left")
    for c in ("setting", "value", "from"):
        s.add_column(c)
    for row in r.settings:
        s.add_row(row.name, str(row.value), row.source)
    out.print(s)


def doctor_checks(checks: list[Check]) -> None:
    """Prints one line per check, with its fix when it did not pass, and the verdict."""
    for c in checks:
        out.print(Text.assemble((f"{c.status:>4}", _STATUS_STYLE[c.status]),
                                f" {c.name}: {c.detail}"))
        if c.fix:
            out.print(f"      fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    out.print("all checks passed" if not failed else f"{failed} check(s) failed")
