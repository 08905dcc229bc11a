"""Fixtures of the Python API tests: one model and one read-only gallery per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reidctl.api import Gallery
from reidctl.model import FeatureExtractor, load_model
from tests.api.helpers import Split, make_split


@pytest.fixture(scope="session")
def default_model() -> FeatureExtractor:
    """The command line's default model (osnet_x0_25, zero-shot weights), on the CPU."""
    return load_model("osnet_x0_25")


@pytest.fixture(scope="session")
def split(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> Split:
    return make_split(val_images, tmp_path_factory.mktemp("api-gallery") / "images")


@pytest.fixture(scope="session")
def gallery(tmp_path_factory: pytest.TempPathFactory, split: Split,
            default_model: FeatureExtractor) -> Iterator[Gallery]:
    """The camera-B images of 6 persons (about 30), ingested through the API; tests only
    read it."""
    db = tmp_path_factory.mktemp("api-db") / "g.db"
    with Gallery(db, "cuhk", model=default_model, create=True) as g:
        report = g.ingest([split.gallery[0].parent])
        assert report.ingested == len(split.gallery)
        yield g
