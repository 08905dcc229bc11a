"""Shared CLI plumbing: options, error handling, progress, output."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from reidctl.cli.masking import (
    SECRET_KEYS,
    MaskFilter,
    SafeConsole,
    mask,
    remember_secret,
)
from reidctl.cli.progress_lines import LineProgress, progress_interval
from reidctl.config import Connection
from reidctl.errors import InputError, ReidctlError
from reidctl.types import iso_ms

out = SafeConsole()
err = SafeConsole(stderr=True)

UriOpt = Annotated[str, typer.Option(  # no [default: ...]: one from reidctl.toml may hold a secret
    "--uri", envvar="REIDCTL_URI", show_default=False,
    help="Milvus Lite file (default ./reidctl.db) or server URI, e.g. http://127.0.0.1:19530.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="REIDCTL_TOKEN", help="Server token or user:password.", show_default=False,
    callback=remember_secret)]
CollectionOpt = Annotated[str, typer.Option(
    "--collection", "-c", envvar="REIDCTL_COLLECTION",
    help="Collection pair name: <name>_global and <name>_local.")]
ModelOpt = Annotated[str, typer.Option(
    "--model", envvar="REIDCTL_MODEL",
    help="osnet_x0_25 (zero-shot weights), googlenet, omz_0286 / omz_0277 (zero-shot OpenVINO IR "
         "weights), or a reidctl checkpoint path.")]
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

    def __post_init__(self) -> None:
        """Registers every secret it holds, so that no output can show them."""
        for secret in self.connection.secrets:
            remember_secret(secret)
        tables = (self.root, getattr(self.config, "common", None) or {},
                  *(getattr(self.config, "commands", None) or {}).values())
        for table in tables:
            for name in SECRET_KEYS & set(table):
                remember_secret(table[name])


@dataclass
class _Verbosity:
    quiet: bool = False
    verbose: bool = False


VERBOSITY = _Verbosity()


class _NoteHandler(logging.Handler):
    """Warnings as plain lines on stderr when not ``--verbose`` (instead of logging's
    last-resort handler, which would bypass the masking console)."""

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        err.print(Text(self.format(record)))


def set_verbosity(*, quiet: bool, verbose: bool) -> None:
    """Apply the top-level ``--quiet`` / ``--verbose`` (verbose wins)."""
    VERBOSITY.quiet, VERBOSITY.verbose = quiet and not verbose, verbose
    log = logging.getLogger("reidctl")
    for old in [h for h in log.handlers if getattr(h, "_reidctl", False)]:
        log.removeHandler(old)
    if verbose:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err, show_path=False, markup=False)
    else:
        handler = _NoteHandler()
    handler._reidctl = True  # type: ignore[attr-defined]
    handler.addFilter(MaskFilter())
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)


def note(message: str) -> None:
    """An informational line on stderr, silenced by ``--quiet``."""
    if not VERBOSITY.quiet:
        err.print(Text(message))


def fail(message: str, code: int) -> typer.Exit:
    """Prints a one-line error on stderr (secrets masked, nothing read as markup) and
    returns the Exit to raise."""
    err.print(Text.assemble(("error:", "bold red"), " ", mask(message)))
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
        except Exception:  # only under --verbose / REIDCTL_DEBUG: the traceback, masked
            import traceback

            sys.stderr.write(mask(traceback.format_exc()))
            raise SystemExit(1) from None
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
    return (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            *extra, TimeElapsedColumn(), TextColumn("eta", markup=False), TimeRemainingColumn())


def line_progress() -> LineProgress:
    """Progress as plain lines on stderr (:mod:`reidctl.cli.progress_lines`), for a stderr
    that is not a terminal; the interval comes from ``REIDCTL_PROGRESS_INTERVAL``.

    Raises:
        InputError: ``REIDCTL_PROGRESS_INTERVAL`` is not a number of seconds >= 0.
    """
    return LineProgress(lambda line: err.print(Text(line)), progress_interval())


@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Progress on stderr; yields ``start(description, total) -> advance``.

    A live bar on a terminal; otherwise (a log file, a pipe) a plain line every few seconds
    with done/total, rate and ETA (:func:`line_progress`). Nothing when not ``enabled`` or
    under ``--quiet``.
    """
    show = enabled and not VERBOSITY.quiet
    if show and not err.is_terminal:
        lines = line_progress()
        yield lambda description, total: lines.stage(description, total).advance
        return
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
    try:
        return iso_ms(text)
    except ValueError:
        raise InputError(f"{option} must be an ISO 8601 time like 2026-11-26T08:00, "
                         f"got {text!r}") from None


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK if path.is_dir() else os.W_OK)


