"""Small helpers shared inside the model package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from reidctl.errors import ModelError

MESSAGE_LIMIT = 200  # keep ModelError messages to one readable line


def first_line(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """The first line of an exception's message, shortened to ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a one-line ModelError.

    Args:
        module: the module to fill.
        state: the state dict read from a file.
        what: how to name the source in the message, e.g. ``"ckpt.pt"``.

    Raises:
        ModelError: missing or unexpected keys, a shape mismatch, a non-tensor value.
    """
    if not isinstance(state, Mapping):
        raise ModelError(f"{what}: state_dict is a {type(state).__name__}, not a mapping")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]!r}")
        raise ModelError(f"{what}: state_dict does not fit the model: {'; '.join(parts)}")
    for key, ref in own.items():
        shape = getattr(state[key], "shape", None)
        if shape is None or tuple(shape) != tuple(ref.shape):
            got = "no tensor" if shape is None else list(shape)
            raise ModelError(
                f"{what}: state_dict does not fit the model: {key!r} is {got}, "
                f"expected {list(ref.shape)}"
            )
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f"{what}: state_dict does not fit the model: {first_line(exc)}") from exc
