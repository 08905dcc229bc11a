"""Small helpers shared inside the model package."""

from __future__ import annotations

MESSAGE_LIMIT = 200  # keep ModelError messages to one readable line


def first_line(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """The first line of an exception's message, shortened to ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
