"""The web API over a real gallery (CUHK03 val, default model, Milvus Lite), through
FastAPI's test client: searches, images by id, refusals, probes and metrics."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from reidctl.api import Gallery
from tests.api.helpers import Split, bomb_png, person
from tests.serve.conftest import MAX_UPLOAD, upload


def one_line_error(r) -> str:  # noqa: ANN001 - a response
    """The ``error`` of a refused request: one line, no traceback."""
    assert r.headers["content-type"].startswith("application/json"), r.text
    text = r.json()["error"]
    assert "\n" not in text and "Traceback" not in text
    return text


def test_upload_search_finds_the_query_person(client: TestClient, gallery: Gallery,
                                             split: Split) -> None:
    right = 0
    for q in split.queries:
        r = client.post("/api/search", params={"k": 5}, files=upload(q))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["query"] == q.name and doc["collection"] == "cuhk"
        want = gallery.search(q, k=5)[0]  # the same search through the Python API
        assert [h["id"] for h in doc["hits"]] == [h.id for h in want.hits]
        np.testing.assert_allclose([h["distance"] for h in doc["hits"]],
                                   [h.distance for h in want.hits], rtol=1e-5)
        right += doc["hits"][0]["person"] == person(q)
        hit = doc["hits"][0]
        assert hit["thumb_url"] == f"/api/images/{hit['id']}/thumb"
        assert hit["image_url"] == f"/api/images/{hit['id']}"
        assert re.fullmatch(r"\d{4}_0[5-9]\.jpg", hit["name"]) and hit["time"] is None
        assert "path" not in hit  # no server path in answers
        assert set(doc["ms"]) == {"decode", "extract", "coarse", "fetch", "rerank", "total"}
    assert right > len(split.queries) / 2


def test_a_gallery_image_uploaded_comes_first(client: TestClient, split: Split) -> None:
    r = client.post("/api/search?k=3", files=upload(split.gallery[12]))
    hit = r.json()["hits"][0]
    assert hit["name"] == split.gallery[12].name and hit["distance"] < 1e-3


def test_filters_and_options_as_query_parameters(client: TestClient, split: Split) -> None:
    q = split.queries[1]
    r = client.post("/api/search", params={"k": 10, "person": "0004"}, files=upload(q))
    assert {h["person"] for h in r.json()["hits"]} == {"0004"}
    r = client.post("/api/search", params=[("camera", "A"), ("camera", "C")], files=upload(q))
    assert r.status_code == 200 and r.json()["hits"] == []
    r = client.post("/api/search", params={"qe": 1, "kreciprocal": "true", "threshold": 0.0001},
                    files=upload(q))
    assert r.json()["method"] == "c2f+qe+kr" and r.json()["no_match"] is True
    for params, word in (({"k": 0}, "k:"), ({"m": 10**6}, "m:"), ({"source": ""}, "source"),
                         ({"after": "noon"}, "after"), ({"qe": -1}, "qe")):
        r = client.post("/api/search", params=params, files=upload(q))
        assert r.status_code == 422 and word in one_line_error(r), (params, r.text)


def test_search_by_stored_image(client: TestClient, split: Split) -> None:
    first = client.post("/api/search?k=1", files=upload(split.gallery[4])).json()["hits"][0]
    r = client.get(f"/api/search/{first['id']}", params={"k": 3})
    assert r.status_code == 200 and r.json()["query"] == f"id:{first['id']}"
    assert r.json()["hits"][0]["id"] == first["id"]
    rest = client.get(f"/api/search/{first['id']}?k=3&exclude_self=true").json()["hits"]
    assert first["id"] not in [h["id"] for h in rest] and [h["rank"] for h in rest] == [1, 2, 3]
    r = client.get(f"/api/search/{'a' * 64}")
    assert r.status_code == 404 and "not in collection pair" in one_line_error(r)


def test_image_and_thumbnail_by_id(client: TestClient, split: Split) -> None:
    path = split.gallery[9]
    hit = client.post("/api/search?k=1", files=upload(path)).json()["hits"][0]
    r = client.get(hit["image_url"])
    assert r.status_code == 200 and r.content == path.read_bytes()
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-content-type-options"] == "nosniff"
    t = client.get(hit["thumb_url"])
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(t.content))
    assert thumb.format == "JPEG" and thumb.width <= 128 and thumb.height <= 256
    full = Image.open(path)
    assert abs(thumb.width / thumb.height - full.width / full.height) < 0.05
    info = client.get(f"/api/images/{hit['id']}/info").json()
    assert info["person"] == path.name[:4] and info["name"] == path.name and "path" not in info


@pytest.mark.parametrize("image_id", [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..", "%2Fetc%2Fpasswd", "etc/passwd", "0" * 63, "g" * 64, "0" * 64 + "/../x",
])
def test_path_like_or_bad_ids_are_refused(client: TestClient, image_id: str) -> None:
    for url in (f"/api/images/{image_id}", f"/api/images/{image_id}/thumb",
                f"/api/search/{image_id}"):
        r = client.get(url)
        assert r.status_code in (404, 422), (url, r.status_code)
        one_line_error(r)
        assert b"root:" not in r.content


def test_unknown_id(client: TestClient) -> None:
    for url in (f"/api/images/{'f' * 64}", f"/api/images/{'f' * 64}/thumb",
                f"/api/images/{'f' * 64}/info"):
        r = client.get(url)
        assert r.status_code == 404 and "is not in collection pair" in one_line_error(r)


def test_oversized_uploads_are_refused(client: TestClient) -> None:
    big = b"\xff\xd8" + bytes(MAX_UPLOAD + 1)
    r = client.post("/api/search", files={"image": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "too large" in one_line_error(r)
    # without a Content-Length (chunked), counted as it arrives
    body = b"".join([b"--b\r\nContent-Disposition: form-data; name=\"image\"; ",
                     b"filename=\"big.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n", big,
                     b"\r\n--b--\r\n"])
    r = client.post("/api/search", content=iter([body[i:i + 65536]
                                                for i in range(0, len(body), 65536)]),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "too large" in one_line_error(r)


def test_what_is_not_a_usable_image_is_refused(client: TestClient) -> None:
    r = client.post("/api/search", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "'notes.txt': not an image" in one_line_error(r)
    r = client.post("/api/search", files={"image": ("bomb.png", bomb_png(), "image/png")})
    assert r.status_code == 413 and "too large" in one_line_error(r)
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, format="PNG")
    r = client.post("/api/search", files={"image": ("tiny.png", tiny.getvalue(), "image/png")})
    assert r.status_code == 422 and "too small" in one_line_error(r)
    r = client.post("/api/search")
    assert r.status_code == 422 and "image" in one_line_error(r)


def test_probes_info_docs_and_page(client: TestClient, split: Split) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["images"] == len(split.gallery)
    info = client.get("/api/info").json()
    assert info["images"] == len(split.gallery) and info["auth"] is False
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_metrics_count_requests_and_time_stages(client: TestClient, split: Split) -> None:
    client.post("/api/search", files=upload(split.queries[0]))
    client.get(f"/api/images/{'e' * 64}")
    text = client.get("/metrics").text
    assert re.search(r'^reidctl_http_requests_total\{endpoint="/api/search",method="POST",'
                     r'status="200"\} [1-9]', text, re.M)
    assert re.search(r'^reidctl_http_requests_total\{endpoint="/api/images/\{image_id\}",'
                     r'method="GET",status="404"\} [1-9]', text, re.M)
    for stage in ("decode", "extract", "coarse", "fetch", "rerank", "total"):
        assert re.search(rf'^reidctl_search_stage_seconds_count\{{stage="{stage}"\}} [1-9]',
                         text, re.M), stage
        assert f'reidctl_search_stage_seconds_bucket{{stage="{stage}",le="+Inf"}}' in text
    assert "# TYPE reidctl_search_stage_seconds histogram" in text


def test_the_page_folder_is_served(client: TestClient) -> None:
    assert Path(__file__).parents[2].joinpath("reidctl/serve/static/index.html").is_file()
    r = client.get("/index.html")
    assert r.status_code == 200 and "/docs" in r.text
