"""Pictures for users: ranked-list grids and Conv-Net confidence maps (the paper's Fig. 4);
the benchmark plot is in :mod:`reidctl.viz_bench`.

Pure rendering with Pillow and numpy; torch is imported only inside
:func:`confidence_map`. A leaf module: it imports nothing from reidctl but
``types``, ``errors`` and ``data``, and never touches the store.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from reidctl.data.images import MAX_PIXELS, SkipImage, load_given, read_file
from reidctl.errors import ModelError
from reidctl.types import UNKNOWN

GREEN = (0, 170, 0)  # same person as the query
RED = (220, 0, 0)  # another person
GREY = (160, 160, 160)  # person unknown on either side
QUERY_FRAME = (40, 40, 40)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
PLACEHOLDER = (200, 200, 200)
FONT_SIZE = 11
OVERLAY_ALPHA = 0.5

RGB = tuple[int, int, int]
Row = Mapping[str, Any]


def _font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default font (no font file needed); bitmap font without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # older Pillow or no FreeType
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` shortened with an ellipsis so that it fits in ``width`` px."""
    if _text_width(draw, text, font) <= width:
        return text
    while text and _text_width(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def save_png(image: Image.Image, out_path: Path | str) -> Path:
    """Writes ``image`` as PNG atomically (temporary file in the same folder, then rename).

    Parent folders are created. Returns the output path.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, out)  # readers never see a half-written picture
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --- ranked-list grid -------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes in a grid: one line per query, query cell, gap, hit cells.

    Each cell is a thumbnail inside a frame of ``border`` px, caption lines below it.
    Coordinates are ``(x0, y0, x1, y1)`` with exclusive ``x1, y1``.

    Attributes:
        thumb: thumbnail size ``(H, W)``.
        border: frame thickness around each thumbnail.
        pad: space between cells and around the picture.
        gap: extra space between the query cell and the first hit.
        line: height of one text line.
        caption_lines: text lines under each thumbnail.
    """

    thumb: tuple[int, int] = (128, 64)
    border: int = 4
    pad: int = 6
    gap: int = 24
    line: int = 13
    caption_lines: int = 4

    @property
    def cell_w(self) -> int:
        """Width of a framed thumbnail."""
        return self.thumb[1] + 2 * self.border

    @property
    def cell_h(self) -> int:
        """Height of a framed thumbnail plus its caption."""
        return self.thumb[0] + 2 * self.border + self.caption_lines * self.line + 2

    @property
    def row_h(self) -> int:
        """Height of one query line: header text line, cells, padding."""
        return self.line + self.cell_h + self.pad

    def size(self, n_rows: int, n_hits: int) -> tuple[int, int]:
        """Picture size ``(width, height)`` for ``n_rows`` queries of up to ``n_hits`` hits."""
        width = self.pad + self.cell_w + self.gap + n_hits * (self.cell_w + self.pad)
        return max(width, 2 * self.pad + self.cell_w + self.gap), self.pad + n_rows * self.row_h

    def frame_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The framed thumbnail of ``col`` in query line ``row``; ``col`` -1 is the query."""
        x0 = self.pad if col < 0 else self.pad + self.cell_w + self.gap + col * (
            self.cell_w + self.pad)
        y0 = self.pad + row * self.row_h + self.line
        return x0, y0, x0 + self.cell_w, y0 + self.thumb[0] + 2 * self.border


def _open_thumb(path: str | Path | None, thumb: tuple[int, int],
                font: Any) -> Image.Image:
    """The image letterboxed into ``thumb`` = (H, W) keeping its aspect ratio, or a grey
    placeholder saying "missing" when it cannot be opened."""
    h, w = thumb
    try:
        if not path:
            raise OSError("no path")
        data = read_file(path)  # a stored path may now be a pipe or a huge file
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise OSError("too large")
            rgb = img.convert("RGB")
        return ImageOps.pad(rgb, (w, h), Image.Resampling.BILINEAR, color=BACKGROUND)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, SkipImage):
        tile = Image.new("RGB", (w, h), PLACEHOLDER)
        draw = ImageDraw.Draw(tile)
        draw.text((w / 2, h / 2), "missing", fill=TEXT, font=font, anchor="mm")
        return tile


def _known(person: Any) -> str | None:
    """The person id as a string, or None when unknown."""
    if person is None or str(person) == UNKNOWN:
        return None
    return str(person)


def match_colour(query_person: Any, hit_person: Any) -> RGB:
    """Frame colour of a hit: green same person, red another person, grey unknown."""
    q, h = _known(query_person), _known(hit_person)
    if q is None or h is None:
        return GREY
    return GREEN if q == h else RED


def _draw_cell(canvas: Image.Image, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
               tile: Image.Image, colour: RGB, caption: Sequence[str],
               layout: GridLayout, font: Any) -> None:
    """A framed thumbnail at ``box`` and its caption lines below it."""
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=colour)
    canvas.paste(tile, (x0 + layout.border, y0 + layout.border))
    for i, text in enumerate(caption):
        draw.text((x0, y1 + 1 + i * layout.line), _fit_text(draw, text, font, layout.cell_w + 4),
                  fill=TEXT, font=font)


def _hit_caption(hit: Mapping[str, Any]) -> list[str]:
    distance = hit.get("distance")
    return [
        f"#{hit.get('rank', '?')}",
        f"d={distance:.3f}" if isinstance(distance, (int, float)) else "d=?",
        f"cam {hit.get('camera') or '?'}",
        f"id {_known(hit.get('person_id')) or '?'}",
    ]


def _row_header(row: Row) -> tuple[str, RGB]:
    """The text line above a query line: the query file, or the open-set "no match" answer."""
    if not row.get("no_match"):
        return Path(str(row.get("query", ""))).name, TEXT
    hits = row.get("hits") or []
    best = hits[0].get("distance") if hits else None
    best_text = f"{best:.3f}" if isinstance(best, (int, float)) else "n/a"
    threshold = row.get("threshold")
    limit = f" > threshold {threshold:.3f}" if isinstance(threshold, (int, float)) else ""
    return f"no match (best d={best_text}{limit})", RED


def _draw_row(canvas: Image.Image, draw: ImageDraw.ImageDraw, r: int, row: Row,
              layout: GridLayout, font: Any) -> None:
    """One query line: header text, the query cell, then its hits."""
    header, colour = _row_header(row)
    y_header = layout.pad + r * layout.row_h
    draw.text((layout.pad, y_header), _fit_text(draw, header, font, canvas.width - 2 * layout.pad),
              fill=colour, font=font)
    query_person = row.get("query_person")
    _draw_cell(canvas, draw, layout.frame_box(r, -1),
               _open_thumb(row.get("query"), layout.thumb, font), QUERY_FRAME,
               ["query", f"id {_known(query_person) or '?'}"], layout, font)
    for c, hit in enumerate(row.get("hits") or []):
        _draw_cell(canvas, draw, layout.frame_box(r, c),
                   _open_thumb(hit.get("path"), layout.thumb, font),
                   match_colour(query_person, hit.get("person_id")), _hit_caption(hit),
                   layout, font)
    x_sep = layout.pad + layout.cell_w + layout.gap // 2
    y0 = layout.frame_box(r, -1)[1]
    draw.line((x_sep, y0, x_sep, y0 + layout.cell_h), fill=GREY, width=1)


def render_grid(rows: Sequence[Row], out_path: Path | str, *,
                thumb: tuple[int, int] = (128, 64)) -> Path:
    """Draws ranked lists as a PNG: one line per query, the query image, a gap, its hits.

    Args:
        rows: one mapping per query: ``query`` (image path), ``query_person`` (person id
            or None/"" when unknown), ``hits`` (dicts with ``rank``, ``distance``,
            ``camera``, ``person_id``, ``path``, as the search command prints them), and
            optionally ``no_match`` (bool, the open-set answer) and ``threshold`` (float).
        out_path: PNG to write (parent folders are created, written atomically).
        thumb: thumbnail size ``(H, W)``; images are letterboxed, keeping their aspect.

    Returns:
        The output path. A hit's frame is green when its person id equals the query's,
        red when it differs, grey when either is unknown; images that cannot be opened
        are drawn as a grey "missing" placeholder.
    """
    layout = GridLayout(thumb=thumb)
    n_hits = max((len(row.get("hits") or []) for row in rows), default=0)
    canvas = Image.new("RGB", layout.size(max(len(rows), 1), n_hits), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for r, row in enumerate(rows):
        _draw_row(canvas, draw, r, row, layout, font)
    return save_png(canvas, out_path)


# --- confidence maps (Fig. 4) -----------------------------------------------------------------


def _model_pixels(image_path: Path | str, size: tuple[int, int]) -> np.ndarray:
    """``(3, H, W)`` uint8 RGB of an image, resized to the model input ``size``.

    Raises:
        InputError: missing file or not a usable image.
    """
    return load_given(image_path, size).pixels


def _normalise(values: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1]; a constant map becomes all zeros."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def confidence_map(
    extractor: Any, image_path: Path | str, *, classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, str, float]:
    """The classifier block's confidence map of the image's best class (paper Fig. 4).

    Args:
        extractor: a :class:`reidctl.model.FeatureExtractor` whose ConvNet keeps its
            classifier block (a checkpoint written by ``reidctl train``).
        image_path: the image.
        classes: the checkpoint's identity names (``ModelRecord.classes``); without
            them the class is named by its index.

    Returns:
        ``(image, cmap, class_name, score)``: the image as the model saw it, ``(H, W, 3)``
        uint8 at the model input size; the best class's confidence map upsampled
        bilinearly to ``(H, W)`` and min-max normalised to [0, 1], float32; the class
        name; its softmax probability.

    Raises:
        ModelError: the model has no classifier block, or ``classes`` does not fit it.
        InputError: missing or unusable image.
    """
    import torch
    import torch.nn.functional as F

    from reidctl.data.batches import to_batch  # imports torch

    model = extractor.model
    if getattr(model, "classifier", None) is None or not model.num_classes:
        raise ModelError(f"model {extractor.name} ({extractor.fingerprint}) has no classifier "
                         "block: explain needs a trained checkpoint (reidctl train)")
    if classes is not None and len(classes) != model.num_classes:
        raise ModelError(f"{len(classes)} class names for a model with {model.num_classes} "
                         "classes")
    pixels = _model_pixels(image_path, extractor.input_size)  # (3, H, W) uint8
    h, w = extractor.input_size
    with torch.inference_mode():
        out = extractor.forward(to_batch([pixels]))  # the model's input path, as for descriptors
        probs = out.logits.float().softmax(dim=1)[0]  # (C,)
        best = int(probs.argmax())
        maps = out.confidence_maps[:, best:best + 1].float()  # (1, 1, h, w)
        up = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)  # (1,1,H,W)
    cmap = _normalise(up[0, 0].cpu().numpy())
    name = str(classes[best]) if classes is not None else f"class {best}"
    return np.ascontiguousarray(pixels.transpose(1, 2, 0)), cmap, name, float(probs[best])


def jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour ramp (blue, cyan, yellow, red): ``(H, W)`` in [0, 1] ->
    ``(H, W, 3)`` uint8."""
    v = np.clip(values, 0.0, 1.0)[..., None]  # (H, W, 1)
    centres = np.array([3.0, 2.0, 1.0])  # r, g, b peaks at v = 3/4, 1/2, 1/4
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)  # (H, W, 3)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def render_confidence_map(image: np.ndarray, cmap: np.ndarray, out_path: Path | str,
                          title: str, *, scale: int = 2) -> Path:
    """Writes the image, its heat map and the overlay (alpha 0.5) side by side as a PNG.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        cmap: ``(H, W)`` in [0, 1].
        out_path: PNG to write (parent folders are created, written atomically).
        title: caption above the panels (class name and score).
        scale: integer enlargement of each panel.

    Returns:
        The output path.
    """
    if image.shape[:2] != cmap.shape:
        raise ValueError(f"image {image.shape[:2]} and map {cmap.shape} differ in size")
    heat = jet(cmap)
    overlay = (OVERLAY_ALPHA * heat + (1.0 - OVERLAY_ALPHA) * image + 0.5).astype(np.uint8)
    h, w = cmap.shape
    size = (w * scale, h * scale)
    panels = [Image.fromarray(a).resize(size, Image.Resampling.BILINEAR)
              for a in (image, heat, overlay)]
    pad, line = 8, 16
    font, small = _font(13), _font(FONT_SIZE)
    canvas = Image.new("RGB", (pad + 3 * (size[0] + pad), 2 * line + size[1] + line + pad),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad // 2), _fit_text(draw, title, font, canvas.width - 2 * pad),
              fill=TEXT, font=font)
    for i, (panel, label) in enumerate(zip(panels, ("image", "confidence map", "overlay"),
                                           strict=True)):
        x = pad + i * (size[0] + pad)
        canvas.paste(panel, (x, 2 * line))
        draw.text((x, 2 * line + size[1] + 2), label, fill=TEXT, font=small)
    return save_png(canvas, out_path)
