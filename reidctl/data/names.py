"""Metadata from the file-name conventions of public ReID datasets."""

from __future__ import annotations

import re
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
