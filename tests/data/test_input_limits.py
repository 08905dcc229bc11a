"""Bounded, validated input reading: only regular files within the size cap are read,
paths the system cannot open are skipped, and store limits are counted in UTF-8 bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reidctl.data import images
from reidctl.data.images import (
    MAX_FILE_BYTES,
    MISSING,
    PATH_TOO_LONG,
    SkipImage,
    discover,
    read_bytes,
)
from reidctl.errors import StoreError
from reidctl.store import _rows as rows
from reidctl.store.schema import load_spec
from reidctl.types import ImageMeta
from tests.data.helpers import SYSTEM_PATH_MAX, make_file

TIMEOUT = 60  # s; reading a pipe or a device would otherwise hang or eat memory


def _in_subprocess(code: str) -> str:
    """Runs ``code`` in a fresh interpreter bounded by :data:`TIMEOUT`; returns its stdout."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=TIMEOUT, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _reason_in_subprocess(path: Path | str) -> str:
    """What ``read_bytes(path)`` says in a fresh interpreter, then that process's peak
    resident memory in KiB (VmHWM: unlike ru_maxrss, not inherited from this process)."""
    code = ("import re\nfrom pathlib import Path\n"
            "from reidctl.data.images import SkipImage, read_bytes\n"
            f"try:\n    read_bytes({str(path)!r})\n    print('read')\n"
            "except SkipImage as e:\n    print(e)\n"
            "status = Path('/proc/self/status').read_text()\n"
            "print(re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1))\n")
    return _in_subprocess(code)


def test_named_pipe_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    said, _ = _reason_in_subprocess(fifo).splitlines()
    assert said == "not a regular file: a named pipe (FIFO)"


def test_device_is_refused(tmp_path: Path) -> None:
    said, _ = _reason_in_subprocess("/dev/zero").splitlines()
    assert said == "not a regular file: a character device"
    with pytest.raises(SkipImage, match="not a regular file: a folder"):
        read_bytes(tmp_path)


def test_sparse_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB, no block allocated
    said, peak_kib = _reason_in_subprocess(big).splitlines()
    assert said == f"too large: {1 << 30:,} bytes, the limit is {MAX_FILE_BYTES:,} bytes"
    assert int(peak_kib) < 256 * 1024, f"peak RSS {int(peak_kib) // 1024} MiB"  # not read
    at_cap = tmp_path / "at_cap.jpg"
    with at_cap.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES)
    assert len(read_bytes(at_cap)[1]) == MAX_FILE_BYTES  # the cap itself is allowed


def test_read_stops_one_byte_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc files stat as regular files of size 0 and yield more than that when read:
    # what a file that grows between the check and the read looks like
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip("no /proc")
    assert len(read_bytes(status)[1]) > 100
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    with pytest.raises(SkipImage, match="more than 100 bytes") as e:
        read_bytes(status)
    assert e.value.reason == "too large"


def test_missing_and_too_long_for_the_system(tmp_path: Path, val_images: list[Path]) -> None:
    with pytest.raises(SkipImage) as e:
        read_bytes(tmp_path / "nope.jpg")
    assert e.value.reason == MISSING
    deep = make_file(tmp_path, SYSTEM_PATH_MAX + 200, val_images[0].read_bytes())
    with pytest.raises(SkipImage) as e:
        read_bytes(deep)
    assert e.value.reason == PATH_TOO_LONG and "File name too long" in str(e.value)
    # discovery keeps it (reading says what is wrong), and finds it in its folder
    assert discover([deep]) == [Path(deep)]
    found = discover([tmp_path])
    assert [str(p) for p in found] == [deep]


def test_discover_lists_special_files_and_survives_loops(tmp_path: Path,
                                                          val_images: list[Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(val_images[0].read_bytes())
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")  # a symlink loop
    (folder / "again").symlink_to(folder)  # a symlinked folder: not followed
    code = (f"from reidctl.data.images import discover\n"
            f"print('\\n'.join(p.name for p in discover([{str(folder)!r}])))\n")
    assert _in_subprocess(code).splitlines() == ["a.jpg", "fifo.jpg", "loop.jpg"]
    with pytest.raises(SkipImage) as e:
        read_bytes(folder / "loop.jpg")
    assert e.value.reason == MISSING


def test_store_limits_count_utf8_bytes() -> None:
    spec = load_spec("global")
    limit = spec.field("source").max_length
    assert limit is not None
    fits = "ü" * (limit // 2)  # limit bytes
    over = "ü" * (limit // 2 + 1)  # fewer characters than the limit, more bytes
    assert len(over) < limit
    rows.check_lengths(spec, rows.meta_row(ImageMeta("/x.jpg", source=fits)), 0)
    with pytest.raises(StoreError, match=rf"row 3: source too long: {limit + 2} bytes in UTF-8"):
        rows.check_lengths(spec, rows.meta_row(ImageMeta("/x.jpg", source=over)), 3)
    not_utf8 = os.fsdecode(b"/x/\xff.jpg")  # a file name whose bytes are not UTF-8
    problem = rows.row_problem(spec, rows.meta_row(ImageMeta(not_utf8)))
    assert problem is not None and (problem.field, problem.label) == ("path", "not valid UTF-8")
    for field in ("person_id", "camera", "path"):
        limit = spec.field(field).max_length
        assert limit is not None
        meta = rows.meta_row(ImageMeta("/x.jpg")) | {field: "é" * (limit // 2 + 1)}
        problem = rows.row_problem(spec, meta)
        assert problem is not None and (problem.field, problem.label) == (field, "too long")
    pk_len = spec.field("id").max_length
    assert pk_len is not None
    assert rows.check_ids(["a" * pk_len], pk_len)
    with pytest.raises(ValueError, match="UTF-8 bytes"):
        rows.check_ids(["é" * (pk_len // 2 + 1)], pk_len)
