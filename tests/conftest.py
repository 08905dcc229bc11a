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


# --- a real Milvus server (the PyPI package `milvus`, 2.3.5), started once per session ---

SERVER_START_S = 90
SERVER_STOP_S = 10


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drop_all(uri: str) -> None:
    from pymilvus import MilvusClient  # noqa: TID251 - test set-up of a raw server

    client = MilvusClient(uri, timeout=30)
    for name in client.list_collections():
        client.drop_collection(name)
    client.close()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """URI of a Milvus standalone server on loopback; skips when it cannot start."""
    import contextlib
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time

    exe = shutil.which("milvus-server") or str(Path(sys.executable).parent / "milvus-server")
    if not Path(exe).exists():
        pytest.skip("milvus-server is not installed (pip install milvus==2.3.5)")
    data = tmp_path_factory.mktemp("milvus-server")
    port, etcd = _free_port(), _free_port()
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [exe, "--data", str(data / "data"), "--proxy-port", str(port), "--etcd-port", str(etcd)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        """SIGTERM the process group, wait for every member, then SIGKILL what lingers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_S
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
        log.close()

    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            tail = (data / "server.log").read_bytes()[-400:].decode(errors="replace")
            pytest.skip(f"milvus-server did not start: {tail.strip().splitlines()[-1:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            _drop_all(uri)  # answers only once the server is ready
            break
        except Exception:  # noqa: BLE001 - not ready yet
            time.sleep(0.5)
    yield uri
    stop()


@pytest.fixture(params=["lite", "server"])
def milvus_uri(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    """A fresh, empty database: a Milvus Lite file, or the test server emptied."""
    if request.param == "lite":
        yield str(tmp_path / "store.db")
        return
    uri = request.getfixturevalue("milvus_server")
    _drop_all(uri)
    yield uri
    _drop_all(uri)
