"""Image metadata: from the file-name conventions of public ReID datasets, and the labels
a user gives (``ingest --camera``, a manifest's row) over them."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from reidctl.types import UNKNOWN, ImageMeta

# CUHK03 (this project's export): PPPP_KK.jpg, KK 00-04 camera A, 05-09 camera B.
_CUHK03 = re.compile(r"^(\d{4})_(\d{2})\.(?:jpe?g|png|bmp)$", re.IGNORECASE)
# Market-1501: PPPP_cXsY_FFFFFF_NN.jpg; PPPP = -1 junk, 0000 distractor.
_MARKET = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.(?:jpe?g|png|bmp)$", re.IGNORECASE)


def parse_name(path: Path | str, source: str | None = None) -> ImageMeta:
    """Reads person id, camera and dataset from a file name.

    Args:
        path: the image path (only its name is read).
        source: overrides the dataset name derived from the pattern.

    Returns:
        The metadata; fields the name does not give are ``UNKNOWN``.
    """
    p = Path(path)
    name = p.name
    m = _CUHK03.match(name)
    if m:
        shot = int(m.group(2))
        camera = "A" if shot <= 4 else "B"
        return ImageMeta(str(p), m.group(1), camera, source or "cuhk03")
    m = _MARKET.match(name)
    if m:
        return ImageMeta(str(p), m.group(1), m.group(2), source or "market1501")
    return ImageMeta(str(p), UNKNOWN, UNKNOWN, source or UNKNOWN)


@dataclass(frozen=True)
class Labels:
    """What a user says about an image; None leaves the value to the next source (a
    command-line option, then the file name).

    Attributes:
        person_id: identity label.
        camera: camera id.
        source: origin name.
        captured_at: capture time, epoch milliseconds (>= 0).
    """

    person_id: str | None = None
    camera: str | None = None
    source: str | None = None
    captured_at: int | None = None

    def over(self, base: Labels) -> Labels:
        """These labels, with ``base``'s where these say nothing."""
        return Labels(**{f.name: getattr(base, f.name) if getattr(self, f.name) is None
                         else getattr(self, f.name) for f in fields(self)})

    def apply(self, meta: ImageMeta) -> ImageMeta:
        """``meta`` with every value these labels give replaced."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(meta, **{k: v for k, v in given.items() if v is not None})

