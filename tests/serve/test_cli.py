"""``reidctl serve``: refusals at start (one line, before the model loads), and a real
server process answering a real HTTP search."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.api import Gallery
from reidctl.cli import serve_cmd
from reidctl.model import FeatureExtractor
from tests.api.helpers import Split
from tests.cli_helpers import RUNNER_ENV, one_line_error, sub_app
from tests.serve.conftest import TOKEN

runner = CliRunner()
app = sub_app(serve_cmd.register)
REIDCTL = Path(sys.executable).with_name("reidctl")


def _serve(*args: str, env: dict | None = None):  # noqa: ANN202 - a typer Result
    return runner.invoke(app, ["serve", *args], env=RUNNER_ENV | {"REIDCTL_SERVE_TOKEN": None}
                         | (env or {}))


def test_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _serve("--host", "0.0.0.0", "--uri", str(tmp_path / "none.db"))
    assert r.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without an API token" in one_line_error(r)
    assert time.monotonic() - t0 < 10  # refused before the model loads
    r = _serve("--host", "0.0.0.0", env={"REIDCTL_SERVE_TOKEN": "short"})
    assert r.exit_code == 2 and "16 to 4096 visible ASCII" in one_line_error(r)
    assert "short" not in r.stderr


def test_refuses_a_port_in_use_and_a_missing_gallery(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve("--port", str(port), "--uri", str(tmp_path / "none.db"))
        assert r.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in one_line_error(r)
    r = _serve("--port", "0", "--uri", str(tmp_path / "none.db"))
    assert r.exit_code == 5 and "no Milvus Lite database" in one_line_error(r)


def _multipart(field: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def _request(url: str, data: bytes | None = None, headers: dict | None = None,
             ) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with _DIRECT.open(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.slow
def test_a_real_server_answers_a_real_search(tmp_path: Path, split: Split,
                                             default_model: FeatureExtractor) -> None:
    """``reidctl serve`` as its own process on a free loopback port, with a token: a search
    by upload over HTTP (the Python API's answer), a thumbnail, then Ctrl-C stops it."""
    db = str(tmp_path / "served.db")
    q = split.queries[4]
    with Gallery(db, "cuhk", model=default_model, create=True) as g:  # closed: one process
        g.ingest(split.gallery)  # at a time may open a Milvus Lite database
        want = [h.id for h in g.search(q, k=3)[0].hits]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDCTL_")}
    env |= {"REIDCTL_SERVE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(REIDCTL), "serve", "--uri", db, "--collection", "cuhk",
                             "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        base = None
        deadline = time.monotonic() + 300
        while base is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
            m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
            base = m.group(1) if m else None
        assert base, f"no address announced (exit {proc.poll()})"
        status, _ = _request(base + "/healthz")
        assert status == 200
        body, boundary = _multipart("image", q)
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _ = _request(base + "/api/search?k=3", body, headers)
        assert status == 401
        status, raw = _request(base + "/api/search?k=3", body,
                               headers | {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, raw
        doc = json.loads(raw)
        assert [h["id"] for h in doc["hits"]] == want and doc["query"] == q.name
        status, thumb = _request(base + doc["hits"][0]["thumb_url"],
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and thumb[:2] == b"\xff\xd8"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and TOKEN not in err