def _existing_folder(path: Path, option: str) -> Path:
    """The nearest folder that exists on the way to ``path`` (writers create the rest),
    checked to be a writable folder."""
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{option}: {folder} is a file, so {path} cannot be made")
    if not _writable(folder):
        raise InputError(f"{option}: cannot write into {folder} (permission denied)")
    return folder


def check_output_file(path: Path, option: str) -> Path:
    """Checks, before any work, that the file of an output option can be written (its
    missing folders are created when it is written).

    Args:
        path: the file to write (it may exist: it is replaced).
        option: the option's name for the message, e.g. ``"--grid"``.

    Returns:
        ``path`` (as given: the writers take it as it is).

    Raises:
        InputError: the path is a folder, a file stands where a folder must be, or it
            cannot be written.
    """
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder: give the path of a file to write")
    _existing_folder(path, option)
    if path.exists() and not _writable(path):
        raise InputError(f"{option}: cannot write {path} (permission denied)")
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """Checks, before any work, that the folder of an output option can be written to
    (it is created, with its missing parents, when it does not exist).

    Raises:
        InputError: the path is a file, a file stands where a folder must be, or it
            cannot be written.
    """
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file: give a folder to write into")
    if path.is_dir():
        if not _writable(path):
            raise InputError(f"{option}: cannot write into {path} (permission denied)")
    else:
        _existing_folder(path, option)
    return path


def json_safe(obj: Any) -> Any:  # noqa: ANN401
    """``obj`` as strict JSON data: non-finite floats -> null, secrets masked in strings,
    numpy scalars -> Python numbers, other objects (paths) -> their masked ``str``."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if getattr(obj, "shape", None) == () and hasattr(obj, "item"):  # a numpy scalar
        return json_safe(obj.item())
    return mask(str(obj))


def print_json(obj: Any) -> None:  # noqa: ANN401
    """Writes one strict JSON document on stdout (not through rich, so it stays parseable):
    no NaN or Infinity (``allow_nan=False`` catches any that :func:`json_safe` missed),
    secrets masked."""
    sys.stdout.write(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def connection(uri: str, token: str | None, ctx: typer.Context | None = None) -> Connection:
    """The top-level connection settings with a command's URI and token.

    Raises:
        InputError: the timeout or the server URI is unusable (see
            :meth:`~reidctl.config.Connection.validated`).
    """
    state = ctx.find_object(AppState) if ctx is not None else None
    conn = (state.connection if state is not None else Connection()).with_uri(uri)
    return (replace(conn, token=token) if token else conn).validated()


def open_store(  # noqa: ANN201 - lazy import
    uri: str, collection: str, token: str | None, ctx: typer.Context | None = None, *,
    must_exist: bool = False,
):
    """Opens the collection pair with the connection settings of the top-level options.

    ``must_exist``: for commands that only read, a Lite path that holds no database is
    an error (exit 5) and nothing is created there.
    """
    from reidctl.store import MilvusStore

    return MilvusStore(connection(uri, token, ctx), collection, must_exist=must_exist)


def load_extractor(model: str, device: str):  # noqa: ANN201 - lazy import
    from reidctl.config import resolve_device
    from reidctl.model import load_model

    dev = resolve_device(device)
    return load_model(model, device=str(dev)), dev
