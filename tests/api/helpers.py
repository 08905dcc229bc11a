"""A small real gallery for the API and web service tests: CUHK03 val camera-B images of a
few persons in Milvus Lite, with the default model, and the camera-A shots as queries."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

PERSONS = 6  # persons 0000..0005: their camera-B shots (05-09) are the gallery


@dataclass(frozen=True)
class Split:
    """Gallery files (copies, camera B) and queries (each person's first camera-A shot)."""

    gallery: list[Path]
    queries: list[Path]


def person(path: Path) -> str:
    """The person id of a CUHK03 file name (``0003_06.jpg`` -> ``0003``)."""
    return path.name[:4]


def make_split(val_images: list[Path], folder: Path, persons: int = PERSONS) -> Split:
    """Copies the camera-B shots of the first ``persons`` persons into ``folder`` (about
    5 each) and lists their shot-00 images (camera A) as queries."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = [p for p in val_images if int(p.name[:4]) < persons]
    gallery = []
    for p in keep:
        if int(p.stem[-2:]) >= 5:
            shutil.copy(p, folder / p.name)
            gallery.append(folder / p.name)
    queries = [p for p in keep if int(p.stem[-2:]) == 0]
    return Split(gallery, queries)


def bomb_png() -> bytes:
    """A 400 MP one-colour PNG of a few KB: a decompression bomb."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    return buf.getvalue()
