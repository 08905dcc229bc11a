"""Manifests: a CSV file listing images with what is known about each (camera, person,
capture time, source), for images whose names say nothing.

The first line names the columns: ``path`` (required), and any of ``camera``, ``person``,
``time`` and ``source``, in any order. A path is absolute or relative to the manifest's
folder; a time is ISO 8601 (UTC when it names no zone); an empty cell says nothing (the
command-line options, then the file name, decide). Every line is checked before anything
is done, and the first problem is an error that names the line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reidctl.data.names import Labels
from reidctl.errors import InputError
from reidctl.types import check_label, iso_ms

COLUMNS = ("path", "camera", "person", "time", "source")
# the columns of labels, and the stored field each one fills
_LABEL_FIELDS = {"camera": "camera", "person": "person_id", "source": "source"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS = dt.timedelta(milliseconds=1)
_MAX_BYTES = 256 << 20  # a manifest of ~2 million lines; beyond, a mistake (a binary file?)

# (stored field, value) -> why the store cannot hold the value, or None
ValueCheck = Callable[[str, str], str | None]


def parse_time_ms(text: str) -> int:
    """An ISO 8601 date or time (UTC when it names no zone) as epoch milliseconds.

    Raises:
        ValueError: not ISO 8601, or before 1970-01-01 (a stored time is never negative:
            -1 means unknown).
    """
    ms = iso_ms(text)
    if ms < 0:
        raise ValueError("before 1970-01-01")
    return ms


def format_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC (what :func:`parse_time_ms` reads back);
    ``""`` for an unknown time (negative)."""
    if ms < 0:
        return ""
    t = _EPOCH + ms * _MS
    return t.isoformat(timespec="seconds" if ms % 1000 == 0 else "milliseconds")


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest.

    Attributes:
        path: the manifest file, as given.
        labels: each listed image (absolute, symlinks resolved) -> what its line says,
            in the manifest's order.
    """

    path: Path
    labels: dict[Path, Labels]

    @property
    def files(self) -> list[Path]:
        """The listed images, in the manifest's order."""
        return list(self.labels)

    @property
    def folder(self) -> Path:
        """The folder relative paths are read from (absolute)."""
        return self.path.expanduser().absolute().parent


class _Lines:
    """Errors that name the manifest and a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, line: int, message: str) -> InputError:
        return InputError(f"manifest {self.path} line {line}: {message}")


def _text(path: Path) -> str:
    """The manifest's text (UTF-8, with or without a byte-order mark).

    Raises:
        InputError: missing, a folder, too large, unreadable, or not UTF-8 text.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"manifest does not exist: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read manifest {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"manifest {path} is a folder: give a CSV file")
    if st.st_size > _MAX_BYTES:
        raise InputError(f"manifest {path} is {st.st_size:,} bytes, the limit is "
                         f"{_MAX_BYTES:,}: split it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read manifest {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise _Lines(path).error(line, "not UTF-8 text (save the file as UTF-8 CSV)") from None


def _header(names: list[str], lines: _Lines, line: int) -> list[str]:
    """The column names, checked: known, each once, ``path`` among them."""
    cols = [n.strip().lower() for n in names]
    known = ", ".join(COLUMNS)
    for i, c in enumerate(cols):
        if not c:
            raise lines.error(line, f"column {i + 1} has no name (columns: {known})")
        if c not in COLUMNS:
            raise lines.error(line, f"unknown column {names[i].strip()!r} (columns: {known})")
        if c in cols[:i]:
            raise lines.error(line, f"column {c!r} appears twice")
    if "path" not in cols:
        raise lines.error(line, f"no 'path' column: the first line names the columns "
                                f"({known}), path among them")
    return cols


def _image(raw: str, folder: Path, lines: _Lines, line: int) -> Path:
    """The image a ``path`` cell names: absolute, symlinks resolved; it must be a file."""
    if not raw:
        raise lines.error(line, "path is empty")
    p = Path(raw).expanduser()
    p = p if p.is_absolute() else folder / p
    try:
        st = p.stat()
    except FileNotFoundError:
        raise lines.error(line, f"image does not exist: {p}") from None
    except OSError as e:
        raise lines.error(line, f"cannot use {p}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise lines.error(line, f"{p} is a folder: a manifest lists image files")
    return Path(os.path.realpath(p))


def _labels(cells: dict[str, str], check: ValueCheck | None, lines: _Lines,
            line: int) -> Labels:
    """The labels of one line's cells (empty cells say nothing)."""
    given: dict[str, str | int] = {}
    for col, stored in _LABEL_FIELDS.items():
        value = cells.get(col, "")
        if not value:
            continue
        try:
            check_label(value, col)
        except InputError as e:
            raise lines.error(line, str(e)) from None
        problem = check(stored, value) if check is not None else None
        if problem:
            raise lines.error(line, f"{col} {value!r:.80} cannot be stored: {problem}")
        given[stored] = value
    when = cells.get("time", "")
    if when:
        try:
            given["captured_at"] = parse_time_ms(when)
        except ValueError as e:
            why = ("is before 1970-01-01, which cannot be stored" if "1970" in str(e)
                   else "is not an ISO 8601 time like 2026-11-26T08:00 or 2026-11-26")
            raise lines.error(line, f"time {when!r:.80} {why}") from None
    return Labels(**given)  # type: ignore[arg-type]


def read_manifest(path: Path, check: ValueCheck | None = None) -> Manifest:
    """Reads and checks a manifest (see the module's docstring for the format).

    Args:
        path: the CSV file.
        check: says why the store could not hold a camera, person or source value
            (given the stored field's name, ``camera``, ``person_id`` or ``source``,
            and the value), or None when it can.

    Returns:
        The manifest, every line checked.

    Raises:
        InputError: the file cannot be read, or a line is wrong (unknown or missing
            column, a line with another number of cells than the header, an empty
            path, an image that does not exist or is a folder, an image listed twice,
            a time that is not ISO 8601, a value with a control character or one the
            store cannot hold); the message names the line.
    """
    lines = _Lines(path)
    folder = path.expanduser().absolute().parent
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    cols: list[str] | None = None
    labels: dict[Path, Labels] = {}
    first: dict[Path, int] = {}
    end = 0  # the last line read
    try:
        for row in reader:
            line, end = end + 1, reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells):
                continue  # blank line
            if cols is None:
                cols = _header(row, lines, line)
                continue
            if len(cells) != len(cols):
                raise lines.error(line, f"{len(cells)} cells, the first line names "
                                        f"{len(cols)} columns ({', '.join(cols)})")
            named = dict(zip(cols, cells, strict=True))
            image = _image(named["path"], folder, lines, line)
            if image in first:
                raise lines.error(line, f"{image} is listed twice (first on line "
                                        f"{first[image]})")
            first[image] = line
            labels[image] = _labels(named, check, lines, line)
    except csv.Error as e:
        raise lines.error(end + 1, f"not valid CSV: {e}") from None
    if cols is None:
        raise InputError(f"manifest {path} is empty: its first line names the columns "
                         f"({', '.join(COLUMNS)}), path among them")
    if not labels:
        raise InputError(f"manifest {path} lists no image: add one line per image "
                         "below the column names")
    return Manifest(path, labels)
