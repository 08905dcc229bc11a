"""Shared fixtures: real data from ../shared (overridable by environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REIDCTL_SHARED", REPO.parent / "shared"))
CUHK03 = Path(os.environ.get("REIDCTL_CUHK03", SHARED / "datasets" / "cuhk03-labeled-pair1"))


@pytest.fixture(scope="session")
def cuhk03_root() -> Path:
    if not (CUHK03 / "val").is_dir():
        pytest.skip(f"CUHK03 not found at {CUHK03} (set REIDCTL_CUHK03)")
    return CUHK03


@pytest.fixture(scope="session")
def val_images(cuhk03_root: Path) -> list[Path]:
    return sorted((cuhk03_root / "val").glob("*.jpg"))
