"""The benchmark plot: latency and mAP against gallery size, one series per method
(drawn by ``reidctl bench --plot``, beside the other pictures of :mod:`reidctl.viz`).

The title names the Milvus the numbers come from. Series that lie on each other (C2F
and the linear scan score the same when M covers the gallery) stay distinguishable:
each method has its own marker, the linear scan a dashed line and hollow markers drawn
around the others', the legend gives each series' first and last value, and a note
names the series that overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from reidctl.viz import save_png

SERIES_COLOURS = {"coarse": (90, 90, 90), "c2f": (31, 119, 180), "linear": (214, 39, 40),
                  "c2f in numpy": (44, 160, 44)}
MARKERS = {"coarse": "circle", "c2f": "square", "linear": "diamond",
           "c2f in numpy": "triangle"}
DASHED = frozenset({"linear"})  # dashed line, hollow markers: what it covers shows through
HOLLOW = frozenset({"linear"})
SIZE = (960, 360)  # the whole picture: two panels side by side
TITLE_BOX = (0, 0, SIZE[0], 18)  # the figure's title, above both panels
_TITLE_AT = (8, 3)
OVERLAP_PX = 3.0  # series closer than this at every gallery size are said to overlap
BLACK, WHITE = (0, 0, 0), (255, 255, 255)
RGB = tuple[int, int, int]


def _font(size: int = 11) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` (its bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # older Pillow or no FreeType
        return ImageFont.load_default()


def bench_title(backend: str, detail: str = "") -> str:
    """The plot's title: which Milvus (``backend``, e.g. ``"Milvus Lite, bench.db"``) and
    ``detail`` (e.g. M and the model)."""
    return f"reidctl bench on {backend}" + (f" ({detail})" if detail else "")


def draw_title(draw: ImageDraw.ImageDraw, title: str) -> None:
    """Writes ``title`` into :data:`TITLE_BOX` (cut to fit, with an ellipsis)."""
    font, width = _font(12), TITLE_BOX[2] - 2 * _TITLE_AT[0]
    if draw.textlength(title, font=font) > width:
        while title and draw.textlength(title + "...", font=font) > width:
            title = title[:-1]
        title += "..."
    draw.text(_TITLE_AT, title, fill=BLACK, font=font)


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _si(v: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _value(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


def _marker(draw: ImageDraw.ImageDraw, name: str, x: float, y: float, colour: RGB) -> None:
    """The series' marker at (x, y): hollow and larger for :data:`HOLLOW` series."""
    hollow = name in HOLLOW
    r = 5 if hollow else 3
    fill, outline = (None, colour) if hollow else (colour, colour)
    shape = MARKERS.get(name, "circle")
    if shape == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=fill, outline=outline)
    elif shape == "diamond":
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)],
                     fill=fill, outline=outline, width=2 if hollow else 1)
    elif shape == "triangle":
        draw.polygon([(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)], fill=fill,
                     outline=outline)
    else:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline)


def _line(draw: ImageDraw.ImageDraw, pts: Sequence[tuple[float, float]], colour: RGB,
          dashed: bool, width: int = 2) -> None:
    """A polyline, solid or dashed (6 px on, 4 px off)."""
    if not dashed:
        draw.line(list(pts), fill=colour, width=width)
        return
    for (xa, ya), (xb, yb) in zip(pts, pts[1:], strict=False):
        length = math.hypot(xb - xa, yb - ya)
        t = 0.0
        while t < length:
            u, v = t / length, min(t + 6, length) / length
            draw.line((xa + u * (xb - xa), ya + u * (yb - ya), xa + v * (xb - xa),
                       ya + v * (yb - ya)), fill=colour, width=width)
            t += 10


def overlapping(points: Mapping[str, Sequence[tuple[float, float]]]) -> list[tuple[str, str]]:
    """Pairs of series whose points lie within :data:`OVERLAP_PX` of each other at every
    gallery size (as drawn: one hides the other)."""
    names = list(points)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if all(math.dist(p, q) <= OVERLAP_PX for p, q in zip(points[a], points[b],
                                                                 strict=True))]


