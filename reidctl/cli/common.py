"""Shared CLI plumbing: options, error handling, progress, output."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup
from typer.exceptions import TyperException

from reidctl.config import Connection
from reidctl.errors import InputError, ReidctlError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

UriOpt = Annotated[str, typer.Option(
    "--uri", envvar="REIDCTL_URI",
    help="Milvus Lite file (default ./reidctl.db) or server URI, e.g. http://127.0.0.1:19530.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="REIDCTL_TOKEN", help="Server token or user:password.", show_default=False)]
CollectionOpt = Annotated[str, typer.Option(
    "--collection", "-c", envvar="REIDCTL_COLLECTION",
    help="Collection pair name: <name>_global and <name>_local.")]
ModelOpt = Annotated[str, typer.Option(
    "--model", envvar="REIDCTL_MODEL",
    help="osnet_x0_25 (zero-shot weights), googlenet, or a reidctl checkpoint path.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", envvar="REIDCTL_DEVICE", help="auto (CUDA when present), cpu or cuda.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


@dataclass(frozen=True)
class AppState:
    """What the top-level options leave for the commands (``ctx.obj``).

    Attributes:
        connection: how to reach Milvus (everything but the URI and token, which
            each command takes).
        config: the parsed ``reidctl.toml`` (empty when there is none).
        root: the top-level option values after the config file filled the unset ones.
    """

    connection: Connection
    config: Any = None
    root: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Verbosity:
    quiet: bool = False
    verbose: bool = False


VERBOSITY = _Verbosity()


def set_verbosity(*, quiet: bool, verbose: bool) -> None:
    """Apply the top-level ``--quiet`` / ``--verbose`` (verbose wins)."""
    import logging

    VERBOSITY.quiet, VERBOSITY.verbose = quiet and not verbose, verbose
    log = logging.getLogger("reidctl")
    if verbose:
        if not any(getattr(h, "_reidctl", False) for h in log.handlers):
            from rich.logging import RichHandler

            handler = RichHandler(console=err, show_path=False, markup=False)
            handler._reidctl = True  # type: ignore[attr-defined]
            log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    else:
        log.setLevel(logging.WARNING)


def note(message: str) -> None:
    """An informational line on stderr, silenced by ``--quiet``."""
    if not VERBOSITY.quiet:
        err.print(message, markup=False, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Prints a one-line error on stderr and returns the Exit to raise."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(code)


class OneLineGroup(TyperGroup):
    """The app's command group: usage errors (unknown option, bad value, missing
    argument) become one ``error:`` line and exit 2, like every other error, instead of
    click's multi-line usage box."""

    def main(self, args: Any = None, prog_name: str | None = None,  # noqa: ANN401, D102
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:  # noqa: ANN401
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except TyperException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            message = " ".join(e.format_message().split())
            if not message:  # no arguments at all: the help was printed
                raise SystemExit(e.exit_code) from None
            raise SystemExit(fail(message + hint, e.exit_code).exit_code) from None
        except typer.Abort:
            raise SystemExit(fail("aborted", 1).exit_code) from None
        raise SystemExit(rv if isinstance(rv, int) else 0)


@contextlib.contextmanager
def errors_to_exit() -> Iterator[None]:
    """Turns library errors into one-line messages and documented exit codes."""
    try:
        yield
    except ReidctlError as e:
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__, e.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - last resort: never a traceback for users
        if os.environ.get("REIDCTL_DEBUG") or VERBOSITY.verbose:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        raise fail(f"unexpected {type(e).__name__}: {first} (set REIDCTL_DEBUG=1 for details)",
                   1) from None


def bar_columns(*extra: TextColumn) -> tuple:
    """Description, bar, done/total, extra columns, elapsed time and ETA."""
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra,
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A rich progress display on stderr; yields ``start(description, total) -> advance``."""
    show = enabled and not VERBOSITY.quiet and err.is_terminal
    bar = Progress(*bar_columns(), console=err, transient=False, disable=not show)

    def start(description: str, total: int) -> Callable[[int], None]:
        task = bar.add_task(description, total=total)
        return lambda n: bar.advance(task, n)

    with bar:
        yield start


def parse_time(text: str | None, option: str) -> int | None:
    """ISO 8601 date or time (UTC when no zone is given) -> epoch milliseconds."""
    if text is None:
        return None
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} must be an ISO 8601 time like 2026-11-26T08:00, "
                         f"got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1000)


def print_json(obj: Any) -> None:
    """Writes one JSON document on stdout (not through rich, so it stays parseable)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def connection(uri: str, token: str | None, ctx: typer.Context | None = None) -> Connection:
    """The top-level connection settings with a command's URI and token."""
    state = ctx.find_object(AppState) if ctx is not None else None
    conn = (state.connection if state is not None else Connection()).with_uri(uri)
    return replace(conn, token=token) if token else conn


def open_store(  # noqa: ANN201 - lazy import
    uri: str, collection: str, token: str | None, ctx: typer.Context | None = None, *,
    must_exist: bool = False,
):
    """Opens the collection pair with the connection settings of the top-level options.

    ``must_exist``: for commands that only read, a Lite file that is not there is an
    error (exit 5) rather than a new empty database.
    """
    from reidctl.store import MilvusStore

    conn = connection(uri, token, ctx)
    if "://" not in uri:
        parent = Path(uri).expanduser().resolve().parent
        if not parent.is_dir():
            raise InputError(f"folder of the database file does not exist: {parent}")
        if must_exist and not Path(uri).expanduser().exists():
            from reidctl.errors import CollectionNotFound

            raise CollectionNotFound(f"no Milvus Lite database at {uri} (reidctl ingest "
                                     "creates it)")
    return MilvusStore(conn, collection)


def load_extractor(model: str, device: str):  # noqa: ANN201 - lazy import
    from reidctl.model import load_model
    from reidctl.rerank import pick_device

    dev = pick_device(device)
    return load_model(model, device=str(dev)), dev
