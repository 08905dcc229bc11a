"""A server with authentication: wrong credentials fail in one line, without the secret."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.config import Connection
from reidctl.errors import StoreError
from reidctl.store import MilvusStore
from tests.milvus_server import SERVER_CREDENTIALS


@pytest.fixture()
def bare_uri(milvus_server: str) -> str:
    """The test server's URI without the credentials (it has authentication on)."""
    return milvus_server.replace(f"{SERVER_CREDENTIALS}@", "")


def test_wrong_and_right_credentials(bare_uri: str) -> None:
    t = time.monotonic()
    with pytest.raises(StoreError) as err:
        MilvusStore(Connection(bare_uri, user="root", password="not-the-pw", timeout=5))
    assert time.monotonic() - t < 15
    assert "not-the-pw" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StoreError) as err:
        MilvusStore(bare_uri, token="root:wrong-token-pw", timeout=5)
    assert "wrong-token-pw" not in str(err.value)
    with pytest.raises(StoreError) as err:
        MilvusStore(bare_uri.replace("http://", "http://root:uri-pw-secret@"), timeout=5)
    assert "uri-pw-secret" not in str(err.value)

    user, password = SERVER_CREDENTIALS.split(":")
    with MilvusStore(Connection(bare_uri, user=user, password=password), "auth_a") as store:
        if store.exists():
            store.drop()
        store.create(global_dim=128, local_dim=512, model={"fingerprint": "f"})
        assert store.count() == 0
    with MilvusStore(bare_uri, "auth_a", token=SERVER_CREDENTIALS) as store:
        assert store.info().global_dim == 128
        store.drop()


def test_cli_wrong_password(bare_uri: str) -> None:
    r = CliRunner().invoke(app, ["--user", "root", "--password", "bad-secret", "--timeout", "5",
                                 "info", "--uri", bare_uri])
    assert r.exit_code == 4, r.output
    assert "bad-secret" not in r.output + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
