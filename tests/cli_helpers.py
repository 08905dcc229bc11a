"""Helpers shared by the CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


def one_line_error(result: Any) -> str:  # noqa: ANN401 - a typer Result
    """The single stderr line of a failed command (no traceback anywhere)."""
    text = result.stderr.strip()
    assert "Traceback" not in result.output + text
    assert len(text.splitlines()) == 1, text
    return text


def sub_app(register: Callable[[typer.Typer], None]) -> typer.Typer:
    """A Typer app holding only the commands ``register`` adds."""
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app
