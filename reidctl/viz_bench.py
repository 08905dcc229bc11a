"""The benchmark plot: latency and mAP against gallery size, one series per method
(drawn by ``reidctl bench --plot``, beside the other pictures of :mod:`reidctl.viz`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from reidctl.viz import save_png

SERIES_COLOURS = {"coarse": (90, 90, 90), "c2f": (31, 119, 180), "linear": (214, 39, 40),
                  "c2f in numpy": (44, 160, 44)}


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _si(v: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def render_bench_plot(sizes: Sequence[int], latency: Mapping[str, Sequence[float]],
                      accuracy: Mapping[str, Sequence[float]], out_path: Path | str) -> Path:
    """Two panels against gallery size (log x): latency p50 in ms (log y) and mAP in %.

    Args:
        sizes: (S,) gallery sizes; latency, accuracy: per method (S,) values, one series
            each, coloured by :data:`SERIES_COLOURS`.
    """
    pw, ph, ml, mt, mr, mb = 480, 360, 64, 48, 16, 48  # panel size and margins
    img = Image.new("RGB", (2 * pw, ph), "white")
    draw, font, black = ImageDraw.Draw(img), ImageFont.load_default(), (0, 0, 0)
    x_lo, x_hi = _log_range(sizes)
    ms_lo, ms_hi = _log_range([max(v, 1e-3) for vs in latency.values() for v in vs])
    all_map = [v for vs in accuracy.values() for v in vs]
    map_lo = max(0.0, 10 * math.floor(min(all_map) / 10 - 0.5))
    map_hi = min(100.0, 10 * math.ceil(max(all_map) / 10 + 0.5))

    def panel(ox: int, title: str, series: Mapping[str, Sequence[float]], y_lo: float,
              y_hi: float, log_y: bool, y_ticks: list[tuple[float, str]]) -> None:
        def at(x: float, y: float) -> tuple[float, float]:
            fx = (math.log10(x) - x_lo) / (x_hi - x_lo)
            fy = ((math.log10(max(y, 1e-3)) if log_y else y) - y_lo) / (y_hi - y_lo)
            return ox + ml + fx * (pw - ml - mr), mt + (1 - fy) * (ph - mt - mb)

        x0, y0, x1, y1 = ox + ml, mt, ox + pw - mr, ph - mb
        draw.rectangle((x0, y0, x1, y1), outline=black)
        draw.text((x0, 10), title, fill=black, font=font)
        draw.text(((x0 + x1) // 2 - 50, ph - 20), "gallery size (log)", fill=black, font=font)
        for e in range(math.ceil(x_lo), math.floor(x_hi) + 1):
            px, _ = at(10.0**e, y_lo if not log_y else 10.0**y_lo)
            draw.line((px, y1, px, y1 + 4), fill=black)
            draw.text((px - 10, y1 + 6), _si(10**e), fill=black, font=font)
        for value, label in y_ticks:
            _, py = at(10.0**x_lo, value)
            draw.line((x0 - 4, py, x0, py), fill=black)
            draw.text((x0 - 8 - 6 * len(label), py - 5), label, fill=black, font=font)
        lx = x0
        for name, ys in series.items():
            colour = SERIES_COLOURS[name]
            pts = [at(x, y) for x, y in zip(sizes, ys, strict=True)]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for px, py in pts:
                draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
            draw.line((lx, 31, lx + 14, 31), fill=colour, width=2)  # legend, above the frame
            draw.text((lx + 18, 25), name, fill=colour, font=font)
            lx += 30 + 6 * len(name)

    ms_ticks = [(10.0**e, _si(10**e)) for e in range(math.ceil(ms_lo), math.floor(ms_hi) + 1)]
    panel(0, "latency per query, p50 (ms, log)", latency, ms_lo, ms_hi, True, ms_ticks)
    step = 10 if map_hi - map_lo > 20 else 5
    map_ticks = [(float(v), f"{v:g}") for v in range(int(map_lo), int(map_hi) + 1, step)]
    panel(pw, "mAP (%)", accuracy, map_lo, map_hi, False, map_ticks)
    return save_png(img, out_path)
