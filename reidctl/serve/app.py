"""The web app: :func:`create_app` builds the FastAPI application over an open
:class:`~reidctl.api.Gallery` (model and connection loaded once, before the first request).

Errors are answered as ``{"error": "<one line>"}`` with a status that says what kind:
401 (token), 404 (unknown image), 413 (too large), 415 (not an image), 422 (bad input),
409 (another model's gallery), 503 (store unreachable), 500 (anything else; logged
without secrets, never with a traceback in the answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from reidctl import __version__
from reidctl.api import Gallery, ImageNotFound
from reidctl.config import redact
from reidctl.data.query_images import QueryImageError
from reidctl.errors import (
    FeatureSpaceMismatch,
    InputError,
    ModelError,
    ReidctlError,
    StoreError,
)
from reidctl.serve.files import ThumbCache, default_uploads
from reidctl.serve.guard import Guard, RequestMetrics, error_response
from reidctl.serve.metrics import CONTENT_TYPE, Metrics

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD = 16 << 20  # bytes per uploaded image: a 40 MP JPEG fits
DEFAULT_MAX_INGEST = 256 << 20  # bytes per ingest request, every file together
SMALL_BODY = 64 << 10  # any other request's body
FORM_SLACK = 64 << 10  # multipart boundaries and the fields beside the one image
# CLI option names in library messages, as the web API spells them
_WORDS = (("--exclude-camera", "exclude_camera"), ("--camera", "camera"),
          ("--source", "source"), ("--person", "person"), ("--path-prefix", "path_prefix"),
          ("add --all", "add all=true"), ("--all", "all=true"), ("--after", "after"),
          ("--before", "before"))
_QUERY_STATUS = {"not an image": 415, "too large": 413}


@dataclass
class ServeState:
    """What the routes share.

    Attributes:
        gallery: the open gallery.
        token: the bearer token, None when none is required.
        max_upload: bytes per uploaded image; max_ingest: bytes per ingest request.
        uploads: the folder uploads are saved into before an ingest.
        secrets: strings never to show (the token, the connection's secrets).
        metrics: the counters and histograms of ``/metrics``.
        thumbs: thumbnails made so far.
    """

    gallery: Gallery
    token: str | None
    max_upload: int
    max_ingest: int
    uploads: Path
    secrets: tuple[str, ...] = ()
    metrics: Metrics = field(default_factory=Metrics)
    thumbs: ThumbCache = field(default_factory=ThumbCache)

    def scrub(self, text: str) -> str:
        """``text`` with URI credentials and every secret masked."""
        text = redact(str(text))
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def status_of(e: ReidctlError) -> int:
    """The HTTP status of a library error."""
    if isinstance(e, ImageNotFound):
        return 404
    if isinstance(e, QueryImageError):
        return _QUERY_STATUS.get(e.reason, 422)
    if isinstance(e, InputError):
        return 422
    if isinstance(e, FeatureSpaceMismatch):
        return 409
    if isinstance(e, StoreError):
        return 503
    return 500  # ModelError and anything else reidctl raises


def web_words(message: str) -> str:
    """A library message with the command line's option names as the web API's
    parameters (``--camera`` -> ``camera``, ``--all`` -> ``all=true``)."""
    for cli, web in _WORDS:
        message = message.replace(cli, web)
    return message


def create_app(
    gallery: Gallery, token: str | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, *,
    uploads: Path | None = None, max_ingest_bytes: int = DEFAULT_MAX_INGEST,
    static_dir: Path = STATIC, secrets: Sequence[str] = (),
) -> FastAPI:
    """The web app over ``gallery``.

    Args:
        gallery: an open gallery (closed by the caller after the app stops).
        token: bearer token every ``/api/*`` and ``/metrics`` request must carry
            (``Authorization: Bearer TOKEN``); None: no token (bind to loopback only,
            see :func:`reidctl.serve.guard.check_bind`).
        max_upload_bytes: the largest image file accepted (413 above).
        uploads: folder that uploaded images are saved into before they are ingested
            (default: ``<database>_uploads`` beside a Lite database, else
            ``./reidctl_uploads``).
        max_ingest_bytes: the largest ingest request, all its files together.
        static_dir: files served at ``/`` (the web page).
        secrets: more strings never to log or answer (the store's credentials).

    Returns:
        The FastAPI application (OpenAPI documentation at ``/docs``).
    """
    from reidctl.serve.routes import add_api_routes, add_probe_routes

    hidden = tuple(sorted({s for s in (token, *secrets) if s}, key=len, reverse=True))
    state = ServeState(gallery, token, int(max_upload_bytes), int(max_ingest_bytes),
                       (uploads or default_uploads(gallery.store.uri)).absolute(), hidden)
    app = FastAPI(
        title="reidctl", version=__version__, redoc_url=None,
        description="Person re-identification search: upload a photo of a person, get the "
                    "most similar gallery images. Every /api request needs "
                    "'Authorization: Bearer TOKEN' when the server was started with a token.")
    app.state.reidctl = state
    _handlers(app, state)
    add_api_routes(app, state)
    add_probe_routes(app, state)
    if static_dir.is_dir():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="page")
    else:  # an install without the page's files: the API alone
        from reidctl.serve.guard import log

        log.warning("no web page: %s is not a folder", static_dir)

    def limit_of(scope: Scope) -> int:
        path = "/" + scope.get("path", "").strip("/")
        if scope.get("method") == "POST" and path == "/api/search":
            return state.max_upload + FORM_SLACK
        if scope.get("method") == "POST" and path == "/api/ingest":
            return state.max_ingest
        return SMALL_BODY

    app.add_middleware(Guard, token=token, limit_of=limit_of, scrub=state.scrub)
    app.add_middleware(RequestMetrics, metrics=state.metrics, routes=lambda: app.router.routes)
    return app


def _handlers(app: FastAPI, state: ServeState) -> None:
    """One-line JSON answers for HTTP errors, bad parameters and library errors."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(e.status_code, state.scrub(str(e.detail)), e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first: dict[str, Any] = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        text = f"{where or 'request'}: {first.get('msg', 'invalid')}{more}"
        return error_response(422, state.scrub(text))

    @app.exception_handler(ReidctlError)
    async def library_error(request: Request, e: ReidctlError) -> JSONResponse:
        status = status_of(e)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, ModelError) or status == 500:
            from reidctl.serve.guard import log

            log.error("%s in %s %s: %s", type(e).__name__, request.method, request.url.path,
                      state.scrub(first))
        return error_response(status, state.scrub(web_words(first)))


def metrics_response(state: ServeState) -> PlainTextResponse:
    """``/metrics``: the Prometheus text."""
    return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)
