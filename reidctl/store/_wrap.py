"""Turn pymilvus / gRPC exceptions into reidctl errors with one-line, secret-free messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import grpc
from pymilvus.exceptions import MilvusException

from reidctl.config import Connection, redact
from reidctl.errors import CollectionNotFound, ReidctlError, StoreError

log = logging.getLogger(__name__)

_SPACES = re.compile(r"\s+")
_MAX_DETAIL = 240
_NOT_FOUND = re.compile(r"collection\b.*\b(not exist|not found|can't find)", re.IGNORECASE)
_DISK_FULL = re.compile(r"no space left on device|errno 28|disk quota", re.IGNORECASE)
_AUTH = re.compile(r"unauthenticated|auth check failure|authenticat\w* fail", re.IGNORECASE)
_TIMEOUT = re.compile(r"deadline.?exceeded|timed? ?out|timeout", re.IGNORECASE)


def secrets_of(token: str | None) -> tuple[str, ...]:
    """The strings that must never appear in a message: the token and, for a
    ``user:password`` token, the password."""
    return Connection(token=token).secrets


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """One line of at most ~240 characters, with credentials and secrets masked."""
    line = _SPACES.sub(" ", redact(text)).strip()
    for secret in secrets:
        line = line.replace(secret, "***")
    if len(line) > _MAX_DETAIL:
        line = line[: _MAX_DETAIL - 3] + "..."
    return line


def _detail(exc: BaseException) -> str:
    if isinstance(exc, MilvusException):
        return str(getattr(exc, "message", "") or exc)
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else ""
        return f"{getattr(code, 'name', code)}: {details}"
    return f"{type(exc).__name__}: {exc}"


def translate(
    exc: BaseException, action: str, where: str, secrets: Sequence[str], timeout: float
) -> StoreError:
    """The reidctl error for a pymilvus / gRPC failure.

    Args:
        exc: what pymilvus raised.
        action: what was being done, e.g. ``"search gallery_global"``.
        where: the redacted URI.
        secrets: strings to mask (see :func:`secrets_of`).
        timeout: the per-call timeout in seconds (for the message).
    """
    detail = scrub(_detail(exc), secrets)
    log.debug("pymilvus error during %s: %s", action, detail)
    if _refused_credentials(exc):
        return StoreError(f"{action} at {where} failed: authentication failed (the server "
                          "refused the user name / password or token: check --user, "
                          "--password or --token)")
    if _DISK_FULL.search(detail):
        return StoreError(f"{action} at {where} failed: the disk is full ({detail})")
    if _TIMEOUT.search(detail):
        return StoreError(f"{action} at {where} timed out after {timeout:g}s ({detail})")
    if _NOT_FOUND.search(detail) or getattr(exc, "code", None) == 100:
        return CollectionNotFound(f"{action} at {where}: {detail}")
    return StoreError(f"{action} at {where} failed: {detail}")


def _refused_credentials(exc: BaseException) -> bool:
    """Whether the server refused the credentials, anywhere in the exception's chain
    (pymilvus reports it as a generic connection failure and keeps gRPC's
    UNAUTHENTICATED only in ``__context__``)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        code = e.code() if isinstance(e, grpc.RpcError) and hasattr(e, "code") else None
        if code == grpc.StatusCode.UNAUTHENTICATED or _AUTH.search(_detail(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


_CAUGHT = (MilvusException, grpc.RpcError, grpc.FutureTimeoutError, ConnectionError)


@contextmanager
def wrapped(action: str, where: str, secrets: Sequence[str], timeout: float) -> Iterator[None]:
    """Run a block of pymilvus calls; re-raise their failures as reidctl errors.

    The original exception is not chained (``from None``): its text may carry the
    URI with credentials; a scrubbed copy is in the message and the debug log.
    """
    try:
        yield
    except ReidctlError:
        raise
    except _CAUGHT as exc:
        raise translate(exc, action, where, secrets, timeout) from None
