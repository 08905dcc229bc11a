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


@dataclass(frozen=True)
class Selection:
    """Which gallery images a search may return or a delete removes (all criteria AND-ed).

    Attributes:
        ids: primary keys (sha256 of the file bytes).
        path_prefix: image paths starting with this string.
        cameras: camera ids allowed (any of them).
        exclude_cameras: camera ids excluded.
        sources: sources allowed (any of them).
        person_ids: person ids allowed (any of them).
        after_ms: captured at or after this time (epoch ms).
        before_ms: captured before this time (epoch ms).
    """

    ids: tuple[str, ...] = ()
    path_prefix: str | None = None
    cameras: tuple[str, ...] = ()
    exclude_cameras: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    person_ids: tuple[str, ...] = ()
    after_ms: int | None = None
    before_ms: int | None = None

    @property
    def empty(self) -> bool:
        """True when no criterion is set (everything is selected)."""
        return self == Selection()
