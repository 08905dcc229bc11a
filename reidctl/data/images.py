"""Finding image files, hashing them and decoding them into model input."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from reidctl.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MIN_SIDE = 16  # px; smaller crops carry no usable appearance
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
MAX_PIXELS = 40_000_000  # beyond this a "person crop" is a decompression bomb or a mistake


@dataclass(frozen=True)
class Decoded:
    """One decoded image ready for the model: (3, H, W) uint8 RGB."""

    pixels: np.ndarray


class SkipImage(Exception):
    """Raised for one image that cannot be used; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def discover(paths: Iterable[Path | str]) -> list[Path]:
    """Expands files and folders (recursively) into a sorted list of files.

    Folders contribute files with an image suffix; files named explicitly are
    kept whatever their suffix (decoding decides).

    Raises:
        InputError: a path does not exist, or nothing at all was found.
    """
    found: set[Path] = set()
    given = list(paths)
    if not given:
        raise InputError("no input path given")
    for raw in given:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError(f"path does not exist: {raw}")
        if p.is_dir():
            found.update(
                f.resolve()
                for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.add(p.resolve())
    if not found:
        shown = ", ".join(str(g) for g in given[:3])
        raise InputError(f"no image files found in {shown}")
    return sorted(found)


def read_bytes(path: Path) -> tuple[str, bytes]:
    """Reads a file and returns (sha256 hex of its bytes, bytes).

    Raises:
        SkipImage: the file cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SkipImage("unreadable", e.strerror or str(e)) from None
    if not data:
        raise SkipImage("empty file")
    return hashlib.sha256(data).hexdigest(), data


def content_id(path: Path) -> str:
    """The primary key of an image: sha256 of its file bytes."""
    return read_bytes(path)[0]


def decode(data: bytes, size: tuple[int, int]) -> Decoded:
    """Decodes image bytes into a (3, H, W) RGB array resized to ``size`` = (H, W).

    Any mode (grey, palette, RGBA, CMYK, 16-bit) is converted to RGB.

    Raises:
        SkipImage: not an image, truncated, too small, or too large.
    """
    hwc = decode_hwc(data, size)  # (H, W, 3)
    return Decoded(np.ascontiguousarray(hwc.transpose(2, 0, 1)))


def decode_hwc(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """As :func:`decode`, in the decoder's own (H, W, 3) uint8 layout (no transpose copy).

    Raises:
        SkipImage: as for :func:`decode`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise SkipImage("too large", f"{w}x{h} px")
            img.load()
    except SkipImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow refuses the header's size before we see it (a decompression bomb)
        pixels = _BOMB_PIXELS.search(str(e))
        detail = f"{int(pixels.group(1)):,} px" if pixels else "over Pillow's pixel limit"
        raise SkipImage("too large", f"{detail}, the limit is {MAX_PIXELS:,} px") from None
    except UnidentifiedImageError:
        raise SkipImage("not an image") from None
    except (OSError, ValueError, SyntaxError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SkipImage("corrupt or truncated", detail) from None
    if min(w, h) < MIN_SIDE:
        raise SkipImage("too small", f"{w}x{h} px, need at least {MIN_SIDE} px per side")
    if img.mode == "I;16" or img.mode == "I":
        arr = np.asarray(img, dtype=np.float32)
        arr = (arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
        img = Image.fromarray(arr)
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        img = img.convert("RGB")
    target_h, target_w = size
    img = img.resize((target_w, target_h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)  # (H, W, 3)


def load(path: Path | str, size: tuple[int, int]) -> tuple[str, Decoded]:
    """Reads, hashes and decodes one file: returns (content id, decoded)."""
    digest, data = read_bytes(Path(path))
    return digest, decode(data, size)
