"""The resumable training state: one ``torch.save`` dict at ``<out>.state``, replaced atomically.

It holds the model, optimizer, scheduler and grad-scaler state, the epochs done,
their history, the RNG states of python/numpy/torch and the sampler state (seed
and next epoch: the batches of an epoch depend on nothing else). Everything is a
tensor or plain python data, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reidctl.errors import ModelError
from reidctl.model import load_state_dict_strict

STATE_FORMAT = "reidctl.trainstate/1"
STATE_SUFFIX = ".state"
SHOWN_DIFFERENCES = 3


def state_path(out: Path) -> Path:
    """Where the training state of checkpoint ``out`` lives: ``<out>.state``."""
    out = Path(out)
    return out.with_name(out.name + STATE_SUFFIX)


def capture_rng() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch (and CUDA when present), as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, payload: dict[str, Any]) -> None:
    """Writes the state to a temporary file, then renames it over ``path``.

    A crash at any moment leaves either the previous state or the new one.
    """
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": STATE_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k} {saved.get(k)!r} there, {current.get(k)!r} now"
            for k in keys if saved.get(k) != current.get(k)]


def load_state(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Reads a training state and checks it was written with ``settings``.

    Args:
        path: the ``.state`` file.
        settings: the settings (and data fingerprint) of the run that wants to resume.

    Returns:
        The saved dict: ``settings``, ``epoch`` (epochs done), ``history``, ``model``,
        ``optimizer``, ``scheduler``, ``scaler``, ``rng``, ``sampler``, ``wall_s``.

    Raises:
        ModelError: unreadable or truncated file, not a training state, or a state
            written with other settings or data.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, unsafe global, ...
        raise ModelError(f"cannot read training state {path} (corrupted or not a torch file: "
                         f"{type(exc).__name__}); delete it or pass --restart") from exc
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        tag = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"{path} is not a reidctl training state (format {tag!r}, "
                         f"expected {STATE_FORMAT!r}); delete it or pass --restart")
    missing = [k for k in ("settings", "epoch", "model", "optimizer", "scheduler", "rng")
               if k not in data]
    if missing or not isinstance(data["settings"], dict):
        raise ModelError(f"training state {path} lacks {missing or ['settings']}; "
                         "delete it or pass --restart")
    diff = _differences(data["settings"], settings)
    if diff:
        shown = "; ".join(diff[:SHOWN_DIFFERENCES])
        more = f" (+{len(diff) - SHOWN_DIFFERENCES} more)" if len(diff) > SHOWN_DIFFERENCES else ""
        raise ModelError(f"training state {path} was written with other settings: {shown}{more}; "
                         "pass --restart to discard it, or choose another --out")
    return data


def restore_run(spath: Path, record: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LRScheduler,
                scaler: torch.amp.GradScaler) -> tuple[int, list[dict[str, Any]], float]:
    """Loads a saved training state into the run: (epochs done, history, training seconds).

    Raises:
        ModelError: unreadable, damaged, or written with other settings or data.
    """
    st = load_state(spath, record)
    load_state_dict_strict(model, st["model"], str(spath))
    try:
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st.get("scaler") or {})
        restore_rng(st["rng"])
        return int(st["epoch"]), list(st.get("history", [])), float(st["wall_s"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"training state {spath} is damaged ({type(e).__name__}); "
                         "delete it or pass --restart") from None


def seed_all(seed: int) -> None:
    """Seeds python, numpy and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
