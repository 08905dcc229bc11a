"""Human-readable rendering of results (rich tables)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from reidctl.cli.common import out


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


def search_results(results: list[dict]) -> None:
    """Prints one table of ranked hits per query."""
    for res in results:
        ms = res["ms"]
        title = Text(f"{res['query']}  (coarse {ms['coarse']:.1f} ms, "
                     f"fetch {ms['fetch']:.1f} ms, re-rank {ms['rerank']:.1f} ms)")
        if res.get("no_match"):
            best = res["hits"][0]["distance"] if res["hits"] else float("nan")
            title.append("\nno match", style="bold red")
            title.append(f": the best hit ({best:.4f}) is beyond the threshold "
                         f"{res['threshold']:.4f}; the closest images follow")
        elif res.get("no_match") is False:
            title.append("\nmatch", style="bold green")
            title.append(f" (threshold {res['threshold']:.4f})")
        table = Table(title=title, title_justify="left")
        for col in ("rank", "distance", "person", "camera"):
            table.add_column(col, justify="right" if col in ("rank", "distance") else "left")
        table.add_column("path", overflow="fold")
        for h in res["hits"]:
            table.add_row(str(h["rank"]), f"{h['distance']:.4f}", h["person_id"] or "?",
                          h["camera"] or "?", _short(h["path"]))
        if not res["hits"]:
            table.add_row("-", "-", "-", "-", "(the collection is empty)")
        out.print(table)


def eval_table(r: dict) -> None:
    """Prints the three-method table, side by side like the paper's Table 6."""
    model = r["model"]
    out.print(Text(r["protocol"], style="bold"))
    out.print(
        f"gallery {r['gallery_size']} images, {r['num_queries']} queries, M = {r['M']}, "
        f"model {model.get('backbone')} {model.get('fingerprint')} "
        f"(f_g: {model.get('pca_detail') or model.get('pca')})"
    )
    table = Table(title_justify="left")
    cols = ["method", "mAP", "mAP (trapz)", "rank-1", "rank-5", "rank-10", "ms p50", "ms p95"]
    for c in cols:
        table.add_column(c, justify="left" if c == "method" else "right")
    for name, m in r["methods"].items():
        table.add_row(name, *(f"{m[k]:.2f}" for k in
                              ("mAP", "mAP_trapz", "rank1", "rank5", "rank10", "ms_p50", "ms_p95")))
    out.print(table)
    if any("single_shot" in m for m in r["methods"].values()):
        ss = ", ".join(
            f"{name} {m['single_shot']['rank1']:.1f}/{m['single_shot']['rank5']:.1f}/"
            f"{m['single_shot']['rank10']:.1f}" for name, m in r["methods"].items())
        out.print(f"single-shot CMC rank-1/5/10 (20 draws): {ss}")
    st = r["c2f_stages_ms_p50"]
    out.print(f"c2f stages (p50): coarse {st['coarse']:.1f} ms, fetch f_l {st['fetch']:.1f} ms, "
              f"re-rank {st['rerank']:.1f} ms; fine distance {r['fine_distance']}")
    if "open_set" in r:
        o = r["open_set"]
        target = f" (calibrated for FMR {o['target_fmr']:.2%})" if o.get("target_fmr") else ""
        out.print(f"open set at threshold {o['threshold']:.4f}{target}: true-match rate "
                  f"{o['tmr']:.2%} of {o['queries_genuine']} queries, false-match rate "
                  f"{o['fmr']:.2%} of {o['queries_impostor']} (each query's own person removed)")
    out.print(f"query feature extraction: {r['extract_ms_per_query']:.1f} ms per query (not in the "
              "retrieval times); AP counts relevant images the coarse stage cut off as misses")
