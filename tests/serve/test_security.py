"""The bearer token, secrets kept out of answers and logs, the last-resort error answer,
and the bind rule."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from reidctl.api import Gallery
from reidctl.errors import InputError
from reidctl.serve.app import create_app
from reidctl.serve.guard import Guard, check_bind, is_loopback
from tests.api.helpers import Split
from tests.serve.conftest import LOCAL, MAX_UPLOAD, TOKEN, upload


@pytest.fixture(scope="module")
def locked(gallery: Gallery, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = create_app(gallery, TOKEN, MAX_UPLOAD, uploads=tmp_path_factory.mktemp("up"))
    with TestClient(app) as c:
        yield c


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_api_request_needs_the_token(locked: TestClient, split: Split,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    attempts = [
        ("post", "/api/search", {"files": upload(split.queries[0])}),
        ("get", f"/api/search/{'a' * 64}", {}), ("get", f"/api/images/{'a' * 64}", {}),
        ("get", f"/api/images/{'a' * 64}/thumb", {}), ("get", "/api/info", {}),
        ("delete", "/api/images?all=true", {}), ("get", "/api/nothing/here", {}),
        ("get", "/API/info", {}), ("get", "/api//info", {}), ("get", "/metrics", {}),
        ("post", "/api/ingest", {"files": {"images": ("x.jpg", b"xx", "image/jpeg")}}),
    ]
    for headers in ({}, _auth("wrong-token-wrong-token"), {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, _auth(TOKEN + "x"), _auth(TOKEN[:-1])):
        for method, url, kw in attempts:
            r = getattr(locked, method)(url, headers=headers, **kw)
            assert r.status_code == 401, (headers, url, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "API token" in r.json()["error"]
            seen.append(r.text + str(r.headers))
    assert locked.get("/api/info").json().get("images") is None  # nothing leaked without it
    assert locked.get(f"/api/images/{'a' * 64}").status_code == 401
    assert gallery_count(locked) > 0
    ok = locked.post("/api/search", files=upload(split.queries[0]), headers=_auth(TOKEN))
    assert ok.status_code == 200 and ok.json()["hits"]
    img = locked.get(ok.json()["hits"][0]["thumb_url"], headers=_auth(TOKEN))
    assert img.status_code == 200
    bad = locked.get(f"/api/images/{'b' * 64}", headers=_auth(TOKEN))
    assert bad.status_code == 404
    seen += [ok.text, str(ok.headers), bad.text, str(bad.headers)]
    # open without the token: the probes, the documentation and the page
    for url in ("/healthz", "/readyz", "/docs", "/openapi.json", "/"):
        r = locked.get(url)
        assert r.status_code == 200, url
        seen.append(r.text)
    assert locked.get("/metrics", headers=_auth(TOKEN)).status_code == 200
    assert all(TOKEN not in s for s in seen)
    assert TOKEN not in caplog.text


def gallery_count(client: TestClient) -> int:
    return client.get("/api/info", headers=_auth(TOKEN)).json()["images"]


def test_the_docs_offer_the_bearer_scheme(locked: TestClient) -> None:
    schemes = locked.get("/openapi.json").json()["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())


def test_an_unexpected_error_is_one_line_without_secrets(
        caplog: pytest.LogCaptureFixture) -> None:
    """The last resort: a failure nothing expected is answered 500 with one line, and
    logged with every secret masked."""
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError(f"could not reach http://u:{TOKEN}@db:19530 with {TOKEN}\nline 2")

    scrub = lambda text: text.replace(TOKEN, "***")  # noqa: E731
    app = Guard(failing, token=None, limit_of=lambda scope: 1024, scrub=scrub)
    caplog.set_level(logging.DEBUG)
    r = TestClient(app, base_url=LOCAL).get("/anything")  # no lifespan
    assert r.status_code == 500
    assert r.json() == {"error": "internal error (RuntimeError); the server log has the "
                                 "details"}
    assert "RuntimeError" in caplog.text and "could not reach" in caplog.text
    assert TOKEN not in caplog.text and "Traceback" not in caplog.text
    assert "line 2" not in caplog.text


def test_store_failures_name_the_kind(gallery: Gallery, default_model,  # noqa: ANN001
                                      tmp_path: Path, split: Split) -> None:
    """A closed store answers 503 with one line (not a 500 with a traceback)."""
    g = Gallery(gallery.store.uri, "cuhk", model=default_model)
    app = create_app(g, None, MAX_UPLOAD, uploads=tmp_path)
    g.close()
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/api/search", files=upload(split.queries[0]))
        assert r.status_code == 503 and "closed" in r.json()["error"]
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("example.org", False),
])
def test_bind_rule(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if loopback:
        check_bind(host, None)
    else:
        with pytest.raises(InputError, match="without an API token"):
            check_bind(host, None)
    check_bind(host, TOKEN)
    for weak in ("short", "has a space in it, long enough", "é" * 20):
        with pytest.raises(InputError, match="16 to 4096 visible ASCII"):
            check_bind(host, weak)


def test_without_a_token_only_local_host_names_are_answered(client: TestClient,
                                                            split: Split) -> None:
    """A page of another site that reaches the loopback server through a name of its own
    (DNS rebinding) gets nothing; localhost names work."""
    for host in ("evil.example", "evil.example:8000", "10.0.0.5", "localhost.evil.example"):
        r = client.get("/api/info", headers={"Host": host})
        assert r.status_code == 403 and "localhost only" in r.json()["error"], host
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "127.0.0.2"):
        assert client.get("/api/info", headers={"Host": host}).status_code == 200, host


def test_cross_origin_changes_are_refused(client: TestClient, locked: TestClient,
                                          split: Split) -> None:
    q = split.queries[0]
    r = client.post("/api/search", files=upload(q), headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = client.delete("/api/images?all=true", headers={"Origin": "null"})
    assert r.status_code == 403
    same = client.post("/api/search", files=upload(q), headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 200
    r = locked.post("/api/search", files=upload(q),
                    headers=_auth(TOKEN) | {"Origin": "https://evil.example"})
    assert r.status_code == 403
