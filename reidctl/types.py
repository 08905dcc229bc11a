"""Plain data types shared by the layers."""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN = ""  # person id / camera / source when the file name says nothing


@dataclass(frozen=True)
class ImageMeta:
    """What is known about one image besides its pixels.

    Attributes:
        path: where the image was read from (as given, resolved to absolute).
        person_id: identity label, ``""`` when unknown; Market-1501 junk is ``"-1"``
            and distractors ``"0000"``.
        camera: camera id (``"A"``/``"B"`` for CUHK03, ``"1"``..``"6"`` for Market),
            ``""`` when unknown.
        source: dataset or origin name (``"cuhk03"``, ``"market1501"``, or ``""``).
        captured_at: capture time in epoch milliseconds, ``-1`` when unknown.
    """

    path: str
    person_id: str = UNKNOWN
    camera: str = UNKNOWN
    source: str = UNKNOWN
    captured_at: int = -1


@dataclass(frozen=True)
class Hit:
    """One ranked search result."""

    rank: int
    id: str
    distance: float
    person_id: str
    camera: str
    source: str
    path: str
