"""``reidctl serve``: the search service and its web page, over one gallery."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from reidctl.cli.common import (
    VERBOSITY,
    CollectionOpt,
    DeviceOpt,
    ModelOpt,
    TokenOpt,
    UriOpt,
    check_output_dir,
    connection,
    errors_to_exit,
    note,
)
from reidctl.cli.masking import MaskFilter, remember_secret
from reidctl.config import DEFAULT_URI
from reidctl.errors import InputError

_WEB = "Web service"


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: a free one), made before the model
    loads, so that an address in use is said at once.

    Raises:
        InputError: the address cannot be bound (in use, not this machine's, no such
            host).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InputError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog until the server accepts them
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


class _Stopped(Exception):
    """Ctrl-C or SIGTERM, once the server has shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _run_until_stopped(server, sock: socket.socket) -> None:  # noqa: ANN001 - uvicorn's
    """Serves until Ctrl-C or SIGTERM. The server shuts down gracefully on either, then
    raises the signal again for the handler it found: here that ends the run normally
    (exit 0, the gallery closed) instead of a KeyboardInterrupt or a kill."""
    previous = {s: signal.signal(s, _stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(
        envvar="REIDCTL_SERVE_HOST", rich_help_panel=_WEB,
        help="Address to listen on. Anything but loopback needs an API token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        envvar="REIDCTL_SERVE_PORT", min=0, max=65535, rich_help_panel=_WEB,
        help="Port to listen on (0: a free one, printed at start).")] = 8000,
    api_token: Annotated[str | None, typer.Option(
        "--api-token", envvar="REIDCTL_SERVE_TOKEN", callback=remember_secret,
        show_default=False, rich_help_panel=_WEB,
        help="Bearer token every /api request must carry (prefer the environment "
             "variable). Required unless --host is loopback.")] = None,
    max_upload_mb: Annotated[float, typer.Option(
        min=0.01, max=128.0, rich_help_panel=_WEB,
        help="Largest image file accepted, in MB.")] = 16.0,
    uploads: Annotated[Path | None, typer.Option(
        rich_help_panel=_WEB, show_default=False,
        help="Folder uploaded images are saved into before they are ingested (default: "
             "<database>_uploads beside a Milvus Lite database, else ./reidctl_uploads).")
    ] = None,
    create: Annotated[bool, typer.Option(
        help="Create the database and the collection pair when missing (to ingest uploads "
             "into a new gallery).")] = False,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None, collection: CollectionOpt = "gallery",
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
) -> None:
    """Serve searches over HTTP, with a web page at / and the API documented at /docs.

    The model and the connection are loaded once, at start. Binds 127.0.0.1 by default;
    on any other address every /api request must carry 'Authorization: Bearer TOKEN'."""
    with errors_to_exit():
        from reidctl.serve.guard import check_bind

        check_bind(host, api_token)
        if uploads is not None:
            check_output_dir(uploads, "--uploads")
        conn = connection(uri, token, ctx)
        sock = listen(host, port)
    try:
        with errors_to_exit():
            import uvicorn

            from reidctl.api import Gallery
            from reidctl.serve.app import create_app

            gallery = Gallery(conn, collection, model=model, device=device, create=create)
        try:
            with errors_to_exit():
                app = create_app(gallery, api_token, int(max_upload_mb * (1 << 20)),
                                 uploads=uploads, secrets=conn.secrets)
                images = gallery.count()
            port = sock.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            note(f"serving collection {collection!r} ({images} images, model "
                 f"{gallery.model.fingerprint}) at http://{shown}:{port}/ (API docs at /docs"
                 f"{'; token required' if api_token else ''}; Ctrl-C stops)")
            level = "debug" if VERBOSITY.verbose else "warning" if VERBOSITY.quiet else "info"
            config = uvicorn.Config(app, host=host, port=port, log_level=level,
                                    access_log=not VERBOSITY.quiet, server_header=False,
                                    timeout_graceful_shutdown=10)
            for name in ("uvicorn", "uvicorn.error"):  # the access log's lines hold no secret
                logging.getLogger(name).addFilter(MaskFilter())
            _run_until_stopped(uvicorn.Server(config), sock)
            note("stopped")
        finally:
            gallery.close()
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    """Adds the ``serve`` command to ``app``."""
    app.command("serve")(serve)