def _covered(box: tuple[float, float, float, float],
             points: Mapping[str, Sequence[tuple[float, float]]]) -> int:
    """How much of the lines and markers of ``points`` the box (x0, y0, x1, y1) covers
    (samples every 2 px along each polyline, with a 4 px margin around the box)."""
    bx0, by0, bx1, by1 = box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4
    count = 0
    for pts in points.values():
        for (xa, ya), (xb, yb) in zip(pts, [*pts[1:], pts[-1]], strict=True):
            n = max(2, int(math.hypot(xb - xa, yb - ya) / 2))
            count += sum(bx0 <= xa + t / n * (xb - xa) <= bx1
                         and by0 <= ya + t / n * (yb - ya) <= by1 for t in range(n + 1))
    return count


def _outline(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """A box as a closed polyline, so that :func:`_covered` keeps labels off it."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0), (x1, y1)]


def _point_labels(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
                  points: Mapping[str, Sequence[tuple[float, float]]],
                  series: Mapping[str, Sequence[float]],
                  frame: tuple[float, float, float, float],
                  taken: Sequence[tuple[float, float, float, float]] = ()) -> None:
    """At each gallery size, the series' values as a column of numbers in their colours
    (series order, top to bottom), beside the points where it covers no line, marker or
    other label, nor the ``taken`` boxes: lines drawn on each other still show every
    value."""
    x0, y0, x1, y1 = frame
    names, step = list(series), 13
    avoid = dict(points) | {f"box {i}": _outline(*b) for i, b in enumerate(taken)}
    for i in range(len(next(iter(points.values()), []))):
        texts = [_value(series[n][i]) for n in names]
        w, h = max(draw.textlength(t, font=font) for t in texts), step * len(names)
        xs, ys = [points[n][i][0] for n in names], [points[n][i][1] for n in names]
        right, left = max(xs) + 8, min(xs) - 8 - w
        above, below, middle = min(ys) - 8 - h, max(ys) + 8, (min(ys) + max(ys) - h) / 2
        spots = [(right, above), (right, below), (left, below), (left, above),
                 (right, middle), (left, middle),
                 *((x, y + d) for d in (-step, step, -2 * step, 2 * step)
                   for x, y in ((right, above), (left, above), (right, below), (left, below)))]
        inside = [(x, y) for x, y in spots
                  if x0 + 2 <= x and x + w <= x1 - 2 and y0 + 2 <= y and y + h <= y1 - 2]
        x, y = min(inside or spots, key=lambda p: _covered((p[0], p[1], p[0] + w, p[1] + h),
                                                            avoid))  # the first of the least
        avoid[f"label {i}"] = _outline(x, y, x + w, y + h)
        for j, (name, text) in enumerate(zip(names, texts, strict=True)):
            draw.text((x, y + step * j), text, fill=SERIES_COLOURS[name], font=font)


def _overlap_notes(points: Mapping[str, Sequence[tuple[float, float]]]) -> list[str]:
    """``"c2f and linear overlap"``, one line per group of series drawn on each other."""
    groups: list[list[str]] = []
    for a, b in overlapping(points):
        group = next((g for g in groups if a in g or b in g), None)
        if group is None:
            groups.append([a, b])
        else:
            group.extend(n for n in (a, b) if n not in group)
    return [(", ".join(g[:-1]) + f" and {g[-1]} overlap") for g in groups]


def render_bench_plot(sizes: Sequence[int], latency: Mapping[str, Sequence[float]],
                      accuracy: Mapping[str, Sequence[float]], out_path: Path | str, *,
                      backend: str, detail: str = "") -> Path:
    """Two panels against gallery size (log x): latency p50 in ms (log y) and mAP in %,
    under a title naming the backend (:func:`bench_title`).

    Args:
        sizes: (S,) gallery sizes; latency, accuracy: per method (S,) values, one series
            each, coloured by :data:`SERIES_COLOURS`, marked by :data:`MARKERS`.
        out_path: the PNG to write (:data:`SIZE` pixels).
        backend: which Milvus, e.g. ``"Milvus Lite, bench.db"`` or
            ``"Milvus server, http://127.0.0.1:19530"``.
        detail: more of the title, e.g. ``"M = 100, model 91fdfdcdf5821fa2"``.

    Returns:
        ``out_path``.
    """
    pw, ph = SIZE[0] // 2, SIZE[1]
    ml, mt, mr, mb = 64, 68, 16, 48  # margins of each panel's frame
    img = Image.new("RGB", SIZE, "white")
    draw, font = ImageDraw.Draw(img), _font()
    draw_title(draw, bench_title(backend, detail))
    x_lo, x_hi = _log_range(sizes)
    ms_lo, ms_hi = _log_range([max(v, 1e-3) for vs in latency.values() for v in vs])
    all_map = [v for vs in accuracy.values() for v in vs]
    map_lo = max(0.0, 10 * math.floor(min(all_map) / 10 - 0.5))
    map_hi = min(100.0, 10 * math.ceil(max(all_map) / 10 + 0.5))

    def panel(ox: int, title: str, series: Mapping[str, Sequence[float]], y_lo: float,
              y_hi: float, log_y: bool, y_ticks: list[tuple[float, str]], unit: str,
              label_points: bool) -> None:
        def at(x: float, y: float) -> tuple[float, float]:
            fx = (math.log10(x) - x_lo) / (x_hi - x_lo)
            fy = ((math.log10(max(y, 1e-3)) if log_y else y) - y_lo) / (y_hi - y_lo)
            return ox + ml + fx * (pw - ml - mr), mt + (1 - fy) * (ph - mt - mb)

        x0, y0, x1, y1 = ox + ml, mt, ox + pw - mr, ph - mb
        draw.rectangle((x0, y0, x1, y1), outline=BLACK)
        draw.text((x0, 22), title, fill=BLACK, font=font)
        draw.text(((x0 + x1) // 2 - 50, ph - 20), "gallery size (log)", fill=BLACK, font=font)
        for e in range(math.ceil(x_lo), math.floor(x_hi) + 1):
            px, _ = at(10.0**e, y_lo if not log_y else 10.0**y_lo)
            draw.line((px, y1, px, y1 + 4), fill=BLACK)
            draw.text((px - 10, y1 + 6), _si(10**e), fill=BLACK, font=font)
        for value, label in y_ticks:
            _, py = at(10.0**x_lo, value)
            draw.line((x0 - 4, py, x0, py), fill=BLACK)
            draw.text((x0 - 8 - 6 * len(label), py - 5), label, fill=BLACK, font=font)
        points = {name: [at(x, y) for x, y in zip(sizes, ys, strict=True)]
                  for name, ys in series.items()}
        for name, pts in points.items():  # in order: the dashed linear scan drawn last
            colour = SERIES_COLOURS[name]
            if len(pts) > 1:
                _line(draw, pts, colour, name in DASHED)
            for px, py in pts:
                _marker(draw, name, px, py, colour)
        notes = []
        for i, note in enumerate(_overlap_notes(points)):  # top right, inside the frame
            w = draw.textlength(note, font=font)
            notes.append((x1 - w - 8, y0 + 4 + 14 * i, x1 - 3, y0 + 17 + 14 * i))
            draw.rectangle(notes[-1], fill=WHITE)
            draw.text((notes[-1][0] + 3, notes[-1][1]), note, fill=BLACK, font=font)
        if label_points:
            _point_labels(draw, font, points, series, (x0, y0, x1, y1), notes)
        lx, ly = x0, 42  # legend above the frame, wrapped to its width: "name first to last"
        for name, ys in series.items():
            colour = SERIES_COLOURS[name]
            values = " to ".join(_value(v) for v in (ys[:1] + ys[-1:] if len(ys) > 1 else ys))
            text = name if label_points else f"{name} {values}{unit}"
            width = 24 + draw.textlength(text, font=font)
            if lx + width > x1 and lx > x0:
                lx, ly = x0, ly + 13
            _line(draw, [(lx, ly + 5), (lx + 16, ly + 5)], colour, name in DASHED)
            _marker(draw, name, lx + 8, ly + 5, colour)
            draw.text((lx + 20, ly), text, fill=colour, font=font)
            lx += width + 10

    ms_ticks = [(10.0**e, _si(10**e)) for e in range(math.ceil(ms_lo), math.floor(ms_hi) + 1)]
    panel(0, "latency per query, p50 (ms, log)", latency, ms_lo, ms_hi, True, ms_ticks, " ms",
          False)
    step = 10 if map_hi - map_lo > 20 else 5
    map_ticks = [(float(v), f"{v:g}") for v in range(int(map_lo), int(map_hi) + 1, step)]
    panel(pw, "mAP (%)", accuracy, map_lo, map_hi, False, map_ticks, "", True)
    return save_png(img, out_path)
