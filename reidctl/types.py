"""Plain data types shared by the layers."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, fields

from reidctl.errors import InputError

UNKNOWN = ""  # person id / camera / source when the file name says nothing
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def utc_ms(t: dt.datetime) -> int:
    """A datetime as epoch milliseconds, exactly (naive: UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return (t - _EPOCH) // dt.timedelta(milliseconds=1)


def iso_ms(text: str) -> int:
    """An ISO 8601 date or time (UTC when it names no zone) as epoch milliseconds: the one
    parser of capture times and time filters (manifests, ``--after``/``--before``, the API).

    Raises:
        ValueError: not ISO 8601.
    """
    return utc_ms(dt.datetime.fromisoformat(text))


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

    def __post_init__(self) -> None:
        """Refuses any value that could widen the selection or break its expression.

        A blank value (``--path-prefix "$UNSET"``) must never read as "no criterion":
        for a delete that would mean everything. Control characters (a newline) have no
        place in a stored label and cannot be written into a Milvus string literal.

        Raises:
            InputError: a blank value, a control character, or an id that is not a
                sha256 hex digest; naming the option it came from.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SELECTOR_OPTIONS and value is not None:
                values = (value,) if f.name == "path_prefix" else value
                if not isinstance(values, tuple) or not all(isinstance(v, str) for v in values):
                    raise TypeError(f"Selection.{f.name} must be a tuple of str, got {value!r}")
                for v in values:
                    check_label(v, SELECTOR_OPTIONS[f.name])
        ids = tuple(pk.lower() for pk in self.ids)
        for pk in ids:
            if not _SHA256.fullmatch(pk):
                raise InputError(f"image id {pk!r} is not an image id (the 64 hex digits of "
                                 "a sha256, as search --json prints)")
        object.__setattr__(self, "ids", ids)

    @property
    def empty(self) -> bool:
        """True when no criterion is set (everything is selected)."""
        return self == Selection()


# Each selector field and the option users give it with (for messages).
SELECTOR_OPTIONS = {
    "ids": "image id", "path_prefix": "--path-prefix", "cameras": "--camera",
    "exclude_cameras": "--exclude-camera", "sources": "--source", "person_ids": "--person",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_label(value: str, option: str) -> str:
    """``value`` if it can be a stored label or selector value, else InputError.

    Args:
        value: a camera, source, person id or path (prefix) given by a user.
        option: where it came from, for the message (``"--source"``).

    Raises:
        InputError: ``value`` is empty or blank, or holds a control character.
    """
    if not value.strip():
        raise InputError(f"{option} is empty: give a value (an unset shell variable?)")
    bad = _CONTROL.search(value)
    if bad:
        raise InputError(f"{option} {value!r} contains a control character "
                         f"({bad.group()!r}): no stored value has one")
    return value
