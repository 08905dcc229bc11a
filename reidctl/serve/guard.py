"""What stands before every request: the bearer token, the body size limit, the last-resort
error answer, and the request metrics (pure ASGI middleware, so that a refused request is
refused before its body is read).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time
import traceback
from collections.abc import Callable

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reidctl.errors import InputError
from reidctl.serve.metrics import Metrics

log = logging.getLogger("reidctl.serve")

TOKEN_ENV = "REIDCTL_SERVE_TOKEN"
MIN_TOKEN = 16  # characters of a bearer token at least
_TOKEN = re.compile(r"[\x21-\x7e]{16,4096}")  # visible ASCII: what a header carries as is
# Paths open without the token: the page, the API documentation and the probes.
_PROTECTED = re.compile(r"/+(api|metrics)(/|$)", re.IGNORECASE)
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY")]


class BodyTooLarge(HTTPException):
    """A request body or an uploaded file over its limit (413)."""

    def __init__(self, limit: int, what: str = "the request body") -> None:
        super().__init__(413, f"{what} is too large: the limit is {limit:,} bytes")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuses to serve beyond this machine without a token, and a token unfit for a
    header or too short to guess.

    Raises:
        InputError: one line saying what to do.
    """
    if token is not None and not _TOKEN.fullmatch(token):
        raise InputError(f"the API token must be {MIN_TOKEN} to 4096 visible ASCII characters "
                         "(no spaces), e.g. from: python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))'")
    if token is None and not is_loopback(host):
        raise InputError(f"refusing to serve on {host} without an API token: set "
                         f"{TOKEN_ENV} (or --api-token), or bind to 127.0.0.1")


def _host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   ) -> JSONResponse:
    """The one shape of every error answer: ``{"error": "<one line>"}``."""
    line = " ".join(str(message).split())[:500]
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers", []) if k.lower() == name]


class Guard:
    """Token, origin, body limits, security headers and the last-resort answer of an app.

    Without a token the app serves this machine alone, so it answers only requests whose
    ``Host`` is a loopback name: a web page elsewhere cannot reach it through a name of
    its own that resolves to 127.0.0.1 (DNS rebinding). A request that changes something
    (POST, DELETE, ...) from a page of another origin is refused in every case.

    Args:
        app: the ASGI app.
        token: the bearer token ``/api/*`` and ``/metrics`` require; None: no check, and
            loopback ``Host`` names only.
        limit_of: the body limit in bytes of a request (by its scope).
        scrub: masks secrets in text that is logged.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, limit_of: Callable[[Scope], int],
                 scrub: Callable[[str], str]) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.limit_of = limit_of
        self.scrub = scrub

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer to a request refused before it runs, or None."""
        host = (_header(scope, b"host") or [b""])[0].decode("latin-1")
        if self.token is None and not is_loopback(_host_name(host)):
            return error_response(403, f"host {host[:100]!r} refused: without an API token "
                                  "the server answers to localhost only")
        origin = (_header(scope, b"origin") or [b""])[0].decode("latin-1")
        if origin and scope.get("method") not in ("GET", "HEAD", "OPTIONS") \
                and origin.split("://", 1)[-1].rstrip("/").lower() != host.lower():
            return error_response(403, "cross-origin request refused")
        if self.token is not None and _PROTECTED.match(scope["path"]) \
                and not self._authorized(scope):
            return error_response(401, "missing or wrong API token: send the header "
                                  "'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"})
        limit = self.limit_of(scope)
        length = _header(scope, b"content-length")
        if length and length[0].isdigit() and int(length[0]) > limit:
            return error_response(413, BodyTooLarge(limit).detail)
        return None

    def _authorized(self, scope: Scope) -> bool:
        given = _header(scope, b"authorization")
        if len(given) != 1:
            return False
        scheme, _, value = given[0].partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        limit = self.limit_of(scope)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send_with_headers)
        except Exception as e:  # noqa: BLE001 - the last resort: one line, never a traceback
            if isinstance(e, HTTPException):
                response = error_response(e.status_code, str(e.detail))
            else:
                self._log(scope, e)
                response = error_response(500, f"internal error ({type(e).__name__}); the "
                                          "server log has the details")
            if not started:
                await response(scope, receive, send_with_headers)

    def _log(self, scope: Scope, e: Exception) -> None:
        first = str(e).splitlines()[0] if str(e) else ""
        log.error("unexpected %s in %s %s: %s", type(e).__name__, scope.get("method"),
                  self.scrub(scope.get("path", "")), self.scrub(first))
        if os.environ.get("REIDCTL_DEBUG"):
            log.error("%s", self.scrub("".join(traceback.format_exception(e))))


class RequestMetrics:
    """Counts every answer by endpoint (the route's template), method and status, and
    times it."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Callable[[], list]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _endpoint(self, scope: Scope) -> str:
        """The template of the route that answers ``scope`` (the app's own, prefixes
        included), or ``unmatched``."""
        partial = None
        for route in self.routes():
            match = route.matches(scope)[0]
            if match == Match.FULL:
                return getattr(route, "path", "") or "/"  # the mount at / has the path ""
            if match == Match.PARTIAL and partial is None:  # another method's route
                partial = getattr(route, "path", None)
        return partial or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.metrics.request(self._endpoint(scope), scope.get("method", ""), status,
                                 time.perf_counter() - t0)
