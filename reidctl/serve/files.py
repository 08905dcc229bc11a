"""Image files behind the web API: a stored image's file read by its id (checked to still
hold the bytes that were ingested), thumbnails, and uploads saved for an ingest.

No file path ever comes from a client: files are found through the store's record of an
id, and uploads are named by the sha256 of their bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from reidctl.api import Gallery, ImageNotFound
from reidctl.api_types import ImageRecord
from reidctl.config import is_lite_uri
from reidctl.data.images import SkipImage, decode_hwc, read_bytes
from reidctl.data.query_images import QueryImageError

THUMB_BOX = (128, 256)  # (W, H) a thumbnail fits in, aspect kept
THUMB_CACHE = 1024  # thumbnails kept in memory (a few KB each)
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


class StoredFileGone(ImageNotFound):
    """The stored path of an image no longer holds its bytes (moved, deleted, replaced)."""


def image_format(data: bytes) -> str | None:
    """The format Pillow reads in the header of ``data`` (``"JPEG"``, ...), None when it
    reads none."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # noqa: BLE001 - any decoder error: not an image we can name
        return None


def media_type(data: bytes) -> str:
    """The MIME type of image bytes (``application/octet-stream`` when unknown)."""
    fmt = image_format(data)
    return Image.MIME.get(fmt or "", "application/octet-stream")


def read_stored(gallery: Gallery, image_id: str) -> tuple[ImageRecord, bytes]:
    """The record and file bytes of a stored image.

    Raises:
        ImageNotFound: the id is not stored.
        StoredFileGone: its file cannot be read, or holds other bytes than were ingested.
        InputError: not an image id.
    """
    rec = gallery.get(image_id)
    try:
        digest, data = read_bytes(rec.path)
    except SkipImage as e:
        raise StoredFileGone(f"the file of image {rec.id} cannot be read ({e.reason})") from None
    if digest != rec.id:
        raise StoredFileGone(f"the file of image {rec.id} has changed since it was ingested")
    return rec, data


def thumbnail(data: bytes, box: tuple[int, int] = THUMB_BOX) -> bytes:
    """A JPEG of the image scaled down to fit ``box`` (W, H), aspect kept; decoded with
    every check a query gets (a decompression bomb is refused).

    Raises:
        QueryImageError: not a usable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception:  # noqa: BLE001 - decoding below says what is wrong
        w, h = box
    scale = min(box[0] / max(w, 1), box[1] / max(h, 1), 1.0)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))  # (H, W)
    try:
        hwc = decode_hwc(data, size)  # (H, W, 3)
    except SkipImage as e:
        raise QueryImageError(f"cannot make a thumbnail: {e}", e.reason) from None
    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class ThumbCache:
    """The most recently used thumbnails by image id (ids are content hashes, so an entry
    never goes stale)."""

    def __init__(self, size: int = THUMB_CACHE) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image_id: str) -> bytes | None:
        with self._lock:
            jpeg = self._items.get(image_id)
            if jpeg is not None:
                self._items.move_to_end(image_id)
            return jpeg

    def put(self, image_id: str, jpeg: bytes) -> None:
        with self._lock:
            self._items[image_id] = jpeg
            self._items.move_to_end(image_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, image_id: str) -> None:
        with self._lock:
            self._items.pop(image_id, None)


def default_uploads(uri: str) -> Path:
    """Where uploads go by default: ``<name>_uploads/`` beside a Milvus Lite database
    (``./reidctl.db`` -> ``./reidctl_uploads``), ``./reidctl_uploads`` for a server."""
    if is_lite_uri(uri):
        db = Path(uri).expanduser().absolute()
        return db.with_name(db.stem + "_uploads")
    return Path("reidctl_uploads").absolute()


def save_upload(data: bytes, folder: Path) -> tuple[str, Path]:
    """Writes uploaded image bytes into ``folder`` as ``<sha256><suffix>`` (the suffix of
    the format read from the bytes, never from the client), atomically; an identical file
    already there is kept.

    Returns:
        The image id (sha256 of the bytes) and the file's absolute path.
    """
    digest = hashlib.sha256(data).hexdigest()
    fmt = image_format(data) or "IMG"
    path = (folder / f"{digest}{_SUFFIX.get(fmt, '.' + fmt.lower())}").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size == len(data):
        return digest, path
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest, path
