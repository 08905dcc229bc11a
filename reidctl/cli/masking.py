"""Masking: no secret reidctl was given ever appears in what it prints, and no text from
a user or from stored data is read as rich markup."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from reidctl.config import Connection, redact

SECRET_KEYS = frozenset({"password", "token", "api_token"})
SECRET_ENV = ("REIDCTL_TOKEN", "REIDCTL_PASSWORD")
MASK = "***"
_seen_secrets: set[str] = set()  # found in an earlier context: still masked after it closed
_longest_first: list[str] = []  # _seen_secrets sorted for replacing, rebuilt when it grows


def _secret_values(value: Any) -> set[str]:  # noqa: ANN401
    """A token or password and, for a ``user:password`` token, the password alone."""
    return set(Connection(token=str(value)).secrets) if value else set()


def remember_secret(value: Any) -> Any:  # noqa: ANN401
    """Registers a token or password to mask from now on; returns it unchanged (an
    option callback: it sees the value whether it came from the command line, the
    environment or ``reidctl.toml``)."""
    new = _secret_values(value) - _seen_secrets
    if new:
        _seen_secrets.update(new)
        _longest_first[:] = sorted(_seen_secrets, key=len, reverse=True)
    return value


def known_secrets() -> list[str]:
    """Every secret this process was given, longest first: those registered by
    :func:`remember_secret` (``--token``, the :class:`AppState`'s password and
    ``reidctl.toml`` secrets) and ``REIDCTL_TOKEN`` / ``REIDCTL_PASSWORD``."""
    for env in SECRET_ENV:
        remember_secret(os.environ.get(env))
    return _longest_first


def mask(text: str) -> str:
    """``text`` with credentials masked: URI user info (with or without a scheme) and
    every known secret. The one function all output goes through."""
    text = redact(text)
    for secret in known_secrets():
        text = text.replace(secret, MASK)
    return text


def _masked_text(text: Text) -> Text:
    """A rich Text with secrets masked (its spans dropped only when something was masked)."""
    plain = mask(text.plain)
    if plain == text.plain:
        return text
    return Text(plain, style=text.style, justify=text.justify, overflow=text.overflow,
                no_wrap=text.no_wrap, end=text.end)


class SafeConsole(Console):
    """A console that never reads markup or emoji codes in what it prints (user text
    such as a file named ``x[/bold]y.jpg`` is shown as it is) and masks secrets in every
    string and Text before layout, so a table cell cannot wrap a secret past the mask.
    Styles are given explicitly, as ``Text`` objects or ``style=``."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(markup=False, emoji=False, highlight=False, soft_wrap=True, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:  # noqa: ANN401, D102
        kwargs["markup"] = kwargs["emoji"] = False
        return super().render_str(mask(text), **kwargs)

    def render(self, renderable: RenderableType,  # noqa: D102
               options: ConsoleOptions | None = None) -> Iterable[Segment]:
        if isinstance(renderable, Text):
            renderable = _masked_text(renderable)
        return super().render(renderable, options)


class MaskFilter(logging.Filter):
    """Masks secrets in log records (the ``-v`` log on stderr)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        record.msg, record.args = mask(record.getMessage()), None
        return True
