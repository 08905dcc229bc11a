"""Small helpers shared inside the model package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from reidctl.errors import ModelError

MESSAGE_LIMIT = 200  # keep ModelError messages to one readable line


def first_line(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """The first line of an exception's message, shortened to ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_state_dict(module: nn.Module, state: Any, what: str) -> None:
    """Check a state dict read from a file against ``module`` without loading it.

    ``module`` may live on the meta device: only its keys, shapes and dtypes are read,
    so a file claiming huge or impossible shapes is refused before anything is allocated.

    Args:
        module: the module the state dict is meant for.
        state: the state dict read from a file.
        what: how to name the source in the message, e.g. ``"ckpt.pt"``.

    Raises:
        ModelError: not a mapping, missing or unexpected keys, a value that is not a
            tensor, a shape or dtype kind (floating point or not) other than the
            module's, or NaN/inf in a floating-point tensor.
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
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
            got = list(value.shape) if isinstance(value, torch.Tensor) else "no tensor"
            raise ModelError(
                f"{what}: state_dict does not fit the model: {key!r} is {got}, "
                f"expected {list(ref.shape)}"
            )
        # load_state_dict converts between float dtypes, but not floats to counters
        if value.is_floating_point() != ref.is_floating_point() or value.is_complex():
            raise ModelError(
                f"{what}: state_dict does not fit the model: {key!r} is {value.dtype}, "
                f"expected {ref.dtype}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(f"{what}: state_dict tensor {key!r} holds NaN or inf values")


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` after :func:`check_state_dict`.

    Args:
        module: the module to fill.
        state: the state dict read from a file.
        what: how to name the source in the message, e.g. ``"ckpt.pt"``.

    Raises:
        ModelError: see :func:`check_state_dict`.
    """
    check_state_dict(module, state, what)
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f"{what}: state_dict does not fit the model: {first_line(exc)}") from exc
