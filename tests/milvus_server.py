"""Starting and stopping a real Milvus standalone server (PyPI package `milvus`, 2.3.5).

Every port is chosen free, so several servers can run side by side on loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

START_S = 90
SERVER_CREDENTIALS = "root:Milvus"  # the default root user of a server with authentication
STOP_S = 10
PORT_OPTIONS = ("--proxy-port", "--etcd-port", "--root-coord-port", "--proxy-internal-port",
                "--query-coord-port", "--query-node-port", "--index-coord-port",
                "--index-node-port", "--data-coord-port", "--data-node-port")


class ServerUnavailable(RuntimeError):
    """The server binary is missing or did not answer in time."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open until every one is chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def drop_all(uri: str, token: str = "") -> None:
    """Drops every collection on the server."""
    from pymilvus import MilvusClient  # noqa: TID251 - test set-up of a raw server

    client = MilvusClient(uri, token=token, timeout=30)
    for name in client.list_collections():
        client.drop_collection(name)
    client.close()


@contextlib.contextmanager
def milvus_server(data: Path, *, auth: bool = False) -> Iterator[str]:
    """Runs ``milvus-server`` with its data under ``data``; yields its URI.

    Stops it on exit: SIGTERM to its process group, a wait for every member, then
    SIGKILL for whatever lingers (the server is slow to stop).

    Raises:
        ServerUnavailable: not installed, or not ready within START_S seconds.
    """
    exe = shutil.which("milvus-server") or str(Path(sys.executable).parent / "milvus-server")
    if not Path(exe).exists():
        raise ServerUnavailable("milvus-server is not installed (pip install milvus==2.3.5)")
    data.mkdir(parents=True, exist_ok=True)
    *chosen, metrics = free_ports(len(PORT_OPTIONS) + 1)
    ports = dict(zip(PORT_OPTIONS, chosen, strict=True))
    args = [exe, "--data", str(data / "data")]
    for opt, port in ports.items():
        args += [opt, str(port)]
    if auth:
        args += ["--authorization-enabled", "true"]
    env = dict(os.environ, METRICS_PORT=str(metrics))
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed in stop()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
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

    port = ports["--proxy-port"]
    uri = f"http://127.0.0.1:{port}"
    token = SERVER_CREDENTIALS if auth else ""
    deadline = time.monotonic() + START_S
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            tail = (data / "server.log").read_bytes()[-400:].decode(errors="replace")
            raise ServerUnavailable(f"milvus-server did not start: {tail.strip()[-200:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            drop_all(uri, token)  # answers only once the server is ready
            break
        except Exception:  # noqa: BLE001 - not ready yet
            time.sleep(0.5)
    try:
        yield uri
    finally:
        stop()
