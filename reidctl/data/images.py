"""Finding image files, hashing them and decoding them into model input."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from reidctl.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MIN_SIDE = 16  # px; smaller crops carry no usable appearance
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
MAX_PIXELS = 40_000_000  # beyond this a "person crop" is a decompression bomb or a mistake
# Bytes read from one file at most. A 40 MP photo is 5-20 MB as a JPEG and 120 MB only as
# an uncompressed 24-bit BMP or TIFF; camera crops are kilobytes. Anything bigger is a
# mistake (a video, a disk image, a sparse file) and is refused before it is read.
MAX_FILE_BYTES = 128 << 20
MISSING = "missing"  # SkipImage reason of a file that does not exist
PATH_TOO_LONG = "path too long"  # SkipImage reason: the OS or the store cannot take the path
# What a file that is not a regular file is, for messages (stat.S_IFMT -> words).
_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFIFO: "a named pipe (FIFO)",
          stat.S_IFSOCK: "a socket"}
# stat() errors that mean "there is no such file"
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


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

    Folders contribute their entries with an image suffix that are not folders
    (symlinked folders are not followed); files named explicitly are kept whatever
    their suffix. Nothing is opened here: reading decides, and skips special files
    (pipes, devices), oversized files and paths the system cannot open.

    Raises:
        InputError: a path does not exist, or nothing at all was found.
    """
    found: set[Path] = set()
    given = list(paths)
    if not given:
        raise InputError("no input path given")
    for raw in given:
        p = Path(raw).expanduser()
        try:
            is_dir = stat.S_ISDIR(p.stat().st_mode)
        except OSError as e:
            if e.errno in _ABSENT:
                raise InputError(f"path does not exist: {raw}") from None
            is_dir = False  # e.g. a name too long to stat: kept, so reading skips and counts it
        if is_dir:
            found.update(_resolved(f) for f in _walk(p))
        else:
            found.add(_resolved(p))
    if not found:
        shown = ", ".join(str(g) for g in given[:3])
        raise InputError(f"no image files found in {shown}")
    return sorted(found)


def _walk(folder: Path) -> Iterator[Path]:
    """Entries with an image suffix below ``folder`` that are not folders; folders that
    cannot be listed are passed over, as are symlinks to folders (no cycles)."""
    for parent, _, names in os.walk(folder):
        for name in names:
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield Path(parent, name)


def _resolved(p: Path) -> Path:
    """``p`` made absolute with symlinks resolved, or only absolute where that fails (a
    symlink loop): the file is still listed, and reading it says what is wrong."""
    try:
        return p.resolve()
    except (OSError, RuntimeError):
        return p.absolute()


def read_bytes(path: Path | str) -> tuple[str, bytes]:
    """:func:`read_file`, with the sha256 hex of the bytes (the image's content id) first.

    Raises:
        SkipImage: as :func:`read_file`.
    """
    data = read_file(path)
    return hashlib.sha256(data).hexdigest(), data


def read_file(path: Path | str) -> bytes:
    """Reads a regular file of at most :data:`MAX_FILE_BYTES`.

    The file is checked with ``stat`` before it is opened (opening a FIFO blocks, and
    opening a device can have effects), opened without blocking and checked again on
    the open descriptor (it may have been replaced in between); the read itself never
    returns more than the cap + 1 bytes (the file may grow after the check).

    Raises:
        SkipImage: the file is missing (reason :data:`MISSING`), not a regular file, too
            large, empty, its path is too long for the system (:data:`PATH_TOO_LONG`),
            or it cannot be read.
    """
    try:
        _check_regular(os.stat(path))
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            size = _check_regular(os.fstat(fh.fileno()))
            data = fh.read(size + 1)  # the usual case: EOF at the size stat gave
            if len(data) > size:  # it grew since: read on, up to one byte over the cap
                data += fh.read(MAX_FILE_BYTES + 1 - len(data))
    except OSError as e:
        raise _os_skip(e) from None
    if len(data) > MAX_FILE_BYTES:
        raise SkipImage("too large", f"more than {MAX_FILE_BYTES:,} bytes (it grew while read)")
    if not data:
        raise SkipImage("empty file")
    return data


def _check_regular(st: os.stat_result) -> int:
    """``st.st_size`` when ``st`` is a regular file within the size cap, else SkipImage."""
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
        raise SkipImage("not a regular file", kind)
    if st.st_size > MAX_FILE_BYTES:
        raise SkipImage("too large", f"{st.st_size:,} bytes, the limit is {MAX_FILE_BYTES:,} bytes")
    return st.st_size


def _os_skip(e: OSError) -> SkipImage:
    """The SkipImage for an OSError of stat, open or read."""
    detail = e.strerror or str(e)
    if e.errno in _ABSENT:
        return SkipImage(MISSING, detail)
    if e.errno == errno.ENAMETOOLONG:
        return SkipImage(PATH_TOO_LONG, detail)
    return SkipImage("unreadable", detail)


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


def load(path: Path | str, size: tuple[int, int]) -> Decoded:
    """Reads and decodes one file (no hashing: content ids come from :func:`content_id`)."""
    return decode(read_file(Path(path)), size)


def load_given(path: Path | str, size: tuple[int, int], what: str = "image") -> Decoded:
    """Reads and decodes one image a user named (a query, an image to explain).

    Raises:
        InputError: ``{what} does not exist: path``, or ``cannot use {what} path: why``.
    """
    try:
        return load(path, size)
    except SkipImage as e:
        if e.reason == MISSING:
            raise InputError(f"{what} does not exist: {path}") from None
        raise InputError(f"cannot use {what} {path}: {e}") from None
