"""Shared fixtures: real data from ../shared (overridable by environment variables)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.milvus_server import SERVER_CREDENTIALS, ServerUnavailable, drop_all
from tests.milvus_server import milvus_server as milvus_server_process

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REIDCTL_SHARED", REPO.parent / "shared"))
CUHK03 = Path(os.environ.get("REIDCTL_CUHK03", SHARED / "datasets" / "cuhk03-labeled-pair1"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks ``server`` every test that needs the Milvus server, so that new tests are
    marked too: those using the ``milvus_server`` fixture, and those parametrized with
    the value ``"server"`` (the ``milvus_uri`` fixture's server side, and the tests and
    fixtures that take ``"lite"``/``"server"`` the same way and fetch the server
    fixture only for the latter)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if "milvus_server" in getattr(item, "fixturenames", ()) or any(
                isinstance(v, str) and v == "server" for v in params):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def cuhk03_root() -> Path:
    if not (CUHK03 / "val").is_dir():
        pytest.skip(f"CUHK03 not found at {CUHK03} (set REIDCTL_CUHK03)")
    return CUHK03


@pytest.fixture(scope="session")
def val_images(cuhk03_root: Path) -> list[Path]:
    return sorted((cuhk03_root / "val").glob("*.jpg"))


# --- a real Milvus server (the PyPI package `milvus`, 2.3.5), started once per session ---


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """URI of a Milvus standalone server on loopback, with authentication on and the
    credentials in the URI (``http://root:Milvus@127.0.0.1:PORT``); skips when the
    server cannot start. (Only one embedded-etcd server can run per machine: its peer
    port is fixed, so the authentication tests share this one.)"""
    try:
        with milvus_server_process(tmp_path_factory.mktemp("milvus-server"), auth=True) as uri:
            yield uri.replace("http://", f"http://{SERVER_CREDENTIALS}@")
    except ServerUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(params=["lite", "server"])
def milvus_uri(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    """A fresh, empty database: a Milvus Lite file, or the test server emptied."""
    if request.param == "lite":
        yield str(tmp_path / "store.db")
        return
    uri = request.getfixturevalue("milvus_server")
    drop_all(uri)
    yield uri
    drop_all(uri)


@pytest.fixture(scope="session")
def small_root(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> Path:
    """A CUHK03-shaped root (``val/`` only) with the val images of persons 0000-0009
    (about 100 images); read-only for the tests that share it."""
    root = tmp_path_factory.mktemp("cuhk03_small") / "root"
    (root / "val").mkdir(parents=True)
    for p in val_images:
        if int(p.name[:4]) < 10:
            shutil.copy(p, root / "val" / p.name)
    return root
