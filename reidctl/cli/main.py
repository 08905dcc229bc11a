"""reidctl: person re-identification as image retrieval, on Milvus.

This module makes the app and its top-level options, and composes the commands: each
lives in its own module, which adds it with ``register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidctl import allocator
from reidctl.cli import (
    bench_cmd,
    calibrate_cmd,
    delete_cmd,
    eval_cmd,
    fit_cmd,
    ingest_cmd,
    inspect_cmd,
    repair_cmd,
    search_cmd,
    serve_cmd,
    train_cmd,
    viz_cmd,
)
from reidctl.cli.common import (
    AppState,
    OneLineGroup,
    errors_to_exit,
    set_verbosity,
)

app = typer.Typer(
    name="reidctl", no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineGroup,
    help="Person re-identification as image retrieval: Conv-Net descriptors, "
         "coarse-to-fine search on Milvus.",
)

_CONN = "Connection (server)"


def _print_version(value: bool) -> None:
    """``--version``: prints ``reidctl <version>`` (the installed package's) and exits 0."""
    if value:
        from reidctl import __version__

        typer.echo(f"reidctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(
        envvar="REIDCTL_USER", help="Server user name.", rich_help_panel=_CONN)] = None,
    password: Annotated[str | None, typer.Option(
        envvar="REIDCTL_PASSWORD", help="Server password (prefer the environment variable).",
        rich_help_panel=_CONN, show_default=False)] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="REIDCTL_DB", help="Milvus database name.", rich_help_panel=_CONN)] = None,
    tls: Annotated[bool, typer.Option(
        envvar="REIDCTL_TLS", help="Use TLS (implied by https:// or a CA file).",
        rich_help_panel=_CONN)] = False,
    tls_ca: Annotated[Path | None, typer.Option(
        envvar="REIDCTL_TLS_CA", help="CA or server certificate (PEM) to verify the server.",
        rich_help_panel=_CONN)] = None,
    tls_server_name: Annotated[str | None, typer.Option(
        envvar="REIDCTL_TLS_SERVER_NAME", help="Name in the server certificate.",
        rich_help_panel=_CONN)] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        envvar="REIDCTL_TLS_CERT", help="Client certificate (PEM) for mutual TLS.",
        rich_help_panel=_CONN)] = None,
    tls_key: Annotated[Path | None, typer.Option(
        envvar="REIDCTL_TLS_KEY", help="Client key (PEM) for mutual TLS.",
        rich_help_panel=_CONN)] = None,
    timeout: Annotated[float, typer.Option(
        envvar="REIDCTL_TIMEOUT", min=0.1, help="Seconds allowed per database call.",
        rich_help_panel=_CONN)] = 30.0,
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="REIDCTL_CONFIG", show_default=False,
        help="Settings file (default: ./reidctl.toml when it exists). Precedence: option > "
             "REIDCTL_* environment variable > this file > default.")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bars or notes; results and errors only.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log each step on stderr; full tracebacks of unexpected errors.")
    ] = False,
    _version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_print_version, is_eager=True, expose_value=False,
        help="Print the version and exit.")] = False,
) -> None:
    """Person re-identification as image retrieval on Milvus."""
    from reidctl.cli.settings import default_map, find_config, load_config
    from reidctl.config import Connection

    set_verbosity(quiet=quiet, verbose=verbose)
    with errors_to_exit():
        path, _ = find_config(config)
        cfg = load_config(path, ctx.command)
    ctx.default_map = default_map(cfg, ctx.command)
    given = dict(ctx.params)
    for name, value in cfg.common.items():  # the file fills what option/env left unset
        src = ctx.get_parameter_source(name)
        if name in given and (src is None or src.name == "DEFAULT"):
            given[name] = value
    path_or_none = lambda v: str(v) if v else None  # noqa: E731
    with errors_to_exit():  # a bad --timeout fails every command, not only those that connect
        conn = Connection(
            user=given["user"], password=given["password"], db_name=given["db"],
            tls=bool(given["tls"]), ca_file=path_or_none(given["tls_ca"]),
            server_name=given["tls_server_name"], client_cert=path_or_none(given["tls_cert"]),
            client_key=path_or_none(given["tls_key"]), timeout=float(given["timeout"]),
        ).validated()
    if given["quiet"] or given["verbose"]:
        set_verbosity(quiet=bool(given["quiet"]), verbose=bool(given["verbose"]))
    ctx.obj = AppState(connection=conn, config=cfg, root=given)


# the order of --help's command list
ingest_cmd.register(app)
search_cmd.register(app)
serve_cmd.register(app)
delete_cmd.register(app)
eval_cmd.register(app)
fit_cmd.register(app)
train_cmd.register(app)
inspect_cmd.register(app)
repair_cmd.register(app)
calibrate_cmd.register(app)
bench_cmd.register(app)
viz_cmd.register(app)


def run() -> None:
    """Console-script entry point."""
    allocator.tune()  # before torch starts its threads
    app()


if __name__ == "__main__":
    run()
