"""Fixtures of the web service tests: the API tests' model and read-only gallery, and the
app over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reidctl.api import Gallery
from reidctl.serve.app import create_app
from tests.api.conftest import default_model, gallery, split  # noqa: F401 - shared fixtures

TOKEN = "s3cret-token-for-tests-0123456789"
MAX_UPLOAD = 256 << 10  # bytes: CUHK03 crops are a few KB
LOCAL = "http://127.0.0.1"  # without a token the app answers loopback host names only


@pytest.fixture(scope="session")
def client(gallery: Gallery, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
           ) -> Iterator[TestClient]:
    """The app without a token (bound to loopback), over the read-only gallery."""
    app = create_app(gallery, None, MAX_UPLOAD, uploads=tmp_path_factory.mktemp("uploads"))
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def upload(path: Path) -> dict:
    """The multipart ``files`` of a search by upload."""
    return {"image": (path.name, path.read_bytes(), "image/jpeg")}
