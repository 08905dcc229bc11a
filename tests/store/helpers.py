"""Shared by the store tests and the CLI tests that open databases: seeded galleries,
a Lite database with an empty pair, a second process holding one, read-only paths."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reidctl.store import MilvusStore
from reidctl.types import ImageMeta

GLOBAL_DIM = 128
LOCAL_DIM = 512
MODEL = {"fingerprint": "fp-test-1", "name": "googlenet", "pca": "pca-test"}


@dataclass
class Gallery:
    """Seeded gallery: N images with unit global and random local descriptors."""

    ids: list[str]
    f_g: np.ndarray  # (N, 128)
    f_l: np.ndarray  # (N, 512)
    metas: list[ImageMeta]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_gallery(n: int = 300, seed: int = 0, tag: str = "a") -> Gallery:
    rng = np.random.default_rng(seed)
    ids = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(n)]
    metas = [
        ImageMeta(
            path=f"/data/{tag}/{i:04d}.jpg",
            person_id=f"{i % 25:04d}",
            camera=str(1 + i % 6),
            source="synthetic",
            captured_at=1_700_000_000_000 + i,
        )
        for i in range(n)
    ]
    f_g = unit_rows(rng, n, GLOBAL_DIM)
    f_l = rng.standard_normal((n, LOCAL_DIM)).astype(np.float32)
    return Gallery(ids, f_g, f_l, metas)


# A second process that opens a Lite database, says so, and holds it until stdin closes.
HOLDER = ("import sys\nfrom reidctl.store import MilvusStore\n"
          "s = MilvusStore(sys.argv[1])\nprint('open', flush=True)\nsys.stdin.read()\n")


def make_database(path: Path) -> Path:
    """A Lite database holding an empty pair 'gallery', closed again."""
    with MilvusStore(str(path)) as store:
        store.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model=MODEL)
    return path


@contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen]:
    """Runs a real second process that keeps the Lite database ``path`` open."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.communicate(timeout=60)  # closes stdin: the holder exits and frees the lock


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Makes ``paths`` unwritable, even for root: ``chattr +i`` when running as root
    (permission bits do not stop root), ``chmod a-w`` otherwise; skips when neither
    takes effect on this file system."""
    root = os.geteuid() == 0
    done: list[Path] = []
    modes = {p: p.stat().st_mode for p in paths}
    try:
        for p in paths:
            if root:
                r = subprocess.run(["chattr", "+i", str(p)], capture_output=True, text=True)
                if r.returncode != 0:
                    pytest.skip(f"running as root and chattr +i fails here ({r.stderr.strip()}):"
                                " no way to make a folder read-only for root")
            else:
                p.chmod(modes[p] & ~0o222)
            done.append(p)
        probe = paths[0] / "probe" if paths[0].is_dir() else paths[0]
        try:
            with open(probe, "a"):
                pass
        except OSError:
            pass
        else:
            pytest.skip(f"{probe} is still writable after chattr/chmod on this file system")
        yield
    finally:
        for p in done:
            if root:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            else:
                p.chmod(modes[p])
