"""Query images as the Python API takes them: file paths, encoded bytes, PIL images or
numpy arrays, each decoded into model input with the same checks and resizing as a file.

Files and bytes go through :func:`~reidctl.data.images.decode_hwc` (the bounded read,
the decompression-bomb guard, every image mode); pixels already in memory are checked
for the same limits and resized the same way.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from PIL import Image

from reidctl.data.images import MAX_PIXELS, MIN_SIDE, SkipImage, decode_hwc, load_given
from reidctl.errors import InputError

QueryImage: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | np.ndarray"
"""A query: a file path, the bytes of an image file, a PIL image, or an (H, W, 3) uint8
RGB array."""


def describe(query: Any, index: int) -> str:  # noqa: ANN401 - any QueryImage
    """How a query is named in results: its path, else ``<image N>``."""
    return os.fspath(query) if isinstance(query, (str, os.PathLike)) else f"<image {index}>"


def decode_bytes(data: bytes, size: tuple[int, int], what: str = "image") -> np.ndarray:
    """The bytes of an image file as (3, H, W) uint8 model input, resized to ``size``.

    Raises:
        InputError: not an image, corrupt, too small or too large (a decompression bomb
            is refused before it is decoded); the message starts with ``cannot use {what}:``
            and carries the reason.
    """
    try:
        hwc = decode_hwc(data, size)  # (H, W, 3)
    except SkipImage as e:
        raise QueryImageError(f"cannot use {what}: {e}", e.reason) from None
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


class QueryImageError(InputError):
    """A query image that cannot be used; ``reason`` is the short label of
    :class:`~reidctl.data.images.SkipImage` (``"not an image"``, ``"too large"``, ...)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_size(w: int, h: int, what: str) -> None:
    if w * h > MAX_PIXELS:
        raise QueryImageError(f"cannot use {what}: too large: {w}x{h} px, the limit is "
                              f"{MAX_PIXELS:,} px", "too large")
    if min(w, h) < MIN_SIDE:
        raise QueryImageError(f"cannot use {what}: too small: {w}x{h} px, need at least "
                              f"{MIN_SIDE} px per side", "too small")


def _resize_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """An RGB image resized as :func:`decode_hwc` resizes, as (3, H, W) uint8."""
    h, w = size
    hwc = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def decode_array(pixels: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array as (3, H, W) model input, resized to ``size``.

    Raises:
        InputError: another shape or dtype, or too small or too large.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise QueryImageError(f"cannot use {what}: an array query must be (H, W, 3) uint8 RGB, "
                              f"got {tuple(pixels.shape)} {pixels.dtype}", "not an image")
    _check_size(pixels.shape[1], pixels.shape[0], what)
    return _resize_rgb(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), size)


def decode_pil(img: Image.Image, size: tuple[int, int], what: str) -> np.ndarray:
    """A PIL image as (3, H, W) model input, resized to ``size``; any mode is converted as
    a file's would be (transparency onto white, 16-bit scaled).

    Raises:
        InputError: too small or too large.
    """
    _check_size(img.width, img.height, what)
    if img.mode == "RGB":
        return _resize_rgb(img, size)
    buf = io.BytesIO()  # other modes: the file path's own conversion, losslessly
    try:
        img.save(buf, format="PNG" if img.mode != "CMYK" else "TIFF")
    except (OSError, ValueError, KeyError) as e:
        raise QueryImageError(f"cannot use {what}: PIL mode {img.mode!r} cannot be converted "
                              f"to RGB ({type(e).__name__})", "not an image") from None
    return decode_bytes(buf.getvalue(), size, what)


def decode_query(query: Any, size: tuple[int, int], index: int) -> np.ndarray:  # noqa: ANN401
    """One query of any accepted kind as (3, H, W) uint8 model input.

    Args:
        query: a :data:`QueryImage`.
        size: ``(H, W)`` of the model input.
        index: its position among the queries (for messages about in-memory images).

    Raises:
        InputError: a missing or unusable image, or a value of another type.
    """
    what = describe(query, index)
    if isinstance(query, (str, os.PathLike)):
        return load_given(Path(query), size, "query image").pixels
    if isinstance(query, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(query), size, f"query {what}")
    if isinstance(query, Image.Image):
        return decode_pil(query, size, f"query {what}")
    if isinstance(query, np.ndarray):
        return decode_array(query, size, f"query {what}")
    raise InputError(f"query {what}: expected a path, image bytes, a PIL image or an "
                     f"(H, W, 3) uint8 array, got {type(query).__name__}")


def as_list(queries: Any) -> list[Any]:  # noqa: ANN401
    """One query or a sequence of them, as a list (an array or bytes is one query)."""
    if isinstance(queries, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image,
                            np.ndarray)):
        return [queries]
    if isinstance(queries, Sequence) or hasattr(queries, "__iter__"):
        return list(queries)
    return [queries]
