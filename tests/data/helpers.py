"""Shared by the input-limit tests of data and of the CLI: files at paths of a given length."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SYSTEM_PATH_MAX = 4096  # Linux PATH_MAX, with its terminating NUL


def make_file(root: Path, length: int, data: bytes, component: str = "d") -> str:
    """A file whose absolute path is ``length`` characters long: folders named
    ``component`` x up to 100 below ``root``, then a 250-character file name (so the
    folder stays listable when the whole path is over the system's limit). Made through
    directory descriptors, so each call stays within that limit."""
    name_len = 250
    fd = os.open(root, os.O_RDONLY)
    path = str(root)
    try:
        while len(path) + 1 + name_len < length:
            part = component * min(100, length - len(path) - 2 - name_len)
            with contextlib.suppress(FileExistsError):  # shared with an earlier call
                os.mkdir(part, dir_fd=fd)
            new = os.open(part, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, path = new, f"{path}/{part}"
        name = "f" * (length - len(path) - 1 - 4) + ".jpg"
        out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        with os.fdopen(out, "wb") as fh:
            fh.write(data)
    finally:
        os.close(fd)
    path = f"{path}/{name}"
    assert len(path) == length
    return path
