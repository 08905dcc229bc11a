"""A server with authentication: wrong credentials fail in one line, without the secret."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.config import Connection
from reidctl.errors import StoreError
from reidctl.store import MilvusStore
from tests.milvus_server import ServerUnavailable, milvus_server


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    try:
        with milvus_server(tmp_path_factory.mktemp("milvus-auth"), auth=True) as uri:
            yield uri
    except ServerUnavailable as e:
        pytest.skip(str(e))


def test_wrong_and_right_credentials(auth_server: str) -> None:
    t = time.monotonic()
    with pytest.raises(StoreError) as err:
        MilvusStore(Connection(auth_server, user="root", password="not-the-pw", timeout=5))
    assert time.monotonic() - t < 15
    assert "not-the-pw" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StoreError) as err:
        MilvusStore(auth_server, token="root:wrong-token-pw", timeout=5)
    assert "wrong-token-pw" not in str(err.value)

    with MilvusStore(Connection(auth_server, user="root", password="Milvus"), "a") as store:
        store.create(global_dim=128, local_dim=512, model={"fingerprint": "f"})
        assert store.count() == 0
    with MilvusStore(auth_server, "a", token="root:Milvus") as store:
        assert store.info().global_dim == 128


def test_cli_wrong_password(auth_server: str) -> None:
    r = CliRunner().invoke(app, ["--user", "root", "--password", "bad-secret", "--timeout", "5",
                                 "info", "--uri", auth_server])
    assert r.exit_code == 4, r.output
    assert "bad-secret" not in r.output + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
