"""Fixtures of the browser tests: the served gallery (plain, and behind a token), and one
headless Chromium for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reidctl.model import FeatureExtractor
from reidctl.serve.app import create_app
from tests.api.conftest import default_model  # noqa: F401 - the shared model fixture
from tests.browser.site import LiveServer, Site, chromium, open_site

TOKEN = "browser-test-token-0123456789abcdef"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path],
         default_model: FeatureExtractor,  # noqa: F811
         ) -> Iterator[Site]:
    """The gallery of persons 0-5 (camera A shots 01-04, camera B 05-09, with capture
    times), its model's threshold calibrated, and the queries picked."""
    s = open_site(val_images, tmp_path_factory.mktemp("browser-site"), default_model)
    try:
        yield s
    finally:
        s.gallery.close()


@pytest.fixture(scope="session")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app without a token, served on a free loopback port."""
    app = create_app(site.gallery, None, uploads=tmp_path_factory.mktemp("uploads"))
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="session")
def token_server(site: Site, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[LiveServer]:
    """The app behind a bearer token, on another free loopback port."""
    app = create_app(site.gallery, TOKEN, uploads=tmp_path_factory.mktemp("uploads"))
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    with chromium() as d:
        yield d
